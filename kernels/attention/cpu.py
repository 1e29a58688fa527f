"""Multi-head attention on the CPU (Numba); maths and arguments as in attention/reference.py.

The reference runs each step over the whole batch: split the heads (copies),
two batched matmuls of tiny (N x d) matrices, a softmax in four array passes,
and a merge. Here one loop iteration does one (sample, head) pair from start
to end while its q, k, v (N x d each; 49 x 12 in the U-Net) stay in cache.

Memory layout: qkv (B, N, 3C) as the projection writes it; head h of token j
is k_j = qkv[b, j, C + h*d : C + (h+1)*d] (q at offset 0, v at 2C). Each
iteration first copies k and v of its head transposed, kT[c, j] = k_j[c], so
the loops over the keys j run along contiguous rows and vectorise:

    forward, per query i:   s_j = scale sum_c q_i[c] kT[c, j];   p = softmax(s)
                            out_i[c] = sum_j p_j vT[c, j]
    backward, per query i:  dp_j = sum_c dO_i[c] vT[c, j]
                            ds_j = p_j (dp_j - sum_j' dp_j' p_j') * scale
                            dq_i[c] = sum_j ds_j kT[c, j]
                            dkT[c, j] += ds_j q_i[c],   dvT[c, j] += p_j dO_i[c]

Loop mapping: prange over the B*heads pairs (b, h); pair (b, h) writes only
P[b, h], its head's channels of out / d_qkv and its own work rows, so no two
iterations write the same element. exp is runtime/fast_exp.py's polynomial, which
vectorises (libm's exp is a scalar call).
"""
import numpy as np
from numba import njit, prange

from ..runtime import numba_threads  # noqa: F401  (selects the threading layer first)
from .reference import check_attention_args, check_backward_args
from ..runtime.fast_exp import fast_exp

FASTMATH = {"reassoc", "contract"}   # the sums over keys may be split across vector lanes


@njit(inline="always")
def _head_kv(x, o0, d):
    """(kT, vT): head h's k and v of every token, transposed, kT[c, j] = x[j, C + o0 + c]
    (vT at 2C + o0): (N, 3C) -> 2 x (d, N), o0 = h*d the head's first channel."""
    N, C = x.shape[0], x.shape[1] // 3
    kT, vT = np.empty((d, N), x.dtype), np.empty((d, N), x.dtype)
    for j in range(N):
        for c in range(d):
            kT[c, j] = x[j, C + o0 + c]
            vT[c, j] = x[j, 2 * C + o0 + c]
    return kT, vT


@njit(inline="always")
def _softmax_row(s, one):
    """s <- softmax(s) in place: exp(s - max) / sum."""
    m = s.max()
    total = s.dtype.type(0)
    for j in range(s.shape[0]):
        e = fast_exp(s[j] - m, one)
        s[j] = e
        total += e
    inv = one / total
    for j in range(s.shape[0]):
        s[j] *= inv


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def attention_forward_kernel(qkv, heads, scale, out, P):
    """out[b, i, h*d + c] = sum_j P[b, h, i, j] v_j[c],  P[b, h, i] = softmax_j(scale q_i . k_j)."""
    B, N = qkv.shape[:2]
    d = qkv.shape[2] // 3 // heads
    one = qkv.dtype.type(1)
    for bh in prange(B * heads):
        b, h = bh // heads, bh % heads
        x, o0 = qkv[b], h * d                                      # (N, 3C); head h's first channel
        kT, vT = _head_kv(x, o0, d)                                # 2 x (d, N)
        for i in range(N):
            p = P[b, h, i]                                         # (N,)
            p[:] = 0
            for c in range(d):
                qc = x[i, o0 + c] * scale
                for j in range(N):
                    p[j] += qc * kT[c, j]
            _softmax_row(p, one)
            for c in range(d):
                acc = qkv.dtype.type(0)
                for j in range(N):
                    acc += p[j] * vT[c, j]
                out[b, i, o0 + c] = acc
    return out, P


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def attention_backward_kernel(d_out, qkv, P, heads, scale, d_qkv):
    """d_qkv = [dq | dk | dv] of attention_forward_kernel (equations in the module docstring)."""
    B, N, C3 = qkv.shape
    C = C3 // 3
    d = C // heads
    zero = qkv.dtype.type(0)
    for bh in prange(B * heads):
        b, h = bh // heads, bh % heads
        x, g, o0 = qkv[b], d_out[b], h * d                         # (N, 3C), (N, C), first channel
        kT, vT = _head_kv(x, o0, d)                                # 2 x (d, N)
        dkT = np.zeros((d, N), qkv.dtype)                          # (d, N)
        dvT = np.zeros((d, N), qkv.dtype)                          # (d, N)
        ds = np.empty(N, qkv.dtype)                                # dp, then ds, of query i
        for i in range(N):
            p = P[b, h, i]                                         # (N,)
            ds[:] = 0
            for c in range(d):
                gc = g[i, o0 + c]
                for j in range(N):
                    ds[j] += gc * vT[c, j]                         # dp_j
                    dvT[c, j] += p[j] * gc
            rowsum = zero
            for j in range(N):
                rowsum += ds[j] * p[j]
            for j in range(N):
                ds[j] = p[j] * (ds[j] - rowsum) * scale
            for c in range(d):
                qc, acc = x[i, o0 + c], zero
                for j in range(N):
                    acc += ds[j] * kT[c, j]
                    dkT[c, j] += ds[j] * qc
                d_qkv[b, i, o0 + c] = acc                          # dq_i
        for j in range(N):
            for c in range(d):
                d_qkv[b, j, C + o0 + c] = dkT[c, j]
                d_qkv[b, j, 2 * C + o0 + c] = dvT[c, j]
    return d_qkv


def attention_forward_cpu(qkv, heads, scale):
    """(out (B, N, C), P (B, heads, N, N)); see attention_reference.attention_forward_reference."""
    B, N, C, _ = check_attention_args(qkv, heads)
    qkv = np.ascontiguousarray(qkv)
    out = np.empty((B, N, C), qkv.dtype)                           # (B, N, C)
    P = np.empty((B, heads, N, N), qkv.dtype)                      # (B, heads, N, N)
    return attention_forward_kernel(qkv, int(heads), qkv.dtype.type(scale), out, P)


def attention_backward_cpu(d_out, qkv, P, heads, scale):
    """d_qkv (B, N, 3C); see attention_reference.attention_backward_reference."""
    check_backward_args(d_out, qkv, P, heads)
    qkv = np.ascontiguousarray(qkv)
    d_out, P = np.ascontiguousarray(d_out, dtype=qkv.dtype), np.ascontiguousarray(P, dtype=qkv.dtype)
    return attention_backward_kernel(d_out, qkv, P, int(heads), qkv.dtype.type(scale),
                                     np.empty_like(qkv))
