"""The U-Net's convolutions on image lanes (CPU, Numba): OnLines in, OnLines out (lines/activation.py).

ops.py sends a conv here when its activation is an OnLines:

    conv 3x3      conv3x3_line (cpu_3x3.py) on the input's lines, writing fresh lines; on_lines
                  zeroes the junk it wrote at each row's zero point. Several convs of one input
                  (the U-Net's up blocks: first conv and 3x3 skip) run as one, weights stacked.
    conv 4x4 s2   the input's phases gathered from its lines (phase_lanes_from_lines),
                  conv2x2_line (cpu_4x4s2.py) writing fresh lines

and their backward passes, all on the lines: dw from the input's and dy's lines, dx the
transposed conv of dy's lines (for the 4x4 conv on the phase grid, each pixel's V values put
back from its phase point: lines_from_phases). Every gradient OnLines is zero off its pixels,
which the weight-gradient kernels need: they sum over the whole grid, the junk points included.
Between two layouts of lanes a point's V values move together, one contiguous vector.
"""
import numpy as np
from numba import njit, prange

from ..lines.activation import OnLines
from ..lines.copies import conv_lines, on_lines, pixel_sums, split_lines, stack_lines
from ..lines.geometry import LANES, lane_lines, offsets, zero_ends
from ..runtime import numba_threads  # noqa: F401  (selects the threading layer first)
from ..runtime.scratch import scratch
from .cpu_3x3 import CHUNK, chunks, conv3x3_line, conv3x3_line_weight_grad, conv_biases, grid_rows, steps
from .cpu_4x4s2 import (conv2x2_line, conv2x2_line_weight_grad, line_shifts, output_size, phase_point,
                        zero_phase_stretch)
from .cpu_4x4s2 import phase_weights as phase_weights_4x4
from .reference_3x3 import flip_taps

@njit(inline="always")
def phase_sizes(H, W, Ho, Wo):
    """(R, Ro, size_in, size_out, head): the row lengths in points and the group stretches of
    an H x W input's lanes lines and of its Ho x Wo phase lines, and the input lines' head."""
    V = LANES
    R, Ro = W + 1, Wo + 1
    return R, Ro, (H + 1) * R * V, (Ho + 1) * Ro * V, (R + 1) * V


# Loop mapping: prange over (channel c, image group i), as space_to_depth_lanes
# (conv/cpu_4x4s2.py), whose phase layout this writes; each pixel's V values are
# one contiguous vector on the input's lines and on its phase line.
@njit(parallel=True, cache=True)
def phase_lanes_from_lines(line, H, W, G, Ho, Wo, q):
    """q[4c + 2a + e, ((i*(Ho+1) + u)*Ro + v)*V + lane] = pixel (2u + a - 1, 2v + e - 1) of
    channel c, image i*V + lane, read from its lines (C, L); 0 off the image; Ro = Wo + 1."""
    C = line.shape[0]
    V, v_ = LANES, np.uint64(LANES)
    R, Ro, size_in, size_out, head = phase_sizes(H, W, Ho, Wo)
    L = q.shape[1]
    q_f = q.ravel()
    for ci in prange(C * G):
        c, i = ci // G, ci % G
        zero_phase_stretch(q, c, i, G, size_out)
        src = line[c]
        for h in range(H):
            for w in range(W):
                o = phase_point(c, h, w, i, size_out, Ro, V, L)
                s = np.uint64(head + i * size_in + (h * R + w) * V)
                for lane in range(v_):
                    q_f[o + lane] = src[s + lane]
    return q


# --- copies -----------------------------------------------------------------------------
# Loop mapping: prange over (channel c, image group i); iteration (c, i) writes group i's
# stretch of dx line c: each pixel's V values from its phase point of dq (flat), then the
# zero points, the zero row, and for the first / last group the head / tail.
@njit(parallel=True, cache=True)
def lines_from_phases(dq, H, W, G, Ho, Wo, dx):
    """dx[c, head + ((i*(H+1) + h)*R + w)*V + lane] = dq[4c + 2a + e, ((i*(Ho+1) + u)*Ro + v)*V + lane],
    h = 2u + a - 1, w = 2v + e - 1 (the inverse of phase_lanes_from_lines):
    (4C, P) phase grid -> (C, L) lines of the H x W input, zero off the pixels."""
    C = dx.shape[0]
    V, v_ = LANES, np.uint64(LANES)
    R, Ro, size_in, size_out, head = phase_sizes(H, W, Ho, Wo)
    P = dq.shape[1]
    dq_f = dq.ravel()
    for ci in prange(C * G):
        c, i = ci // G, ci % G
        line = dx[c]
        zero_ends(line, head, head + G * size_in, i == 0, i == G - 1)
        line[head + i * size_in + H * R * V:head + (i + 1) * size_in] = 0      # the zero row
        for h in range(H):
            d0 = head + i * size_in + h * R * V
            for w in range(W):
                s, d = phase_point(c, h, w, i, size_out, Ro, V, P), np.uint64(d0 + w * V)
                for lane in range(v_):
                    line[d + lane] = dq_f[s + lane]
            line[d0 + W * V:d0 + R * V] = 0                                    # the zero point
    return dx


# --- the layers -----------------------------------------------------------------------------
def conv3x3_on_lines(X, w, b):
    """conv3x3 (stride 1, padding 1) of X with w (Cout, Cin, 3, 3) plus b (None: 0), as OnLines."""
    B, _, H, W = X.shape
    Cout, g, dtype = w.shape[0], X.g, X.line.dtype
    y = conv3x3_line(X.line, np.ascontiguousarray(w), conv_biases([w], [b], dtype)[0], *steps(g),
                     conv_lines(grid_rows(Cout), g, dtype), g.head)                   # (Cout+, L)
    return on_lines(y, g, (B, Cout, H, W))


# --- the layers -----------------------------------------------------------------------------
def conv3x3_shared_on_lines(parts, ws, bs):
    """[conv3x3(x, w_k) + b_k as OnLines] for x the concatenation of the OnLines parts: one conv
    with the weights stacked (as cpu_3x3.conv3x3_shared_forward_cpu)."""
    B, _, H, W = parts[0].shape
    g, dtype = parts[0].g, parts[0].line.dtype
    xl = stack_lines(parts)                                                    # (Cin, L)
    o = offsets(w.shape[0] for w in ws)
    w = np.ascontiguousarray(ws[0] if len(ws) == 1 else np.concatenate(ws))
    y = conv3x3_line(xl, w, np.concatenate(conv_biases(ws, bs, dtype)), *steps(g),
                     conv_lines(grid_rows(o[-1]), g, dtype), g.head)               # (Cout+, L)
    return split_lines(on_lines(y, g, (B, o[-1], H, W)), [w.shape[0] for w in ws])


def conv3x3_shared_backward_on_lines(dys, parts, ws, need_bias=True):
    """(dxs, dws, dbs) of conv3x3_shared_on_lines, all on lines: dxs OnLines split like the
    parts (the input gradient summed over the convs), dws and dbs one per conv."""
    B, _, H, W = parts[0].shape
    g, dtype = parts[0].g, parts[0].line.dtype
    c, o = offsets(p.shape[1] for p in parts), offsets(w.shape[0] for w in ws)
    xl, dyl = stack_lines(parts), stack_lines(dys, "dyl")                      # (Cin, L), (Cout, L)
    dw_k, db_k = conv3x3_line_weight_grad(xl, dyl, *steps(g), scratch("dw_k", (chunks(g), o[-1], c[-1], 9), dtype),
                                          scratch("db_k", (chunks(g), o[-1]), dtype))
    dw = dw_k.sum(axis=0).reshape(o[-1], c[-1], 3, 3)                          # (Cout, Cin, 3, 3)
    w = ws[0] if len(ws) == 1 else np.concatenate(ws)
    dx = conv3x3_line(dyl, flip_taps(w), np.zeros(c[-1], dtype), *steps(g), conv_lines(grid_rows(c[-1]), g, dtype),
                      g.head)                                                     # (Cin+, L)
    dX = on_lines(dx, g, (B, c[-1], H, W))
    db = db_k.sum(axis=0) if need_bias else None                                # (Cout,)
    return (split_lines(dX, [p.shape[1] for p in parts]), [dw[o[k]:o[k + 1]] for k in range(len(ws))],
            [None if db is None else db[o[k]:o[k + 1]] for k in range(len(ws))])


def conv3x3_backward_on_lines(dY, X, w, need_bias=True):
    """(dX, dw, db) of conv3x3_on_lines; db None unless need_bias."""
    dxs, dws, dbs = conv3x3_shared_backward_on_lines([dY], [X], [w], need_bias)
    return dxs[0], dws[0], dbs[0]


def conv4x4s2_on_lines(X, w, b):
    """conv 4x4 stride 2 padding 1 of X with w (Cout, Cin, 4, 4) plus b, as OnLines at (Ho, Wo)."""
    B, Cin, H, W = X.shape
    Cout = w.shape[0]
    Ho, Wo = output_size(H, W)
    g = lane_lines(B, Ho, Wo)
    dtype = X.line.dtype
    q = phase_lanes_from_lines(X.line, H, W, g.nseg, Ho, Wo, scratch("q", (4 * Cin, g.L), dtype))
    y = conv2x2_line(q, line_shifts(len(q)), phase_weights_4x4(w), conv_biases([w], [b], dtype)[0], *steps(g),
                     conv_lines(grid_rows(Cout, 4), g, dtype), g.head)               # (Cout+, L)
    return on_lines(y, g, (B, Cout, Ho, Wo))


def conv4x4s2_backward_on_lines(dY, X, w, need_bias=True):
    """(dX, dw, db) of conv4x4s2_on_lines, as cpu_4x4s2.conv4x4s2_backward_cpu
    on the lines; db None unless need_bias."""
    B, Cin, H, W = X.shape
    _, Cout, Ho, Wo = dY.shape
    g, dtype = dY.g, X.line.dtype
    q = phase_lanes_from_lines(X.line, H, W, g.nseg, Ho, Wo, scratch("q", (4 * Cin, g.L), dtype))
    dw_k = conv2x2_line_weight_grad(q, line_shifts(len(q)), dY.line, *steps(g),
                                    scratch("dw_k", (chunks(g), Cout, 4 * Cin, 4), dtype))
    dw6 = dw_k.sum(axis=0).reshape(Cout, Cin, 2, 2, 2, 2)                    # (o, c, a, e, i, j)
    dw = dw6.transpose(0, 1, 4, 2, 5, 3).reshape(w.shape)                    # (o, c, 2i+a, 2j+e)
    dq = conv2x2_line(dY.line, line_shifts(Cout), flip_taps(phase_weights_4x4(w)), np.zeros(4 * Cin, dtype),
                      g.row, g.col, 1, g.P, g.P, CHUNK, scratch("q", (4 * Cin, g.P), dtype), 0)   # the whole phase grid
    dx = lines_from_phases(dq, H, W, g.nseg, Ho, Wo, np.empty((Cin, X.g.L), dtype))
    return OnLines(dx, X.g, X.shape), dw, pixel_sums(dY) if need_bias else None
