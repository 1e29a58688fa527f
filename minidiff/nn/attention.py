"""Multi-head self-attention over the pixels of a feature map, with a residual add.

    x (B, C, H, W) -> y = x + W_o attention(q, k, v),   N = H*W positions

    [q, k, v] = W_qkv x                 a 1x1 projection C -> 3C (a Dense per pixel)
    split C into `heads` heads of d = C / heads channels
    S = q k^T / sqrt(d)                 (B, heads, N, N)
    P = softmax(S) over the last axis   each query's weights over the keys
    O = P v                             (B, heads, N, d)

Backward, with dO given:
    dv = P^T dO,   dP = dO v^T,   dS = P * (dP - sum_j dP * P),
    dq = dS k / sqrt(d),   dk = dS^T q / sqrt(d).
The attention itself (from qkv to O and back) is minidiff.kernels.attention_forward /
attention_backward: kernels/attention/reference.py holds these steps in array code.
"""
import numpy as np

from ..backend import as_rng, check_float_dtype
from .dense import Dense
from .grad_mode import grad_enabled, nothing_kept
from .layer import Layer, check_batch


class MultiheadAttention(Layer):
    """MultiheadAttention(channels, heads=4): y = x + to_out(softmax(q k^T / sqrt(d)) v).

    Params live in two Dense children: `to_qkv` (3C, C) without bias and
    `to_out` (C, C) with bias, both applied to each pixel's channel vector.
    """

    def __init__(self, channels, heads=4, rng=None, dtype=np.float32):
        super().__init__()
        channels, heads = int(channels), int(heads)
        if channels < 1 or heads < 1:
            raise ValueError(f"MultiheadAttention: channels and heads must be >= 1, got {channels}, {heads}")
        if channels % heads:
            raise ValueError(f"MultiheadAttention: heads={heads} must divide channels={channels}")
        rng, dtype = as_rng(rng), check_float_dtype(dtype)
        self.channels, self.heads, self.head_dim = channels, heads, channels // heads
        self.scale = 1.0 / float(np.sqrt(self.head_dim))   # a Python float keeps float32
        self.to_qkv = Dense(channels, 3 * channels, bias=False, rng=rng, dtype=dtype)
        self.to_out = Dense(channels, channels, rng=rng, dtype=dtype)
        self.qkv = self.P = None

    def forward(self, x):
        from minidiff.kernels import attention_forward
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"MultiheadAttention: x must be (B, {self.channels}, H, W), got {tuple(x.shape)}")
        check_batch(x, "MultiheadAttention")
        B, C, H, W = x.shape
        tokens = x.reshape(B, C, H * W).transpose(0, 2, 1)           # (B, N, C)
        qkv = self.to_qkv.forward(tokens)                             # (B, N, 3C)
        O, P = attention_forward(qkv, self.heads, self.scale)         # (B, N, C), (B, h, N, N)
        self.qkv, self.P = (qkv, P) if grad_enabled() else (None, None)   # kept for backward
        self.shape = x.shape
        out = self.to_out.forward(O)                                  # (B, N, C)
        return x + out.transpose(0, 2, 1).reshape(B, C, H, W)         # (B, C, H, W)

    def backward(self, dy):
        from minidiff.kernels import attention_backward
        if self.qkv is None:
            raise nothing_kept(self)
        B, C, H, W = self.shape
        d_out = dy.reshape(B, C, H * W).transpose(0, 2, 1)            # (B, N, C)
        dO = self.to_out.backward(d_out)                              # (B, N, C)
        d_qkv = attention_backward(dO, self.qkv, self.P, self.heads, self.scale)  # (B, N, 3C)
        d_tokens = self.to_qkv.backward(d_qkv)                        # (B, N, C)
        self.qkv = self.P = None                                      # freed once used (as nn.Conv2d)
        return dy + d_tokens.transpose(0, 2, 1).reshape(B, C, H, W)   # residual + attention path

    def extra_repr(self):
        return f"{self.channels}, heads={self.heads}"
