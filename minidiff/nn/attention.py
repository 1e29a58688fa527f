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
"""
import numpy as np

from ..backend import as_rng, check_float_dtype, get_xp
from .dense import Dense
from .layer import Layer


def softmax(s, axis=-1):
    """exp(s - max) / sum exp(s - max): the max is subtracted for stability."""
    xp = get_xp(s)
    e = xp.exp(s - s.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_backward(p, dp, axis=-1):
    """dS for P = softmax(S): dS_i = P_i (dP_i - sum_j dP_j P_j)."""
    return p * (dp - (dp * p).sum(axis=axis, keepdims=True))


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
        self.to_qkv = Dense(channels, 3 * channels, bias=False, rng=rng, dtype=dtype)
        self.to_out = Dense(channels, channels, rng=rng, dtype=dtype)

    # (B, N, C) <-> (B, heads, N, d)
    def _split_heads(self, a):
        B, N, _ = a.shape
        return a.reshape(B, N, self.heads, self.head_dim).transpose(0, 2, 1, 3)

    def _merge_heads(self, a):
        B, _, N, _ = a.shape
        return a.transpose(0, 2, 1, 3).reshape(B, N, self.channels)

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"MultiheadAttention: x must be (B, {self.channels}, H, W), got {tuple(x.shape)}")
        xp = get_xp(x)
        B, C, H, W = x.shape
        scale = 1.0 / float(np.sqrt(self.head_dim))  # a Python float keeps float32
        tokens = x.reshape(B, C, H * W).transpose(0, 2, 1)           # (B, N, C)
        qkv = self.to_qkv.forward(tokens)                             # (B, N, 3C)
        q, k, v = (self._split_heads(a) for a in xp.split(qkv, 3, axis=-1))  # 3 x (B, h, N, d)
        S = xp.matmul(q, k.transpose(0, 1, 3, 2)) * scale             # (B, h, N, N)
        P = softmax(S, axis=-1)                                       # (B, h, N, N)
        O = xp.matmul(P, v)                                           # (B, h, N, d)
        out = self.to_out.forward(self._merge_heads(O))               # (B, N, C)
        self.q, self.k, self.v, self.P, self.shape = q, k, v, P, x.shape
        return x + out.transpose(0, 2, 1).reshape(B, C, H, W)         # (B, C, H, W)

    def backward(self, dy):
        xp = get_xp(dy)
        B, C, H, W = self.shape
        q, k, v, P = self.q, self.k, self.v, self.P
        scale = 1.0 / float(np.sqrt(self.head_dim))  # a Python float keeps float32
        d_out = dy.reshape(B, C, H * W).transpose(0, 2, 1)            # (B, N, C)
        dO = self._split_heads(self.to_out.backward(d_out))           # (B, h, N, d)
        dv = xp.matmul(P.transpose(0, 1, 3, 2), dO)                   # (B, h, N, d)
        dP = xp.matmul(dO, v.transpose(0, 1, 3, 2))                   # (B, h, N, N)
        dS = softmax_backward(P, dP, axis=-1) * scale                 # (B, h, N, N), incl. 1/sqrt(d)
        dq = xp.matmul(dS, k)                                         # (B, h, N, d)
        dk = xp.matmul(dS.transpose(0, 1, 3, 2), q)                   # (B, h, N, d)
        d_qkv = xp.concatenate([self._merge_heads(a) for a in (dq, dk, dv)], axis=-1)  # (B, N, 3C)
        d_tokens = self.to_qkv.backward(d_qkv)                        # (B, N, C)
        return dy + d_tokens.transpose(0, 2, 1).reshape(B, C, H, W)   # residual + attention path

    def extra_repr(self):
        return f"{self.channels}, heads={self.heads}"
