"""Fully connected layer, PyTorch layout: weight (out, in)."""
import numpy as np

from ..backend import as_rng, check_float_dtype
from .layer import Layer, uniform_init


class Dense(Layer):
    """Dense(in_features, out_features): y = x W^T + b.

    x (..., in) -> y (..., out). backward: dW += dy^T x, db += sum dy, dx = dy W.
    """

    def __init__(self, in_features, out_features, bias=True, rng=None, dtype=np.float32):
        super().__init__()
        rng, dtype = as_rng(rng), check_float_dtype(dtype)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.add_param("weight", uniform_init(rng, (out_features, in_features), in_features, dtype))
        if bias:
            self.add_param("bias", uniform_init(rng, (out_features,), in_features, dtype))

    def forward(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Dense: input last dim {x.shape[-1]}, expected {self.in_features}")
        self.x = x                                       # (..., in)
        y = x @ self.params["weight"].T                  # (..., out)
        if "bias" in self.params:
            y += self.params["bias"]
        return y

    def backward(self, dy):
        x2 = self.x.reshape(-1, self.in_features)        # (N, in)
        dy2 = dy.reshape(-1, self.out_features)          # (N, out)
        self.grads["weight"] += dy2.T @ x2               # (out, in)
        if "bias" in self.params:
            self.grads["bias"] += dy2.sum(axis=0)
        return dy @ self.params["weight"]                # (..., in)

    def extra_repr(self):
        return f"{self.in_features} => {self.out_features}"
