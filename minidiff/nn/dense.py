"""Fully connected layer, PyTorch layout: weight (out, in)."""
import numpy as np

from ..backend import as_rng, check_float_dtype
from .layer import Layer, check_batch, positive_ints, uniform_init


class Dense(Layer):
    """Dense(in_features, out_features): y = x W^T + b.

    x (..., in) -> y (..., out). backward: dW += dy^T x, db += sum dy, dx = dy W.
    The leading dims are flattened first, so a (B, N, in) input is one GEMM on
    (B*N, in), not B small ones (a transposed view is copied once for it).
    """

    def __init__(self, in_features, out_features, bias=True, rng=None, dtype=np.float32):
        super().__init__()
        rng, dtype = as_rng(rng), check_float_dtype(dtype)
        self.in_features, self.out_features = positive_ints("Dense", in_features=in_features,
                                                            out_features=out_features)
        self.add_param("weight", uniform_init(rng, (out_features, in_features), in_features, dtype))
        if bias:
            self.add_param("bias", uniform_init(rng, (out_features,), in_features, dtype))

    def forward(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Dense: input last dim {x.shape[-1]}, expected {self.in_features}")
        check_batch(x, "Dense", rows=x.ndim - 1)
        self.lead = x.shape[:-1]
        self.x = x.reshape(-1, self.in_features)         # (N, in): one GEMM for any leading dims
        y = self.x @ self.params["weight"].T             # (N, out)
        if "bias" in self.params:
            y += self.params["bias"]
        return y.reshape(self.lead + (self.out_features,))   # (..., out)

    def backward(self, dy):
        dy2 = dy.reshape(-1, self.out_features)          # (N, out)
        self.grads["weight"] += dy2.T @ self.x           # (out, in)
        if "bias" in self.params:
            self.grads["bias"] += dy2.sum(axis=0)
        return (dy2 @ self.params["weight"]).reshape(self.lead + (self.in_features,))   # (..., in)

    def extra_repr(self):
        return f"{self.in_features} => {self.out_features}"
