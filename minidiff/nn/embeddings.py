"""Embeddings of integer conditions: timesteps (fixed sinusoids) and labels (learned)."""
import numpy as np

from ..backend import as_rng, check_float_dtype, get_xp
from .layer import Layer, check_batch


def sinusoidal_table(num_positions, dim):
    """(num_positions, dim) table: [sin(p w_k), cos(p w_k)], w_k = 10000^(-k/(dim/2-1)).

    Position p = t runs over the 0-based timesteps 0..T-1.
    """
    if dim % 2 or dim < 4:
        raise ValueError(f"sinusoidal embedding: dim must be even and >= 4, got {dim}")
    half = dim // 2
    freqs = np.exp(-np.log(10000.0) * np.arange(half) / (half - 1))   # (half,)
    angles = np.arange(num_positions)[:, None] * freqs[None, :]         # (P, half)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)     # (P, dim)


class SinusoidalPositionEmbedding(Layer):
    """t (B,) int -> table[t] (B, dim). Not trainable; backward returns None."""

    def __init__(self, num_positions, dim, dtype=np.float32):
        super().__init__()
        self.num_positions, self.dim = int(num_positions), int(dim)
        self.buffers["table"] = sinusoidal_table(num_positions, dim).astype(check_float_dtype(dtype))

    def forward(self, t):
        return self.buffers["table"][check_batch(t, "SinusoidalPositionEmbedding", "t")]

    def backward(self, dy):
        return None

    def extra_repr(self):
        return f"{self.num_positions}, {self.dim}"


class Embedding(Layer):
    """Embedding(num, dim): labels (B,) int -> weight[labels] (B, dim).

    backward: dW[k] += sum of dy over the rows whose label is k (a one-hot GEMM).
    """

    def __init__(self, num_embeddings, dim, rng=None, dtype=np.float32):
        super().__init__()
        rng = as_rng(rng)
        self.num_embeddings, self.dim = int(num_embeddings), int(dim)
        self.add_param("weight", rng.standard_normal((num_embeddings, dim)).astype(check_float_dtype(dtype)))

    def forward(self, labels):
        self.labels = check_batch(labels, "Embedding", "labels")
        return self.params["weight"][labels]

    def backward(self, dy):
        xp = get_xp(dy)
        onehot = (self.labels[:, None] == xp.arange(self.num_embeddings)[None, :]).astype(dy.dtype)
        self.grads["weight"] += onehot.T @ dy            # (num, B) @ (B, dim)
        return None

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.dim}"
