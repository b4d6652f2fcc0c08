"""The trained runs these tests use are session fixtures in ``tests/conftest.py``."""
