"""Demos that run on embedded data: ``attnkit demo`` (train a model) and
``attnkit demo attention`` (programmable attention against its float64 reference)."""
from .attention import run_attention_demo
from .training import run_training_demo

__all__ = ["run_attention_demo", "run_training_demo"]
