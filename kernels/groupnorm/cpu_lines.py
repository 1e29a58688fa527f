"""GroupNorm (+ shift) + SiLU from one conv's output grid straight onto the next conv's lines (CPU, Numba).

Inside a ResBlock the first conv's output goes through GroupNorm+SiLU into
the second conv, and nowhere else when no backward pass follows. On the
layer-by-layer path it leaves the conv's grid for NCHW (from_lines), is
normalised there, and is copied onto the next conv's lines (to_lines): two
copies around one GroupNorm. These kernels read the grid and write the lines:

    xl[c, head + p] = SiLU(weight[c] (x[c, p] - mean) rstd + bias[c] + shift[b, c]),
    x[c, p] = grid[c, p] + conv_bias[c]                  at every real point p of image b,
    xl = 0                                               at every other point of the lines

with mean and rstd those of image b's group of channels (groupnorm/reference.py),
on either layout of lines/geometry.py: grid point p = ((i*(H + 1) + h)*R + w)*V + v is
pixel (h, w) of image b = i*V + v, and the line holds it at head + p,
head = (R + 1)*V (V = 1: one image per point; V = LANES: image lanes).

Vectorisation: every loop runs along many contiguous values.
  - Image lanes (groupnorm_silu_lanes): the V images of a point sit side by
    side, so the statistics are per lane, and a loop over the V lanes of one
    point is too short for LLVM (it unrolls it into scalar code). The loops
    run along a whole row instead: a row's W real points are W*V contiguous
    values. The sums add row after row into an accumulator row of W*V
    float64 values (`acc`), summed over its W points per lane at the end; the
    apply pass multiplies a row by rows of per-lane values (`scale`,
    `offset`: each lane's value repeated W times).
  - One image per point (groupnorm_silu_line): a row (W values) is too short
    too, so each loop runs along an image's whole stretch of H rows, zero
    points included; `mask` (1 at the real points, 0 at the zero points)
    keeps those out of the sums and writes them as 0.
The variance is two-pass, as in groupnorm/cpu.py. On image lanes each
channel's sums per point of a row (H terms) are in x's dtype, then summed
per lane in float64: float64 accumulators all along measured 1.2-1.4x the
time (they halve the vector width and need a conversion per value). On one
image per point the sums are float64.
Measured alone against from_lines + GroupNorm+SiLU + to_lines (alternating
calls, batch 32 and 64): lanes at 7x7 and 14x14 0.39-0.44x the time; one
image per point at 28x28, 16 and 32 channels, 0.66-0.81x.

On image lanes the same kernel serves the activations that stay on lines from
layer to layer (lines/activation.py): it can read x from its own lines (src_head, zero
conv bias) and add a residual at every pixel (a ResBlock's skip), and
groupnorm_silu_backward_lanes is its backward, from lines to lines (with the
per-lane float64 row sums of the statistics for sum dh and sum dh xhat).

Loop mapping: prange over (image group i, channel group k) (V = 1: image b);
iteration (i, k) reads its C/G grid rows' stretches of group i, writes the
same stretches of those lines with their zero points and zero row, and the
first and last groups also the lines' zero head and tail: disjoint writes.
"""
import math

import numpy as np
from numba import njit, prange

from ..runtime import numba_threads  # noqa: F401  (selects the threading layer first)
from .cpu import sigmoid
from ..lines.geometry import LANES, zero_ends


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


# --- image lanes: statistics per lane, every loop along a row of W*V values --------------
@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _lane_stats(grid, conv_bias, c0, c1, base, V, R, H, W, eps):
    """(mean, rstd), each (V,): the statistics of x = grid + conv_bias over channels c0..c1-1
    of the image group whose pixel (0, 0) is grid point `base`, one per lane (image)."""
    row, n_row = R * V, np.uint64(W * V)
    n = (c1 - c0) * H * W
    acc = np.empty(W * V, grid.dtype)                         # one channel's sums per point of a row
    s = np.zeros(V)                                           # float64 sums per lane
    for c in range(c0, c1):
        x = grid[c]
        acc[:] = 0
        for h in range(H):
            o = np.uint64(base + h * row)
            for q in range(n_row):
                acc[q] += x[o + q]
        s += _lane_sums(acc, V) + np.float64(conv_bias[c]) * (H * W)
    m = s / n                                                 # (V,)
    d_row = np.empty(W * V, grid.dtype)
    s[:] = 0
    for c in range(c0, c1):
        x = grid[c]
        _repeat_lanes((m - np.float64(conv_bias[c])).astype(grid.dtype), W, d_row)   # x - d_row = x + cb - mean
        acc[:] = 0
        for h in range(H):
            o = np.uint64(base + h * row)
            for q in range(n_row):
                d = x[o + q] - d_row[q]
                acc[q] += d * d
        s += _lane_sums(acc, V)
    var = s / n                                               # (V,) biased variances
    r = np.empty(V)
    for v in range(V):
        r[v] = 1.0 / math.sqrt(var[v] + eps)
    return m, r


@njit(cache=True, error_model="numpy")
def _lane_affine(m, r, conv_bias, weight, bias, shift, c, b0, W, scale, offset):
    """Rows scale, offset (W*V,) with h = grid scale + offset for channel c of images b0..b0+V-1:
    scale = weight[c] rstd, offset = bias[c] + shift[b, c] + (conv_bias[c] - mean) scale."""
    V = m.size
    lane = np.empty(V)
    _repeat_lanes(r * weight[c], W, scale)
    for v in range(V):
        lane[v] = bias[c] + shift[b0 + v, c] + (conv_bias[c] - m[v]) * r[v] * weight[c]
    _repeat_lanes(lane, W, offset)


@njit(parallel=True, cache=True, error_model="numpy", fastmath={"contract"})
def groupnorm_silu_lanes(grid, src_head, conv_bias, weight, bias, shift, G, eps, V, R, H, W, xl, mean, rstd,
                         add, res, res_bias, res_head):
    """xl (C, L) = the lines of SiLU(GroupNorm(grid + conv_bias) + shift); grid (C, P) on
    Lines with V images per point (any V; meant for LANES) and rows of R = W + 1 points,
    its point p read at p + src_head (0: a conv's grid; the lines' head: x's own lines);
    shift (B, C); mean, rstd (B, G) are written too. G channel groups; eps as in GroupNorm.
    `add`: plus a residual at every pixel, res[c, p + res_head] + res_bias[c] for grid point p
    (res_head = 0: res is a grid; the lines' head: res is lines); else res is not read."""
    C = grid.shape[0]
    B = shift.shape[0]
    Cg, groups = C // G, B // V
    row, size, head = R * V, (H + 1) * R * V, (R + 1) * V    # one row, one image group, the head
    n_row = np.uint64(W * V)                                  # the real values of one row
    one = grid.dtype.type(1)
    for it in prange(groups * G):
        i, k = it // G, it % G
        base = i * size                                       # grid index of group i's pixel (0, 0)
        m, r = _lane_stats(grid, conv_bias, k * Cg, (k + 1) * Cg, base + src_head, V, R, H, W, eps)
        mean[i * V:(i + 1) * V, k], rstd[i * V:(i + 1) * V, k] = m, r
        scale = np.empty(W * V, grid.dtype)                   # per point of a row: h = x scale + offset
        offset = np.empty(W * V, grid.dtype)
        for c in range(k * Cg, (k + 1) * Cg):
            _lane_affine(m, r, conv_bias, weight, bias, shift, c, i * V, W, scale, offset)
            x, line, rc, rb = grid[c], xl[c], res[c], res_bias[c]
            zero_ends(line, head, head + groups * size, i == 0, i == groups - 1)
            # the zero row after the group, written before the rows: written after them (as
            # groupnorm_silu_line does), Numba 0.68 left it out once the residual loop was
            # there (caught by the tests, which fill the lines with NaN first)
            line[head + base + H * row:head + base + size] = 0
            for h in range(H):
                o = np.uint64(base + h * row)
                src, out, ro = o + np.uint64(src_head), o + np.uint64(head), o + np.uint64(res_head)
                for q in range(n_row):
                    hq = x[src + q] * scale[q] + offset[q]
                    line[out + q] = hq * sigmoid(hq, one)
                if add:
                    for q in range(n_row):
                        line[out + q] += rc[ro + q] + rb
                line[out + n_row:out + np.uint64(row)] = 0    # the zero point after row h
    return xl


# Loop mapping as groupnorm_silu_lanes: iteration (i, k) owns image group i's stretch of
# the lines of channel group k and the (b, c) partial sums of its V images. Pass 1 per
# channel writes dh = dz SiLU'(h) into dx and sums dh and dh xhat per point of a row
# (float64), then per lane; pass 2 overwrites dx with rstd (w dh - mean(g) - xhat mean(g xhat)).
@njit(parallel=True, cache=True, error_model="numpy", fastmath={"contract"})
def groupnorm_silu_backward_lanes(dz, x, mean, rstd, weight, bias, shift, G, R, H, W,
                                  dx, dshift_part, dweight_part):
    """dx (C, L) = d loss / d x of z = SiLU(GroupNorm(x) + shift) with x, z on image lanes
    (rows of R = W + 1 points), from dz (C, L) (read at the pixels) and the forward's x,
    mean, rstd (B, G); zero off the pixels. dshift_part, dweight_part (B, C) float64: the
    sums over each image's pixels of dh and dh xhat (groupnorm/reference.py)."""
    C = x.shape[0]
    B = shift.shape[0]
    V = LANES
    Cg, groups = C // G, B // V
    row, size, head = R * V, (H + 1) * R * V, (R + 1) * V
    n_row = np.uint64(W * V)
    n = Cg * H * W
    one = x.dtype.type(1)
    no_conv_bias = np.zeros(C, x.dtype)
    for it in prange(groups * G):
        i, k = it // G, it % G
        b0, base = i * V, head + i * size                     # first image; line index of its pixel (0, 0)
        m, r = mean[b0:b0 + V, k].astype(np.float64), rstd[b0:b0 + V, k].astype(np.float64)
        scale, offset = np.empty(W * V, x.dtype), np.empty(W * V, x.dtype)   # h = x scale + offset
        xs = _repeat_lanes(r.astype(x.dtype), W, np.empty(W * V, x.dtype))   # xhat = x xs + xo
        xo = _repeat_lanes((-m * r).astype(x.dtype), W, np.empty(W * V, x.dtype))
        acc_dh, acc_dhx = np.empty(W * V, x.dtype), np.empty(W * V, x.dtype)   # one channel's sums per point
        sum_g, sum_gx = np.zeros(V), np.zeros(V)
        for c in range(k * Cg, (k + 1) * Cg):
            _lane_affine(m, r, no_conv_bias, weight, bias, shift, c, b0, W, scale, offset)
            xc, dzc, dxc = x[c], dz[c], dx[c]
            acc_dh[:] = 0
            acc_dhx[:] = 0
            for h in range(H):
                o = np.uint64(base + h * row)
                for q in range(n_row):
                    xq = xc[o + q]
                    hq = xq * scale[q] + offset[q]
                    sq = sigmoid(hq, one)
                    d = dzc[o + q] * (sq * (one + hq * (one - sq)))
                    dxc[o + q] = d
                    acc_dh[q] += d
                    acc_dhx[q] += d * (xq * xs[q] + xo[q])
            s_dh, s_dhx = _lane_sums(acc_dh, V), _lane_sums(acc_dhx, V)
            for v in range(V):
                dshift_part[b0 + v, c], dweight_part[b0 + v, c] = s_dh[v], s_dhx[v]
                sum_g[v] += weight[c] * s_dh[v]
                sum_gx[v] += weight[c] * s_dhx[v]
        mg = _repeat_lanes((-r * sum_g / n).astype(x.dtype), W, np.empty(W * V, x.dtype))
        mgx = _repeat_lanes((-r * sum_gx / n).astype(x.dtype), W, np.empty(W * V, x.dtype))
        for c in range(k * Cg, (k + 1) * Cg):
            xc, dxc = x[c], dx[c]
            zero_ends(dxc, head, head + groups * size, i == 0, i == groups - 1)
            dxc[base + H * row:head + (i + 1) * size] = 0     # the zero row, first (see groupnorm_silu_lanes)
            wc = weight[c]
            for h in range(H):
                o = np.uint64(base + h * row)
                for q in range(n_row):
                    xh = xc[o + q] * xs[q] + xo[q]
                    dxc[o + q] = xs[q] * wc * dxc[o + q] + mg[q] + mgx[q] * xh
                dxc[o + n_row:o + np.uint64(row)] = 0         # the zero point after row h
    return dx


# --- one image per point: the sums along whole stretches, the zero points masked out ----
@njit(fastmath={"reassoc"}, error_model="numpy", cache=True)
def _masked_sums(x, start, mask, m):
    """(sum of x, sum of (x - m)^2) over x[start : start + n] where mask (n,) is 1, in float64."""
    s, ss = 0.0, 0.0
    start = np.uint64(start)
    for q in range(np.uint64(mask.size)):
        v = np.float64(x[start + q])
        s += v * mask[q]
        d = (v - m) * mask[q]
        ss += d * d
    return s, ss


@njit(cache=True, error_model="numpy")
def _line_stats(grid, conv_bias, c0, c1, base, mask, H, W, eps):
    """(mean, rstd) of x = grid + conv_bias over channels c0..c1-1 of the image whose pixel (0, 0)
    is grid point `base`, on one-image lines (two passes, float64)."""
    n = (c1 - c0) * H * W
    s = 0.0
    for c in range(c0, c1):
        s += _masked_sums(grid[c], base, mask, 0.0)[0] + np.float64(conv_bias[c]) * (H * W)
    m = s / n
    ss = 0.0
    for c in range(c0, c1):
        ss += _masked_sums(grid[c], base, mask, m - np.float64(conv_bias[c]))[1]
    return m, 1.0 / math.sqrt(ss / n + eps)


@njit(parallel=True, cache=True, error_model="numpy", fastmath={"contract"})
def groupnorm_silu_line(grid, conv_bias, weight, bias, shift, G, eps, R, H, W, mask, xl, mean, rstd):
    """groupnorm_silu_lanes for one image per point; mask (H*R,) is 1 at a stretch's
    real points and 0 at its zero points (line_mask)."""
    C = grid.shape[0]
    B = shift.shape[0]
    Cg = C // G
    size, head = (H + 1) * R, R + 1
    n_str = np.uint64(H * R)
    one = grid.dtype.type(1)
    for it in prange(B * G):
        b, k = it // G, it % G
        base = b * size                                       # grid index of image b's pixel (0, 0)
        m, r = _line_stats(grid, conv_bias, k * Cg, (k + 1) * Cg, base, mask, H, W, eps)
        mean[b, k], rstd[b, k] = m, r
        for c in range(k * Cg, (k + 1) * Cg):
            a = grid.dtype.type(weight[c] * r)
            o = grid.dtype.type(bias[c] + shift[b, c] + (conv_bias[c] - m) * r * weight[c])
            x, line = grid[c], xl[c]
            zero_ends(line, head, head + B * size, b == 0, b == B - 1)
            src, out = np.uint64(base), np.uint64(head + base)
            for q in range(n_str):
                hq = x[src + q] * a + o
                line[out + q] = hq * sigmoid(hq, one) * mask[q]
            line[head + base + H * R:head + base + size] = 0   # the zero row after image b
    return xl


def line_mask(g, H, W, dtype):
    """(H*R,) 1 at the real points of an image's stretch on one-image lines g, 0 at its zero points."""
    mask = np.ones(H * g.R, dtype)
    mask[W::g.R] = 0
    return mask


def groupnorm_silu_to_lines(grid, g, H, W, conv_bias, weight, bias, shift, num_groups, eps, xl,
                            residual=None, src_head=0):
    """(xl, mean, rstd): the lines xl (C, g.L) of SiLU(GroupNorm(x) + shift) for the conv
    output x = grid (C, g.P) + conv_bias on Lines g; mean, rstd (B, num_groups).
    Image lanes only: residual None, or (res, res_bias, res_head) added at every pixel; x
    read at grid[:, src_head + p] (src_head = the head: grid is x's own lines) (groupnorm_silu_lanes)."""
    B, dtype = shift.shape[0], grid.dtype
    mean, rstd = np.empty((B, num_groups), dtype), np.empty((B, num_groups), dtype)
    if g.V == 1:
        if residual is not None or src_head:
            raise ValueError("groupnorm_silu_to_lines: a residual or src_head needs image lanes (g.V == LANES)")
        groupnorm_silu_line(grid, conv_bias, weight, bias, shift, num_groups, eps, g.R, H, W,
                            line_mask(g, H, W, dtype), xl, mean, rstd)
    else:
        res, res_bias, res_head = (grid, conv_bias, 0) if residual is None else residual
        groupnorm_silu_lanes(grid, src_head, conv_bias, weight, bias, shift, num_groups, eps, g.V, g.R, H, W,
                             xl, mean, rstd, residual is not None, res, res_bias, res_head)
    return xl, mean, rstd
