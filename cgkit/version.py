"""The cgkit version (one place; ``cgkit.__version__`` re-exports it)."""
__version__ = "0.1.0"
