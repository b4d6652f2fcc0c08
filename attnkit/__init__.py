"""attnkit: programmable attention on PyTorch, checked against float64 references."""
__version__ = "0.1.0"
