"""Layers with hand-written backward passes (see layer.py for the protocol)."""
from .layer import Layer
from .grad_mode import grad_enabled, no_grad
from .dense import Dense
from .activations import GELU, ReLU, SiLU, Swish
from .embeddings import Embedding, SinusoidalPositionEmbedding, sinusoidal_table
from .containers import ConditionalChain, ConditionalSum, Sequential
from .conv import Conv2d
from .norm import GroupNorm, GroupNormSiLU
from .resample import AvgPool2d, Flatten, MaxPool2d, Upsample
from .attention import MultiheadAttention
from .blocks import ConvEmbed, ResBlock, UpsampleConv

__all__ = [
    "Layer", "grad_enabled", "no_grad", "Dense", "GELU", "ReLU", "SiLU", "Swish",
    "Embedding", "SinusoidalPositionEmbedding", "sinusoidal_table",
    "ConditionalChain", "ConditionalSum", "Sequential",
    "Conv2d", "GroupNorm", "GroupNormSiLU", "AvgPool2d", "Flatten", "MaxPool2d", "Upsample",
    "MultiheadAttention", "ConvEmbed", "ResBlock", "UpsampleConv",
]
