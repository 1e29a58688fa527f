"""GroupNorm (+ shift) (+ SiLU) as Numba CUDA kernels; maths and arguments as in groupnorm/reference.py.

Memory layout: x, y, dy, dx are C-order (B, C, S) (S = prod(spatial)).
Thread mapping: one thread block per (sample b, group g), grid B*G blocks of
TPB threads. The block's threads stride over the group's C/G * S values (or
over one channel row's S values); per-thread float64 partial sums are
combined by a shared-memory tree reduction (`_block_sum`), after which every
thread of the block holds the total. Each block writes only its group's
elements, its mean/rstd entry and the (b, c) partial sums of dshift / dweight,
which are reduced over b with the array module afterwards.

Arrays are CuPy (zero-copy through `__cuda_array_interface__`) or NumPy under
the CUDA simulator.
"""
import math
from functools import lru_cache

import numpy as np
from numba import config, cuda, float32, float64

from ..xp import get_xp

from ..runtime.cuda_launch import as_kernel_arg
from .reference import check_groupnorm_args, check_residual, check_stats

TPB = 16 if config.ENABLE_CUDASIM else 128       # threads per block: a power of two


@cuda.jit(device=True)
def _block_sum(part, value, t, tpb):
    """The sum of `value` over the block's tpb threads, returned to every thread.

    Thread t stores its value in part[t]; the block halves the live range
    log2(tpb) times (thread t < half adds part[t + half]); all threads reach
    every syncthreads, and the last one lets `part` be reused at once.
    """
    part[t] = value
    cuda.syncthreads()
    half = tpb // 2
    while half > 0:
        if t < half:
            part[t] += part[t + half]
        cuda.syncthreads()
        half //= 2
    total = part[0]
    cuda.syncthreads()
    return total


@lru_cache(maxsize=None)
def groupnorm_kernels(dtype, tpb):
    """(forward, backward) CUDA kernels for one dtype and block size (compile-time constants)."""
    nbtype = {np.dtype(np.float32): float32, np.dtype(np.float64): float64}[np.dtype(dtype)]

    # Block (b, g): pass 1 and 2 reduce sum x and sum (x - mean)^2 over the
    # group (two-pass variance, float64); pass 3 writes y for element i of the
    # group, channel c = g*C/G + i // S, position i % S (plus res there when `add`).
    @cuda.jit(cache=True)
    def forward(x, weight, bias, shift, G, eps, silu, add, res, y, mean, rstd):
        part = cuda.shared.array(shape=(tpb,), dtype=float64)
        bg, t = cuda.blockIdx.x, cuda.threadIdx.x
        B, C, S = x.shape
        if bg >= B * G:                     # uniform over the block: no thread is left at a sync
            return
        b, g = bg // G, bg % G
        Cg = C // G
        c0, n = g * Cg, Cg * S
        one = nbtype(1)
        acc = 0.0
        for i in range(t, n, tpb):
            acc += x[b, c0 + i // S, i % S]
        m = _block_sum(part, acc, t, tpb) / n
        acc = 0.0
        for i in range(t, n, tpb):
            d = x[b, c0 + i // S, i % S] - m
            acc += d * d
        r = 1.0 / math.sqrt(_block_sum(part, acc, t, tpb) / n + eps)
        if t == 0:
            mean[b, g] = m
            rstd[b, g] = r
        m_t, r_t = nbtype(m), nbtype(r)
        for i in range(t, n, tpb):
            c, s = c0 + i // S, i % S
            h = (x[b, c, s] - m_t) * (weight[c] * r_t) + bias[c] + shift[b, c]
            if silu:
                h = h / (one + math.exp(-h))           # h sigmoid(h)
            if add:
                h += res[b, c, s]
            y[b, c, s] = h

    # Block (b, g), channel row by channel row: pass 1 computes dh = dy SiLU'(h)
    # (kept in dx as scratch: thread t reads back only what it wrote) and
    # reduces sum dh and sum dh xhat; pass 2 writes
    # dx = rstd (weight[c] dh - mean(g) - xhat mean(g xhat)) with g = dh weight.
    @cuda.jit(cache=True)
    def backward(dy, x, mean, rstd, weight, bias, shift, G, silu, dx, dshift_part, dweight_part):
        part = cuda.shared.array(shape=(tpb,), dtype=float64)
        bg, t = cuda.blockIdx.x, cuda.threadIdx.x
        B, C, S = x.shape
        if bg >= B * G:
            return
        b, g = bg // G, bg % G
        Cg = C // G
        one = nbtype(1)
        m, r = mean[b, g], rstd[b, g]
        sum_g, sum_gx = 0.0, 0.0
        for c in range(g * Cg, (g + 1) * Cg):
            scale, offset = weight[c] * r, bias[c] + shift[b, c]
            a_dh, a_dhx = 0.0, 0.0
            for s in range(t, S, tpb):
                d = dy[b, c, s]
                if silu:
                    h = (x[b, c, s] - m) * scale + offset
                    sg = one / (one + math.exp(-h))
                    d = d * (sg * (one + h * (one - sg)))
                    dx[b, c, s] = d
                a_dh += d
                a_dhx += d * ((x[b, c, s] - m) * r)
            s_dh = _block_sum(part, a_dh, t, tpb)
            s_dhx = _block_sum(part, a_dhx, t, tpb)
            if t == 0:
                dshift_part[b, c] = s_dh
                dweight_part[b, c] = s_dhx
            sum_g += weight[c] * s_dh
            sum_gx += weight[c] * s_dhx
        mean_g, mean_gx = nbtype(sum_g / (Cg * S)), nbtype(sum_gx / (Cg * S))
        for c in range(g * Cg, (g + 1) * Cg):
            for s in range(t, S, tpb):
                dh = dx[b, c, s] if silu else dy[b, c, s]
                xhat = (x[b, c, s] - m) * r
                dx[b, c, s] = r * (weight[c] * dh - mean_g - xhat * mean_gx)

    return forward, backward


def _operands(x, weight, bias, shift, B, C, S):
    """Contiguous (B, C, S) x and the affine/shift arrays on x's device, None as ones / zeros."""
    xp, dt = get_xp(x), x.dtype
    if dt not in (np.float32, np.float64):
        raise TypeError(f"x: expected float32 or float64, got {dt}")
    x3 = xp.ascontiguousarray(x).reshape(B, C, S)                     # (B, C, S)
    weight = xp.ones(C, dt) if weight is None else xp.ascontiguousarray(weight, dtype=dt)      # (C,)
    bias = xp.zeros(C, dt) if bias is None else xp.ascontiguousarray(bias, dtype=dt)           # (C,)
    shift = xp.zeros((B, C), dt) if shift is None else xp.ascontiguousarray(shift, dtype=dt)   # (B, C)
    return x3, weight, bias, shift


def groupnorm_silu_forward_cuda(x, weight, bias, shift, num_groups, eps, silu=True, residual=None):
    """(y, mean, rstd) in one launch of B*G blocks; see groupnorm_reference."""
    B, C, G, S = check_groupnorm_args(x, weight, bias, shift, num_groups)
    check_residual(residual, x)
    xp = get_xp(x)
    x3, w, b, sh = _operands(x, weight, bias, shift, B, C, S)
    r3 = x3 if residual is None else xp.ascontiguousarray(residual).reshape(B, C, S)  # (B, C, S); x3: not read
    y = xp.empty_like(x3)                                             # (B, C, S)
    mean = xp.empty((B, G), x.dtype)                                  # (B, G)
    rstd = xp.empty((B, G), x.dtype)                                  # (B, G)
    forward, _ = groupnorm_kernels(x.dtype, TPB)
    forward[B * G, TPB](*map(as_kernel_arg, (x3, w, b, sh)), G, float(eps), bool(silu),
                        residual is not None, *map(as_kernel_arg, (r3, y, mean, rstd)))
    return y.reshape(x.shape), mean, rstd


def groupnorm_silu_backward_cuda(dy, x, mean, rstd, weight, bias, shift, num_groups, silu=True):
    """(dx, dweight, dbias, dshift) in one launch of B*G blocks plus two sums over b; see groupnorm_reference."""
    B, C, G, S = check_groupnorm_args(x, weight, bias, shift, num_groups)
    if tuple(dy.shape) != tuple(x.shape):
        raise ValueError(f"dy: expected shape {tuple(x.shape)}, got {tuple(dy.shape)}")
    check_stats(mean, rstd, B, G)
    xp, dt = get_xp(x), x.dtype
    x3, w, b, sh = _operands(x, weight, bias, shift, B, C, S)
    dy3 = xp.ascontiguousarray(dy, dtype=dt).reshape(B, C, S)         # (B, C, S)
    dx = xp.empty_like(x3)                                            # (B, C, S)
    dshift = xp.empty((B, C), np.float64)                             # (B, C) partial sums
    dweight = xp.empty((B, C), np.float64)                            # (B, C) partial sums
    _, backward = groupnorm_kernels(dt, TPB)
    args = (dy3, x3, xp.ascontiguousarray(mean, dtype=dt), xp.ascontiguousarray(rstd, dtype=dt), w, b, sh)
    backward[B * G, TPB](*map(as_kernel_arg, args), G, bool(silu),
                         *map(as_kernel_arg, (dx, dshift, dweight)))
    return (dx.reshape(x.shape),
            None if weight is None else dweight.sum(axis=0).astype(dt),
            None if bias is None else dshift.sum(axis=0).astype(dt),
            None if shift is None else dshift.astype(dt))
