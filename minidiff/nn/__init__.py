"""Layers with hand-written backward passes (see layer.py for the protocol)."""
from .layer import Layer
from .dense import Dense
from .activations import GELU, ReLU, SiLU, Swish
from .embeddings import Embedding, SinusoidalPositionEmbedding, sinusoidal_table
from .containers import ConditionalChain, ConditionalSum, Sequential

__all__ = [
    "Layer", "Dense", "GELU", "ReLU", "SiLU", "Swish",
    "Embedding", "SinusoidalPositionEmbedding", "sinusoidal_table",
    "ConditionalChain", "ConditionalSum", "Sequential",
]
