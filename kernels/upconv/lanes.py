"""Nearest x2 upsampling + 3x3 conv on image lanes (CPU, Numba): OnLines in, OnLines out.

Forward: the four phase convs of cpu.py run on the input's lines, and their grids are
interleaved onto the lines of the 2H x 2W output (phase_grids_to_lanes). Backward: dy's four
phases are gathered from its lines (phase_lines_from_lines), then as cpu.py's backward, dx
written straight onto fresh lines. A point's V values move together, one contiguous vector.
"""
import numpy as np
from numba import njit, prange

from ..conv.cpu_3x3 import chunks, conv_biases, grid_rows, steps
from ..conv.cpu_4x4s2 import conv2x2_line, conv2x2_line_weight_grad, line_shifts
from ..conv.reference_3x3 import flip_taps
from ..lines.activation import OnLines
from ..lines.copies import conv_lines, on_lines, pixel_sums
from ..lines.geometry import LANES, gather_lanes, lane_lines, zero_ends
from ..runtime import numba_threads  # noqa: F401  (selects the threading layer first)
from ..runtime.scratch import scratch
from .phases import PHASES, phase_weights, phase_weights_grad

# Loop mapping: prange over (channel o, image group i); iteration (o, i) writes group
# i's stretch of output line o: pixel (2u + a, 2v + e) is point (u, v) of phase grid
# 2a + e, V contiguous values, plus the bias; zero points, zero row, head and tail.
@njit(parallel=True, cache=True)
def phase_grids_to_lanes(grids, R, H, W, G, bias, line):
    """line (C, L2) = the lines of y[b, o, 2u + a, 2v + e] = grids[2a + e, o, ((i*(H+1) + u)*R + v)*V + lane]
    + bias[o] (b = i*V + lane): the four phase grids of upconv/cpu.py, interleaved onto
    image lanes of 2H x 2W (rows of 2W + 1 points)."""
    C = line.shape[0]
    V = LANES
    v_ = np.uint64(V)
    R2 = 2 * W + 1
    size1, size2, head2 = (H + 1) * R * V, (2 * H + 1) * R2 * V, (R2 + 1) * V
    for oi in prange(C * G):
        o, i = oi // G, oi % G
        dst, b = line[o], bias[o]
        zero_ends(dst, head2, head2 + G * size2, i == 0, i == G - 1)
        dst[head2 + i * size2 + 2 * H * R2 * V:head2 + (i + 1) * size2] = 0   # the zero row
        for h2 in range(2 * H):
            u, a = h2 // 2, h2 % 2
            d0 = head2 + i * size2 + h2 * R2 * V
            for w2 in range(2 * W):
                v, e = w2 // 2, w2 % 2
                src = grids[2 * a + e, o]
                s, d = np.uint64(i * size1 + (u * R + v) * V), np.uint64(d0 + w2 * V)
                for lane in range(v_):
                    dst[d + lane] = src[s + lane] + b
            dst[d0 + 2 * W * V:d0 + R2 * V] = 0                                # the zero point
    return line


# Loop mapping: prange over (channel c, image group i), as cpu.phase_lines_lanes,
# whose layout this writes: phase (a, e) of dy on the lanes of the small grid.
@njit(parallel=True, cache=True)
def phase_lines_from_lines(dy, H, W, G, dl):
    """dl[(2a + e) C + c, head + ((i*(H+1) + u)*R + v)*V + lane] = pixel (2u + a, 2v + e) of dy's
    lines (C, L2) of 2H x 2W: (C, L2) -> (4C, L), R = W + 1, zero off the pixels."""
    C = dy.shape[0]
    V = LANES
    R, R2 = W + 1, 2 * W + 1
    head, size = (R + 1) * V, (H + 1) * R * V
    head2, size2 = (R2 + 1) * V, (2 * H + 1) * R2 * V
    for ci in prange(C * G):
        c, i = ci // G, ci % G
        for ae in range(4):
            a, e = ae // 2, ae % 2
            line = dl[ae * C + c]
            zero_ends(line, head, head + G * size, i == 0, i == G - 1)
            # phase (a, e) is dy's pixel (2u + a, 2v + e): rows 2 R2 V apart, points 2 V
            gather_lanes(line, head + i * size, dy[c], head2 + i * size2 + (a * R2 + e) * V, 1,
                         2 * R2 * V, 2 * V, H, W, R)
    return dl


def upsample_conv3x3_on_lines(X, w, b):
    """conv3x3(nearest x2 upsampling of X) with w (Cout, Cin, 3, 3) plus b, as OnLines at (2H, 2W):
    the phase convs of cpu.upsample_conv3x3_forward_cpu on X's lines."""
    B, Cin, H, W = X.shape
    Cout, g = w.shape[0], X.g
    Wp = phase_weights(np.ascontiguousarray(w))                          # (4, Cout, Cin, 2, 2)
    grids = scratch("grid", (4, grid_rows(Cout, 4), g.P), X.line.dtype)    # (4, Cout+, P)
    zeros = np.zeros(Cout, X.line.dtype)
    for ae, (a, e) in enumerate(PHASES):
        conv2x2_line(X.line, line_shifts(Cin, a * g.row + e * g.col), Wp[ae], zeros, *steps(g), grids[ae], 0)
    g2 = lane_lines(B, 2 * H, 2 * W)
    bias = conv_biases([w], [b], X.line.dtype)[0]
    line = phase_grids_to_lanes(grids, g.R, H, W, g.nseg, bias, np.empty((Cout, g2.L), X.line.dtype))
    return OnLines(line, g2, (B, Cout, 2 * H, 2 * W))


def upsample_conv3x3_backward_on_lines(dY, X, w, need_bias=True):
    """(dX, dw, db) of upsample_conv3x3_on_lines, as
    cpu.upsample_conv3x3_backward_cpu on the lines; db None unless need_bias."""
    B, Cin, H, W = X.shape
    Cout, g, dtype = w.shape[0], X.g, X.line.dtype
    dyl = phase_lines_from_lines(dY.line, H, W, g.nseg, scratch("dyl", (4 * Cout, g.L), dtype))   # (4Cout, L)
    dW_k = scratch("dw_k", (4, chunks(g), Cout, Cin, 4), dtype)
    for ae, (a, e) in enumerate(PHASES):
        conv2x2_line_weight_grad(X.line, line_shifts(Cin, a * g.row + e * g.col), dyl[ae * Cout:(ae + 1) * Cout],
                                 *steps(g), dW_k[ae])
    dw = phase_weights_grad(dW_k.sum(axis=1).reshape(4, Cout, Cin, 2, 2))  # (Cout, Cin, 3, 3)
    W_dx = flip_taps(phase_weights(w).reshape(4 * Cout, Cin, 2, 2))     # (Cin, 4Cout, 2, 2)
    shift = np.concatenate([line_shifts(Cout, (1 - a) * g.row + (1 - e) * g.col) for a, e in PHASES])
    dx = conv2x2_line(dyl, shift, W_dx, np.zeros(Cin, dtype), *steps(g), conv_lines(grid_rows(Cin, 4), g, dtype),
                      g.head)                                                 # (Cin+, L)
    dX = on_lines(dx, g, X.shape)
    return dX, dw, pixel_sums(dY) if need_bias else None
