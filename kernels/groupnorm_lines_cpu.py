"""GroupNorm (+ shift) + SiLU from one conv's output grid straight onto the next conv's lines (CPU, Numba).

Inside a ResBlock the first conv's output goes through GroupNorm+SiLU into
the second conv, and nowhere else when no backward pass follows. On the
layer-by-layer path it leaves the conv's grid for NCHW (from_lines), is
normalised there, and is copied onto the next conv's lines (to_lines): two
copies around one GroupNorm. This kernel reads the grid and writes the lines:

    xl[c, head + p] = SiLU(weight[c] (x[c, p] - mean) rstd + bias[c] + shift[b, c]),
    x[c, p] = grid[c, p] + conv_bias[c]                  at every real point p of image b,
    xl = 0                                               at every other point of the lines

with mean and rstd those of image b's group of channels (groupnorm_reference.py),
on either layout of lines.py: grid point p = ((i*(H + 1) + h)*R + w)*V + v is
pixel (h, w) of image b = i*V + v, and the line holds it at head + p,
head = (R + 1)*V (V = 1: one image per point; V = LANES: image lanes).

Vectorisation: the V images of a point sit side by side, so the statistics
are per lane. A loop over the V lanes of one point is too short for LLVM
(it unrolls it into scalar code), so every loop here runs along a whole row
instead: a row's W real points are W*V contiguous values. The sums add row
after row into an accumulator row of W*V float64 values (`acc`), which is
summed over its W points per lane at the end; the apply pass multiplies a
row by a row of per-lane scales (`scale`, `offset`: each lane's value
repeated W times). Sums are float64 and the variance is two-pass, as in
groupnorm_cpu.py.

Loop mapping: prange over (image group i, channel group k); iteration (i, k)
reads its C/G grid rows' stretches of group i, writes the same stretches of
those lines with their zero points and zero row, and the first and last
groups also the lines' zero head and tail: disjoint writes.
"""
import math

import numpy as np
from numba import njit, prange

from . import numba_threads  # noqa: F401  (selects the threading layer first)
from .groupnorm_cpu import _sigmoid
from .lines import zero_ends


@njit(cache=True, error_model="numpy")
def _lane_sums(acc, V):
    """(V,) per-lane sums of a row of points, acc (W*V,): lane v is acc[w*V + v] summed over w."""
    s = np.zeros(V)
    for w in range(acc.size // V):
        for v in range(V):
            s[v] += acc[w * V + v]
    return s


@njit(cache=True, error_model="numpy")
def _repeat_lanes(a, n, out):
    """out[w*V + v] = a[v] for w < n: a per-lane value for every point of a row."""
    V = a.size
    for w in range(n):
        for v in range(V):
            out[w * V + v] = a[v]
    return out


@njit(parallel=True, cache=True, error_model="numpy", fastmath={"contract"})
def groupnorm_silu_lines(grid, conv_bias, weight, bias, shift, G, eps, V, R, H, W, xl, mean, rstd):
    """xl (C, L) = the lines of SiLU(GroupNorm(grid + conv_bias) + shift); grid (C, P) on
    Lines with V images per point and rows of R = W + 1 points; shift (B, C); mean, rstd
    (B, G) are written too. G channel groups; eps as in GroupNorm."""
    C = grid.shape[0]
    B = shift.shape[0]
    Cg, groups = C // G, B // V
    row, size, head = R * V, (H + 1) * R * V, (R + 1) * V    # one row, one image group, the head
    n_row = np.uint64(W * V)                                  # the real values of one row
    n = Cg * H * W                                            # values per (image, channel group)
    one = grid.dtype.type(1)
    for it in prange(groups * G):
        i, k = it // G, it % G
        base = i * size                                       # grid index of group i's pixel (0, 0)
        acc = np.zeros(W * V)                                 # float64 sums per point of a row
        for c in range(k * Cg, (k + 1) * Cg):
            x, cb = grid[c], np.float64(conv_bias[c])
            for h in range(H):
                o = np.uint64(base + h * row)
                for q in range(n_row):
                    acc[q] += np.float64(x[o + q]) + cb
        m = _lane_sums(acc, V) / n                            # (V,) the images' means
        m_row = _repeat_lanes(m, W, np.empty(W * V))
        acc[:] = 0
        for c in range(k * Cg, (k + 1) * Cg):
            x, cb = grid[c], np.float64(conv_bias[c])
            for h in range(H):
                o = np.uint64(base + h * row)
                for q in range(n_row):
                    d = np.float64(x[o + q]) + cb - m_row[q]
                    acc[q] += d * d
        var = _lane_sums(acc, V) / n                          # (V,) biased variances
        r = np.empty(V)
        for v in range(V):
            r[v] = 1.0 / math.sqrt(var[v] + eps)
            mean[i * V + v, k], rstd[i * V + v, k] = m[v], r[v]
        scale = np.empty(W * V, grid.dtype)                   # per point of a row: weight[c] rstd
        offset = np.empty(W * V, grid.dtype)                  # ... and the rest of h = x scale + offset
        lane = np.empty(V)
        for c in range(k * Cg, (k + 1) * Cg):
            _repeat_lanes(r * weight[c], W, scale)
            for v in range(V):
                lane[v] = bias[c] + shift[i * V + v, c] + (conv_bias[c] - m[v]) * r[v] * weight[c]
            _repeat_lanes(lane, W, offset)
            x, line = grid[c], xl[c]
            zero_ends(line, head, head + groups * size, i == 0, i == groups - 1)
            for h in range(H):
                o = np.uint64(base + h * row)
                out = o + np.uint64(head)
                for q in range(n_row):
                    hq = x[o + q] * scale[q] + offset[q]
                    line[out + q] = hq * _sigmoid(hq, one)
                line[out + n_row:out + np.uint64(row)] = 0    # the zero point after row h
            line[head + base + H * row:head + base + size] = 0   # the zero row after the group
    return xl
