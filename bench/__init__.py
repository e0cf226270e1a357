"""bench: compare conditioning methods for diffusion models on medical images."""

__version__ = "0.1.0"
