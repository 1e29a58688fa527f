"""Multi-head scaled dot-product attention as Numba CUDA kernels; maths and arguments as in attention/reference.py.

    S = q_h k_h^T * scale,   P = softmax(S) over the keys j,   O = P v_h
    dv = P^T dO,   dS = P * (dO v^T - rowsum) * scale,   dq = dS k,   dk = dS^T q

Memory layout: qkv (B, N, 3C) C-order = [q | k | v]; head h of q, k, v is
channels h*d ... (h+1)*d - 1 of each third (d = C / heads), so q_h[b, i, c] =
qkv[b, i, h*d + c], k_h at C + h*d + c, v_h at 2C + h*d + c. out and d_out are
(B, N, C) with head h at h*d + c; P and the work array dS are (B, heads, N, N).
d_qkv (B, N, 3C) = [dq | dk | dv] in the same layout as qkv.

Thread mapping: one thread per (sample b, head h, token); the forward and the
dq half of the backward own a query row i, the dk/dv half owns a key column j.
Every thread writes only its own row of P / dS and its own d channels of out /
d_qkv, so no two threads write the same element and no atomics are needed.
Sums run in float64 (`a * 1.0 * b`: the float64 literal promotes a float32
entry before the product) and are rounded to the array dtype when stored.

Arrays are CuPy (zero-copy through `__cuda_array_interface__`) or NumPy under
the CUDA simulator. Nothing is launched at import.
"""
import math

import numpy as np
from numba import config, cuda

from ..xp import get_xp

from .reference import check_attention_args, check_backward_args
from ..runtime.cuda_launch import as_kernel_arg, blocks_for

TPB = 16 if config.ENABLE_CUDASIM else 128       # threads per block


@cuda.jit(device=True)
def _dot(x, y, b, i, x0, j, y0, d):
    """sum_c x[b, i, x0 + c] * y[b, j, y0 + c] over c < d, in float64 (x, y: (B, N, *))."""
    acc = 0.0
    for c in range(d):
        acc += x[b, i, x0 + c] * 1.0 * y[b, j, y0 + c]
    return acc


@cuda.jit(device=True)
def _thread_head(n, qkv, heads):
    """(b, h, t, q0, k0, v0): thread n's sample, head and token (n = (b*heads + h)*N + t), and
    where head h's channels start in q, k, v; b = -1 past the last (sample, head, token)."""
    B, N, C3 = qkv.shape
    C = C3 // 3
    d = C // heads
    if n >= B * heads * N:
        return -1, 0, 0, 0, 0, 0
    h = (n // N) % heads
    return n // (heads * N), h, n % N, h * d, C + h * d, 2 * C + h * d


# Thread mapping: one thread per n = (b, h, i), query row i of head h.
# Pass 1: m = max_j s_ij with s_ij = scale * q_i . k_j;  pass 2: l = sum_j exp(s_ij - m);
# pass 3: P[b, h, i, j] = exp(s_ij - m) / l;  pass 4: out[b, i, h*d + c] = sum_j P_ij v_j[c],
# reading back only the P row this thread wrote.
@cuda.jit(cache=True)
def attention_forward_kernel(qkv, heads, scale, out, P):
    b, h, i, q0, k0, v0 = _thread_head(cuda.grid(1), qkv, heads)
    if b < 0:
        return
    N, d = qkv.shape[1], qkv.shape[2] // 3 // heads
    m = scale * _dot(qkv, qkv, b, i, q0, 0, k0, d)
    for j in range(1, N):
        m = max(m, scale * _dot(qkv, qkv, b, i, q0, j, k0, d))
    l = 0.0
    for j in range(N):
        l += math.exp(scale * _dot(qkv, qkv, b, i, q0, j, k0, d) - m)
    for j in range(N):
        P[b, h, i, j] = math.exp(scale * _dot(qkv, qkv, b, i, q0, j, k0, d) - m) / l
    for c in range(d):
        acc = 0.0
        for j in range(N):
            acc += P[b, h, i, j] * 1.0 * qkv[b, j, v0 + c]
        out[b, i, h * d + c] = acc


# Kernel A. Thread mapping: one thread per n = (b, h, i), query row i of head h.
# Pass 1: dP_ij = dO_i . v_j (kept in dS as scratch: the thread reads back only
# its own row) and rowsum_i = sum_j P_ij dP_ij;  pass 2: dS_ij = P_ij (dP_ij - rowsum_i) * scale;
# pass 3: dq_i[c] = sum_j dS_ij k_j[c] -> d_qkv[b, i, h*d + c].
@cuda.jit(cache=True)
def attention_backward_rows_kernel(d_out, qkv, P, heads, scale, dS, d_qkv):
    b, h, i, q0, k0, v0 = _thread_head(cuda.grid(1), qkv, heads)
    if b < 0:
        return
    N, d = qkv.shape[1], qkv.shape[2] // 3 // heads
    rowsum = 0.0
    for j in range(N):
        dp = _dot(d_out, qkv, b, i, q0, j, v0, d)       # d_out's head h sits at h*d = q0
        dS[b, h, i, j] = dp
        rowsum += P[b, h, i, j] * dp
    for j in range(N):
        dS[b, h, i, j] = P[b, h, i, j] * (dS[b, h, i, j] - rowsum) * scale
    for c in range(d):
        acc = 0.0
        for j in range(N):
            acc += dS[b, h, i, j] * 1.0 * qkv[b, j, k0 + c]
        d_qkv[b, i, q0 + c] = acc


# Kernel B (after A). Thread mapping: one thread per n = (b, h, j), key column j of head h;
# it reads column j of dS and P (stride N in memory) and writes
# dk_j[c] = sum_i dS_ij q_i[c] -> d_qkv[b, j, C + h*d + c],
# dv_j[c] = sum_i P_ij dO_i[c] -> d_qkv[b, j, 2C + h*d + c].
@cuda.jit(cache=True)
def attention_backward_cols_kernel(d_out, qkv, P, heads, dS, d_qkv):
    b, h, j, q0, k0, v0 = _thread_head(cuda.grid(1), qkv, heads)
    if b < 0:
        return
    N, d = qkv.shape[1], qkv.shape[2] // 3 // heads
    for c in range(d):
        dk, dv = 0.0, 0.0
        for i in range(N):
            dk += dS[b, h, i, j] * 1.0 * qkv[b, i, q0 + c]
            dv += P[b, h, i, j] * 1.0 * d_out[b, i, q0 + c]
        d_qkv[b, j, k0 + c] = dk
        d_qkv[b, j, v0 + c] = dv


def _float_dtype(qkv):
    if qkv.dtype not in (np.float32, np.float64):
        raise TypeError(f"qkv: expected float32 or float64, got {qkv.dtype}")
    return qkv.dtype


def attention_forward_cuda(qkv, heads, scale):
    """(out (B, N, C), P (B, heads, N, N)) of softmax(q k^T * scale) v per head, one launch."""
    B, N, C, d = check_attention_args(qkv, heads)
    xp, dt = get_xp(qkv), _float_dtype(qkv)
    qkv = xp.ascontiguousarray(qkv)                                    # (B, N, 3C)
    out = xp.empty((B, N, C), dt)                                      # (B, N, C)
    P = xp.empty((B, heads, N, N), dt)                                 # (B, heads, N, N)
    attention_forward_kernel[blocks_for(B * heads * N, TPB), TPB](
        as_kernel_arg(qkv), int(heads), float(scale), as_kernel_arg(out), as_kernel_arg(P))
    return out, P


def attention_backward_cuda(d_out, qkv, P, heads, scale):
    """d_qkv (B, N, 3C) = [dq | dk | dv] given d_out (B, N, C) and the forward's P, two launches."""
    B, N, C, d = check_backward_args(d_out, qkv, P, heads)
    xp, dt = get_xp(qkv), _float_dtype(qkv)
    qkv = xp.ascontiguousarray(qkv)                                    # (B, N, 3C)
    d_out = xp.ascontiguousarray(d_out, dtype=dt)                      # (B, N, C)
    P = xp.ascontiguousarray(P, dtype=dt)                              # (B, heads, N, N)
    dS = xp.empty((B, heads, N, N), dt)                                # (B, heads, N, N) work
    d_qkv = xp.empty((B, N, 3 * C), dt)                                # (B, N, 3C)
    grid = blocks_for(B * heads * N, TPB)
    args = (as_kernel_arg(d_out), as_kernel_arg(qkv), as_kernel_arg(P), int(heads))
    dS_k, d_qkv_k = as_kernel_arg(dS), as_kernel_arg(d_qkv)
    attention_backward_rows_kernel[grid, TPB](*args, float(scale), dS_k, d_qkv_k)
    attention_backward_cols_kernel[grid, TPB](*args, dS_k, d_qkv_k)
    return d_qkv
