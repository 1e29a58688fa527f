"""Embeddings of integer conditions: timesteps (fixed sinusoids) and labels (learned)."""
import numpy as np

from ..backend import as_rng, check_float_dtype, get_xp
from .layer import Layer, check_batch, index_out_of_range, positive_ints


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


def check_index(a, owner, name, high):
    """a (B,) integer indices in [0, high], B >= 1; the range is checked for host (NumPy) arrays
    only (a device check would force a sync every step)."""
    check_batch(a, owner, name)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{owner}: {name} must be an integer array, got {a.dtype}")
    if isinstance(a, np.ndarray) and index_out_of_range(a, high):
        raise ValueError(f"{owner}: {name} must be in [0, {high}], got values in [{a.min()}, {a.max()}]")
    return a


class SinusoidalPositionEmbedding(Layer):
    """t (B,) int -> table[t] (B, dim). Not trainable; backward returns None."""

    def __init__(self, num_positions, dim, dtype=np.float32):
        super().__init__()
        (self.num_positions,) = positive_ints("SinusoidalPositionEmbedding", num_positions=num_positions)
        self.dim = int(dim)
        self.buffers["table"] = sinusoidal_table(num_positions, dim).astype(check_float_dtype(dtype))

    def forward(self, t):
        return self.buffers["table"][check_index(t, "SinusoidalPositionEmbedding", "t", self.num_positions - 1)]

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
        self.num_embeddings, self.dim = positive_ints("Embedding", num_embeddings=num_embeddings, dim=dim)
        self.add_param("weight", rng.standard_normal((num_embeddings, dim)).astype(check_float_dtype(dtype)))

    def forward(self, labels):
        self.labels = check_index(labels, "Embedding", "labels", self.num_embeddings - 1)
        return self.params["weight"][labels]

    def backward(self, dy):
        xp = get_xp(dy)
        onehot = (self.labels[:, None] == xp.arange(self.num_embeddings)[None, :]).astype(dy.dtype)
        self.grads["weight"] += onehot.T @ dy            # (num, B) @ (B, dim)
        return None

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.dim}"
