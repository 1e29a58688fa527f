"""GroupNorm (+ shift) (+ SiLU) on the CPU with Numba; maths and arguments as in groupnorm/reference.py.

Memory layout: x, y, dy, dx are C-order (B, C, S) (S = prod(spatial)) and are
read through flat views, so channel row (b, c) is x_f[(b*C + c)*S : +S] and
group (b, g) is the contiguous block of its n = C/G * S values.

Loop mapping: prange over the B*G (sample, group) pairs (a plain loop for
inputs below PARALLEL_MIN_SIZE elements). Pair (b, g) owns its
block of x / y / dx, its mean/rstd entry and the (b, c) entries of the
per-sample partial sums for dshift, dbias, dweight, so no two iterations write
the same element; the partial sums are reduced over b after the prange.
Sums are accumulated in float64; everything else runs in the input dtype.

Vectorisation: every inner loop runs over one row or block with an unsigned
index (no negative-index test) and `error_model="numpy"` (no division-by-zero
test), so LLVM turns it into SIMD code. Two things would stop it:
  - a float sum in a loop is a chain of dependent adds unless LLVM may
    reassociate it: only the `_sum*` helpers are compiled with
    fastmath={"reassoc"};
  - libm's exp is a scalar call, so sigmoid uses runtime/fast_exp.py's polynomial,
    which compiles to plain SIMD arithmetic.
The per-group passes are compiled with fastmath={"contract"} (a * b + c may
become one fused multiply-add, rounded once), and nothing else of fastmath:
the polynomial's Horner steps become single instructions, which made
the SiLU loop 1.8x faster alone (400k float32 values: 108 -> 60 us, with
fast_exp's float32-width exponent).
"""
import math

import numpy as np
from numba import njit, prange

from ..runtime import numba_threads  # noqa: F401  (selects the threading layer first)
from ..runtime.fast_exp import fast_exp
from .reference import check_groupnorm_args, check_residual, check_stats

# Below this many elements the serial loop wins: a parallel launch costs tens of
# microseconds. Timed alone, the serial loop also won at U-Net sizes
# ((32, 48, 7, 7) forward 77 vs 151 us), but inside a train step the parallel
# kernel wins at every U-Net size (likely because the conv before it leaves
# half of x in each core's cache). In one process, 25 alternating steps,
# twice: train step 0.955x and forward 0.96-0.98x with the threshold at 2**15
# instead of 2**18.
PARALLEL_MIN_SIZE = 1 << 15


@njit(inline="always")
def sigmoid(h, one):
    return one / (one + fast_exp(-h, one))


# --- sums (the only reassociated loops) ---------------------------------------------
@njit(fastmath={"reassoc"}, error_model="numpy", cache=True)
def _sum(a, start, n):
    """sum a[start : start + n] in float64."""
    acc = 0.0
    start = np.uint64(start)
    for k in range(np.uint64(n)):
        acc += np.float64(a[start + k])
    return acc


@njit(fastmath={"reassoc"}, error_model="numpy", cache=True)
def _sum_sq_dev(a, start, n, m):
    """sum (a[i] - m)^2 over a[start : start + n] in float64 (the second pass of a two-pass variance)."""
    acc = 0.0
    start = np.uint64(start)
    for k in range(np.uint64(n)):
        d = np.float64(a[start + k]) - m
        acc += d * d
    return acc


@njit(fastmath={"reassoc"}, error_model="numpy", cache=True)
def _sum_dh_xhat(dh, x, start, n, m, r):
    """(sum dh, sum dh * xhat) over one channel row, xhat = (x - m) r, in float64."""
    s_dh, s_dhx = 0.0, 0.0
    start = np.uint64(start)
    for k in range(np.uint64(n)):
        d = np.float64(dh[start + k])
        s_dh += d
        s_dhx += d * ((np.float64(x[start + k]) - m) * r)
    return s_dh, s_dhx


# --- forward --------------------------------------------------------------------------
# One (b, g) pair: two passes over the group's block for the statistics (mean,
# then the squared deviations), then one pass per channel row c writing
# y = SiLU((x - mean) * weight[c] rstd + bias[c] + shift[b, c]).
@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _forward_group(bg, x_f, B, C, S, G, weight, bias, shift, eps, silu, add, r_f, y_f, mean, rstd):
    b, g = bg // G, bg % G
    Cg = C // G
    n = Cg * S
    one = x_f.dtype.type(1)
    start = (b * C + g * Cg) * S
    m = _sum(x_f, start, n) / n
    var = _sum_sq_dev(x_f, start, n, m) / n
    mean[b, g] = m
    rstd[b, g] = 1.0 / math.sqrt(var + eps)
    m_t, r_t = mean[b, g], rstd[b, g]                                 # in the input dtype
    zero = x_f.dtype.type(0)
    for c in range(g * Cg, (g + 1) * Cg):
        scale, offset = weight[c] * r_t, bias[c] + shift[b, c]
        o = np.uint64((b * C + c) * S)
        for k in range(np.uint64(S)):
            h = (x_f[o + k] - m_t) * scale + offset
            if silu:
                h = h * sigmoid(h, one)
            y_f[o + k] = h + (r_f[o + k] if add else zero)


# Loop mapping: prange over the B*G pairs (b, g), each done by _forward_group.
# `add`: y += residual (r, x's shape); without one, r is any (B, C, S) array, not read.
@njit(parallel=True, cache=True)
def groupnorm_silu_forward_kernel(x, weight, bias, shift, G, eps, silu, add, r, y, mean, rstd):
    B, C, S = x.shape
    x_f, y_f, r_f = x.ravel(), y.ravel(), r.ravel()                   # flat (B*C*S,) views
    for bg in prange(B * G):
        _forward_group(bg, x_f, B, C, S, G, weight, bias, shift, eps, silu, add, r_f, y_f, mean, rstd)


# The same loop run serially, for small inputs (see PARALLEL_MIN_SIZE).
@njit(cache=True)
def groupnorm_silu_forward_serial(x, weight, bias, shift, G, eps, silu, add, r, y, mean, rstd):
    B, C, S = x.shape
    x_f, y_f, r_f = x.ravel(), y.ravel(), r.ravel()                   # flat (B*C*S,) views
    for bg in range(B * G):
        _forward_group(bg, x_f, B, C, S, G, weight, bias, shift, eps, silu, add, r_f, y_f, mean, rstd)


# --- backward -------------------------------------------------------------------------
# One (b, g) pair; per channel row c of the group:
#   pass 1 (silu only) writes dh = dy * SiLU'(h) into dx, used as scratch;
#   pass 2 sums dh and dh * xhat (float64) into the (b, c) partial sums and
#          the group's sums of g = dh * weight[c] and g * xhat;
# then pass 3 per row overwrites dx with rstd (g - mean(g) - xhat mean(g xhat)).
@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _backward_group(bg, dy_f, x_f, B, C, S, G, mean, rstd, weight, bias, shift, silu,
                    dx_f, dshift_part, dweight_part):
    b, g = bg // G, bg % G
    Cg = C // G
    n = Cg * S
    one = x_f.dtype.type(1)
    dh_f = dx_f if silu else dy_f
    m, r = mean[b, g], rstd[b, g]
    sum_g, sum_gx = 0.0, 0.0
    for c in range(g * Cg, (g + 1) * Cg):
        o = np.uint64((b * C + c) * S)
        if silu:
            scale, offset = weight[c] * r, bias[c] + shift[b, c]
            for k in range(np.uint64(S)):
                h = (x_f[o + k] - m) * scale + offset
                s = sigmoid(h, one)
                dx_f[o + k] = dy_f[o + k] * (s * (one + h * (one - s)))
        s_dh, s_dhx = _sum_dh_xhat(dh_f, x_f, o, S, np.float64(m), np.float64(r))
        dshift_part[b, c], dweight_part[b, c] = s_dh, s_dhx
        sum_g += weight[c] * s_dh
        sum_gx += weight[c] * s_dhx
    mean_g, mean_gx = x_f.dtype.type(sum_g / n), x_f.dtype.type(sum_gx / n)
    for c in range(g * Cg, (g + 1) * Cg):
        o = np.uint64((b * C + c) * S)
        w = weight[c]
        for k in range(np.uint64(S)):
            xhat = (x_f[o + k] - m) * r
            dx_f[o + k] = r * (w * dh_f[o + k] - mean_g - xhat * mean_gx)


# Loop mapping: prange over the B*G pairs (b, g), each done by _backward_group.
@njit(parallel=True, cache=True)
def groupnorm_silu_backward_kernel(dy, x, mean, rstd, weight, bias, shift, G, silu,
                                   dx, dshift_part, dweight_part):
    B, C, S = x.shape
    x_f, dy_f, dx_f = x.ravel(), dy.ravel(), dx.ravel()               # flat (B*C*S,) views
    for bg in prange(B * G):
        _backward_group(bg, dy_f, x_f, B, C, S, G, mean, rstd, weight, bias, shift, silu,
                        dx_f, dshift_part, dweight_part)


# The same loop run serially, for small inputs (see PARALLEL_MIN_SIZE).
@njit(cache=True)
def groupnorm_silu_backward_serial(dy, x, mean, rstd, weight, bias, shift, G, silu,
                                   dx, dshift_part, dweight_part):
    B, C, S = x.shape
    x_f, dy_f, dx_f = x.ravel(), dy.ravel(), dx.ravel()               # flat (B*C*S,) views
    for bg in range(B * G):
        _backward_group(bg, dy_f, x_f, B, C, S, G, mean, rstd, weight, bias, shift, silu,
                        dx_f, dshift_part, dweight_part)


# --- Python entry points ----------------------------------------------------------------
def _operands(x, weight, bias, shift, B, C, S):
    """Contiguous (B, C, S) x and the affine/shift arrays, with None as ones / zeros."""
    dt = x.dtype
    x3 = np.ascontiguousarray(x).reshape(B, C, S)                     # (B, C, S)
    weight = np.ones(C, dt) if weight is None else np.ascontiguousarray(weight)      # (C,)
    bias = np.zeros(C, dt) if bias is None else np.ascontiguousarray(bias)           # (C,)
    shift = np.zeros((B, C), dt) if shift is None else np.ascontiguousarray(shift)   # (B, C)
    return x3, weight, bias, shift


def groupnorm_silu_forward_cpu(x, weight, bias, shift, num_groups, eps, silu=True, residual=None):
    """(y, mean, rstd); see groupnorm_reference.groupnorm_silu_forward_reference."""
    B, C, G, S = check_groupnorm_args(x, weight, bias, shift, num_groups)
    check_residual(residual, x)
    x3, w, b, sh = _operands(x, weight, bias, shift, B, C, S)
    r3 = x3 if residual is None else np.ascontiguousarray(residual).reshape(B, C, S)   # (B, C, S)
    y = np.empty_like(x3)                                             # (B, C, S)
    mean = np.empty((B, G), x.dtype)                                  # (B, G)
    rstd = np.empty((B, G), x.dtype)                                  # (B, G)
    kernel = groupnorm_silu_forward_kernel if x3.size >= PARALLEL_MIN_SIZE else groupnorm_silu_forward_serial
    kernel(x3, w, b, sh, G, float(eps), bool(silu), residual is not None, r3, y, mean, rstd)
    return y.reshape(x.shape), mean, rstd


def groupnorm_silu_backward_cpu(dy, x, mean, rstd, weight, bias, shift, num_groups, silu=True):
    """(dx, dweight, dbias, dshift); see groupnorm_reference.groupnorm_silu_backward_reference."""
    B, C, G, S = check_groupnorm_args(x, weight, bias, shift, num_groups)
    if tuple(dy.shape) != tuple(x.shape):
        raise ValueError(f"dy: expected shape {tuple(x.shape)}, got {tuple(dy.shape)}")
    check_stats(mean, rstd, B, G)
    x3, w, b, sh = _operands(x, weight, bias, shift, B, C, S)
    dy3 = np.ascontiguousarray(dy).reshape(B, C, S)                   # (B, C, S)
    dx = np.empty_like(x3)                                            # (B, C, S)
    dshift = np.empty((B, C), np.float64)                             # (B, C) partial sums
    dweight = np.empty((B, C), np.float64)                            # (B, C) partial sums
    kernel = groupnorm_silu_backward_kernel if x3.size >= PARALLEL_MIN_SIZE else groupnorm_silu_backward_serial
    kernel(dy3, x3, np.ascontiguousarray(mean), np.ascontiguousarray(rstd), w, b, sh, G, bool(silu),
           dx, dshift, dweight)
    dt = x.dtype
    return (dx.reshape(x.shape),
            None if weight is None else dweight.sum(axis=0).astype(dt),
            None if bias is None else dshift.sum(axis=0).astype(dt),
            None if shift is None else dshift.astype(dt))
