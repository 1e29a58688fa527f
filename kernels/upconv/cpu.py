"""Nearest x2 upsampling then a 3x3 stride-1 padding-1 conv, on the CPU (Numba),
without building the upsampled image: four 2x2 convs on the small one.

The U-Net's UpsampleConv computes y = conv3x3(up(x)), up(x)[2u + a] = x[u]
(per axis; a in {0, 1} is the phase of an output row). Along one axis the
three taps of output row h = 2u + a read up(x) at rows 2u + a - 1, 2u + a,
2u + a + 1, which are rows of x:

    a = 0:  x[u - 1], x[u],     x[u]      ->  y = w0 x[u - 1] + (w1 + w2) x[u]
    a = 1:  x[u],     x[u],     x[u + 1]  ->  y = (w0 + w1) x[u] + w2 x[u + 1]

(x[-1] and x[H] are the zero padding). So each phase is a 2-tap filter on x,
starting at padded row u + a, with taps summed by PHASE_TAPS[a] (upconv/phases.py):
W_a[t] = sum_i PHASE_TAPS[a, t, i] w[i]. In 2-D, phase (a, e) of the output
is a 2x2 conv of the zero-padded x starting at (u + a, v + e):

    y[b, o, 2u + a, 2v + e] = bias[o] + sum_{c,t,s} W_ae[o, c, t, s] x_pad[b, c, u + a + t, v + e + s]
    W_ae[o, c, t, s] = sum_{i,j} PHASE_TAPS[a, t, i] PHASE_TAPS[e, s, j] w[o, c, i, j]

Four taps per output instead of nine: 2.25x fewer multiply-adds, and no
4x larger upsampled copy of x to write and read.

Memory layout: x goes onto the padded lines of lines/geometry.py (read conv/cpu_3x3.py
first), on the grid of the small image: lines.lines(B, H, W, C). There tap
(t, s) of phase (a, e) at grid point p is xl[c, p + (a + t) R + (e + s)], so
each phase is cpu_4x4s2.conv2x2_line with its lines shifted by
a R + e. The four phase grids are then interleaved into y (phases_to_image).

With 16 images side by side per point (the lanes of lines/geometry.py), every
offset is times V: the phase shifts are a*row + e*col (row = R*V, col = V),
and the phases are interleaved / split lane by lane.

Backward, on the same grid:
    dW_ae = conv2x2_line_weight_grad of the shifted lines and phase (a, e) of
            dy (phase_lines: dy[b, o, 2u + a, 2v + e] on the line of the small grid);
    dw    = the taps summed back: dw[o,c,i,j] = sum PHASE_TAPS[a,t,i] PHASE_TAPS[e,s,j] dW_ae[o,c,t,s];
    dx    = one 2x2 conv over all 4 Cout phase lines with the taps flipped:
            dx[b, c, u, v] = sum_{a,e,o,t,s} W_ae[o, c, 1 - t, 1 - s] dyl_ae[o, p + (1 - a + t) R + (1 - e + s)],
            p the grid point of (b, u, v), so each phase's lines are shifted by (1 - a) R + (1 - e).
"""
import numpy as np
from numba import njit, prange

from ..runtime import numba_threads  # noqa: F401  (selects the threading layer first)
from ..conv.cpu_3x3 import chunks, grid_rows, steps
from ..conv.reference_3x3 import flip_taps
from ..conv.cpu_4x4s2 import conv2x2_line, conv2x2_line_weight_grad, line_shifts
from ..lines.geometry import LANES, from_lines, gather_lanes, lines, to_lines, zero_ends
from ..runtime.scratch import scratch
from .phases import PHASES, phase_weights, phase_weights_grad
from .reference import check_upconv_args


# Loop mapping: prange over (b, o) planes; each interleaves the four phase
# grids of image b, channel o into its 2H x 2W plane of y (and adds the bias).
@njit(parallel=True, cache=True)
def phases_to_image(grids, R, bias, y):
    """y[b, o, 2u + a, 2v + e] = grids[2a + e, o, (b*(H+1) + u)*R + v] + bias[o]:  (4, C, P) -> (B, C, 2H, 2W)."""
    B, C, H2, W2 = y.shape
    H, W = H2 // 2, W2 // 2
    two = np.uint64(2)
    for bo in prange(B * C):
        b, o = bo // C, bo % C
        bias_o = bias[o]
        for u in range(H):
            s = np.uint64((b * (H + 1) + u) * R)
            for a in range(2):
                row = y[b, o, 2 * u + a]
                for e in range(2):
                    g = grids[2 * a + e, o]
                    for v in range(np.uint64(W)):
                        row[two * v + np.uint64(e)] = g[s + v] + bias_o
    return y


# Loop mapping: prange over (o, group of V images); each reads group g's
# stretch of the four phase grids of channel o and scatters every point's V
# values to the V images' 2H x 2W planes (and adds the bias). grids and y are
# indexed flat with unsigned offsets, the V images `plane` = C*2H*2W values
# apart in y (as lines.from_lanes). Measured alone against indexing
# y[b, o, h, w] and a view per phase grid (batch 32 and 64): 0.45-0.63x the time;
# phase_lines_lanes below, flat the same way, 0.45-0.71x.
@njit(parallel=True, cache=True)
def phases_to_image_lanes(grids, R, bias, y):
    """y[g*V + lane, o, 2u + a, 2v + e] = grids[2a + e, o, ((g*(H+1) + u)*R + v)*V + lane] + bias[o],
    V = LANES:  (4, C, P) -> (B, C, 2H, 2W)."""
    B, C, H2, W2 = y.shape
    H, W = H2 // 2, W2 // 2
    V = LANES
    G, v_ = B // V, np.uint64(V)
    rows, P = grids.shape[1], grids.shape[2]        # rows >= C: the grids may hold spare rows
    grids_f, y_f, plane = grids.ravel(), y.ravel(), np.uint64(C * H2 * W2)
    size = (H + 1) * R * V
    for og in prange(C * G):
        o, g = og // G, og % G
        bias_o = bias[o]
        dst = np.uint64((g * V * C + o) * H2 * W2)   # y[g*V, o, 0, 0]
        for u in range(H):
            for v in range(W):
                for ae in range(4):
                    a, e = ae // 2, ae % 2
                    s = np.uint64((ae * rows + o) * P + g * size + (u * R + v) * V)
                    d = dst + np.uint64((2 * u + a) * W2 + 2 * v + e)
                    for lane in range(v_):
                        y_f[d + lane * plane] = grids_f[s + lane] + bias_o
    return y


# Loop mapping: prange over (c, group of V images); iteration (c, g) writes
# group g's stretch of the four phase lines of channel c (and the first and
# last groups the zero head and tail); each point gathers the V images' pixel
# from the flat d, `plane` values apart (lines.gather_lanes, as to_lanes).
@njit(parallel=True, cache=True)
def phase_lines_lanes(d, R, dl):
    """dl[(2a + e) C + c, ((R + 1) + (g*(H+1) + u)*R + v)*V + lane] = d[g*V + lane, c, 2u + a, 2v + e],
    zero elsewhere, V = LANES: (B, C, 2H, 2W) -> (4C, L), each phase on the lanes of the small grid."""
    B, C, H2, W2 = d.shape
    H, W = H2 // 2, W2 // 2
    V = LANES
    G = B // V
    d_f, plane = d.ravel(), np.uint64(C * H2 * W2)
    head, size = (R + 1) * V, (H + 1) * R * V
    for cg in prange(C * G):
        c, g = cg // G, cg % G
        src = (g * V * C + c) * H2 * W2            # d[g*V, c, 0, 0]
        for ae in range(4):
            a, e = ae // 2, ae % 2
            line = dl[ae * C + c]
            zero_ends(line, head, head + G * size, g == 0, g == G - 1)
            # phase (a, e) is d[.., 2u + a, 2v + e]: rows 2*W2 apart, columns 2
            gather_lanes(line, head + g * size, d_f, src + a * W2 + e, plane, 2 * W2, 2, H, W, R)
    return dl


# Loop mapping: prange over (c, b) pairs as in to_line; iteration (c, b)
# writes image b's stretch of the four phase lines of channel c (and the
# first and last images the zero head and tail): disjoint writes.
@njit(parallel=True, cache=True)
def phase_lines(d, R, dl):
    """dl[(2a + e) C + c, R + 1 + (b*(H+1) + u)*R + v] = d[b, c, 2u + a, 2v + e], zero elsewhere:
    (B, C, 2H, 2W) -> (4C, L), each phase on the padded line of the small grid."""
    B, C, H2, W2 = d.shape
    H, W = H2 // 2, W2 // 2
    head, size = R + 1, (H + 1) * R
    two = np.uint64(2)
    for cb in prange(C * B):
        c, b = cb // B, cb % B
        base = head + b * size
        for ae in range(4):
            a, e = ae // 2, ae % 2
            line = dl[ae * C + c]
            zero_ends(line, head, head + B * size, b == 0, b == B - 1)
            for u in range(H):
                row, o = d[b, c, 2 * u + a], np.uint64(base + u * R)
                for v in range(np.uint64(W)):
                    line[o + v] = row[two * v + np.uint64(e)]
                line[o + np.uint64(W)] = 0
            line[base + H * R:base + size] = 0
    return dl


def upsample_conv3x3_forward_cpu(x, w, bias):
    """y = conv3x3(up2(x), w) + bias:  x (B, Cin, H, W) -> y (B, Cout, 2H, 2W); bias may be None."""
    check_upconv_args(x, w)
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    bias = np.zeros(w.shape[0], x.dtype) if bias is None else np.ascontiguousarray(bias)
    B, Cin, H, W = x.shape
    Cout = w.shape[0]
    g = lines(B, H, W, min(Cin, Cout))
    xl = to_lines(x, g, scratch("xl", (Cin, g.L), x.dtype))                # (Cin, L)
    Wp = phase_weights(w)                                                  # (4, Cout, Cin, 2, 2)
    grids = scratch("grid", (4, grid_rows(Cout, 4), g.P), x.dtype)         # (4, Cout+, P)
    zeros = np.zeros(Cout, x.dtype)
    for ae, (a, e) in enumerate(PHASES):
        conv2x2_line(xl, line_shifts(Cin, a * g.row + e * g.col), Wp[ae], zeros, *steps(g), grids[ae], 0)
    interleave = phases_to_image if g.V == 1 else phases_to_image_lanes
    return interleave(grids, g.R, bias, np.empty((B, Cout, 2 * H, 2 * W), x.dtype))


def upsample_conv3x3_backward_cpu(dy, x, w, need_bias=True):
    """(dx, dw, db) of upsample_conv3x3_forward_cpu; db is None unless need_bias."""
    check_upconv_args(x, w, dy)
    B, Cin, H, W = x.shape
    Cout = w.shape[0]
    g = lines(B, H, W, min(Cin, Cout))
    xl = to_lines(x, g, scratch("xl", (Cin, g.L), x.dtype))                # (Cin, L)
    split = phase_lines if g.V == 1 else phase_lines_lanes
    dyl = split(dy, g.R, scratch("dyl", (4 * Cout, g.L), x.dtype))         # (4Cout, L)
    dW_k = scratch("dw_k", (4, chunks(g), Cout, Cin, 4), x.dtype)
    for ae, (a, e) in enumerate(PHASES):
        conv2x2_line_weight_grad(xl, line_shifts(Cin, a * g.row + e * g.col), dyl[ae * Cout:(ae + 1) * Cout],
                                 *steps(g), dW_k[ae])
    dw = phase_weights_grad(dW_k.sum(axis=1).reshape(4, Cout, Cin, 2, 2))  # (Cout, Cin, 3, 3)
    W_dx = flip_taps(phase_weights(w).reshape(4 * Cout, Cin, 2, 2))        # (Cin, 4Cout, 2, 2)
    shift = np.concatenate([line_shifts(Cout, (1 - a) * g.row + (1 - e) * g.col) for a, e in PHASES])
    grid = conv2x2_line(dyl, shift, W_dx, np.zeros(Cin, x.dtype), *steps(g),
                        scratch("xl", (grid_rows(Cin, 4), g.P), x.dtype), 0)  # xl is done with
    dx = from_lines(grid, g, np.zeros(Cin, x.dtype), np.empty(x.shape, x.dtype))   # (B, Cin, H, W)
    db = dy.sum(axis=(0, 2, 3)) if need_bias else None                      # (Cout,)
    return dx, dw, db
