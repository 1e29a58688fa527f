"""Denoising networks; MODELS maps a class name to its class (for checkpoints)."""
from .mlp import MLP

MODELS = {"MLP": MLP}

__all__ = ["MLP", "MODELS"]
