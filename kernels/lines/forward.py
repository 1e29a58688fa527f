"""The U-Net's layers on image lanes, forward (CPU, Numba): each takes OnLines and returns OnLines.

Read activation.py and copies.py first. ops.py sends an operation here when its
activation is an OnLines:

    conv 3x3         conv3x3_line on the input's lines, writing fresh lines (on_lines zeroes the junk)
    conv 4x4 s2      the input's phases gathered from its lines (phase_lanes_from_lines),
                     conv2x2_line writing fresh lines
    upsample + conv  the four phase convs of upconv/cpu.py on the input's lines; the
                     phase grids interleaved onto the lines of the 2H x 2W output
    GroupNorm+SiLU   groupnorm/cpu_lines.py, reading and writing lines (optionally adding a residual)
    ResBlock         under no_grad, fused: conv -> GroupNorm+SiLU -> conv -> GroupNorm+SiLU + skip,
                     each GroupNorm writing lines, the last adding the skip (resblock_on_lines;
                     its convs' grids are scratch)

With grad the layers run one by one and keep their inputs; backward.py holds their gradients.
"""
import numpy as np

from ..conv.cpu_3x3 import conv3x3_line, conv_biases, grid_rows, steps
from ..conv.cpu_4x4s2 import conv2x2_line, line_shifts, output_size
from ..conv.cpu_4x4s2 import phase_weights as phase_weights_4x4
from ..groupnorm.cpu_lines import groupnorm_silu_to_lines
from ..runtime.scratch import scratch
from ..upconv.phases import PHASES
from ..upconv.phases import phase_weights as phase_weights_up
from .activation import OnLines
from .copies import conv_lines, norm_arrays, on_lines, phase_grids_to_lanes, phase_lanes_from_lines, split_lines, stack_lines
from .geometry import lane_lines, offsets

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
    with the weights stacked (as conv3x3_cpu.conv3x3_shared_forward_cpu)."""
    B, _, H, W = parts[0].shape
    g, dtype = parts[0].g, parts[0].line.dtype
    xl = stack_lines(parts)                                                    # (Cin, L)
    o = offsets(w.shape[0] for w in ws)
    w = np.ascontiguousarray(ws[0] if len(ws) == 1 else np.concatenate(ws))
    y = conv3x3_line(xl, w, np.concatenate(conv_biases(ws, bs, dtype)), *steps(g),
                     conv_lines(grid_rows(o[-1]), g, dtype), g.head)               # (Cout+, L)
    return split_lines(on_lines(y, g, (B, o[-1], H, W)), [w.shape[0] for w in ws])


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


def upsample_conv3x3_on_lines(X, w, b):
    """conv3x3(nearest x2 upsampling of X) with w (Cout, Cin, 3, 3) plus b, as OnLines at (2H, 2W):
    the phase convs of upconv_cpu.upsample_conv3x3_forward_cpu on X's lines."""
    B, Cin, H, W = X.shape
    Cout, g = w.shape[0], X.g
    Wp = phase_weights_up(np.ascontiguousarray(w))                          # (4, Cout, Cin, 2, 2)
    grids = scratch("grid", (4, grid_rows(Cout, 4), g.P), X.line.dtype)    # (4, Cout+, P)
    zeros = np.zeros(Cout, X.line.dtype)
    for ae, (a, e) in enumerate(PHASES):
        conv2x2_line(X.line, line_shifts(Cin, a * g.row + e * g.col), Wp[ae], zeros, *steps(g), grids[ae], 0)
    g2 = lane_lines(B, 2 * H, 2 * W)
    bias = conv_biases([w], [b], X.line.dtype)[0]
    line = phase_grids_to_lanes(grids, g.R, H, W, g.nseg, bias, np.empty((Cout, g2.L), X.line.dtype))
    return OnLines(line, g2, (B, Cout, 2 * H, 2 * W))


def groupnorm_silu_forward_on_lines(X, weight, bias, shift, num_groups, eps, residual=None):
    """(Z, mean, rstd): Z = SiLU(GroupNorm(X) + shift) [+ residual] as OnLines (X, residual OnLines,
    shift (B, C) or None), mean and rstd (B, num_groups); groupnorm_lines_cpu.groupnorm_silu_lanes."""
    B, C, H, W = X.shape
    g, dtype = X.g, X.line.dtype
    shift = np.zeros((B, C), dtype) if shift is None else np.ascontiguousarray(shift)
    res = None if residual is None else (residual.line, np.zeros(C, dtype), g.head)
    z, mean, rstd = groupnorm_silu_to_lines(X.line, g, H, W, np.zeros(C, dtype),
                                            *norm_arrays((weight, bias), C, dtype), shift, num_groups, float(eps),
                                            np.empty((C, g.L), dtype), res, src_head=g.head)
    return OnLines(z, g, X.shape), mean, rstd


def resblock_on_lines(parts, ws, bs, norm_in, shift, w2, b2, norm_out, skip_1x1=None):
    """A ResBlock's forward on lines, y = SiLU(GN_out(conv(h, w2) + b2)) + skip, as OnLines:

        h    = SiLU(GN_in(conv(x, ws[0]) + bs[0]) + shift)    x the concatenation of the OnLines parts
        skip = conv(x, ws[1]) + bs[1] (a 3x3 skip, run with the first conv as one),
               x @ skip_1x1 = (w (Cout, Cin, 1, 1), b), or x itself (neither given)

    norm_in, norm_out: (weight, bias, num_groups, eps) of the two GroupNorms (None weight /
    bias: 1 / 0); shift (B, Cout)."""
    B, _, H, W = parts[0].shape
    g, dtype = parts[0].g, parts[0].line.dtype
    head = g.head
    xl = stack_lines(parts)                                                   # (Cin, L)
    C1, C2 = ws[0].shape[0], w2.shape[0]
    w = np.ascontiguousarray(ws[0] if len(ws) == 1 else np.concatenate(ws))   # (C1 [+ C2], Cin, 3, 3)
    bs = conv_biases(ws, bs, dtype)
    grid = conv3x3_line(xl, w, np.zeros(w.shape[0], dtype), *steps(g),
                        scratch("grid", (grid_rows(w.shape[0]), g.P), dtype), 0)          # (C1 [+ C2]+, P)
    if len(ws) > 1:
        residual = (grid[C1:], bs[1], 0)                                      # the skip conv's grid rows
    elif skip_1x1 is not None:
        sw, sb = skip_1x1
        res = np.dot(sw.reshape(C2, -1), xl)                                  # (C2, L): a 1x1 conv on the lines
        residual = (res, conv_biases([sw], [sb], dtype)[0], head)
    else:
        residual = (xl, np.zeros(C2, dtype), head)                            # the input's lines
    hl, _, _ = groupnorm_silu_to_lines(grid[:C1], g, H, W, bs[0], *norm_arrays(norm_in, C1, dtype),
                                       np.ascontiguousarray(shift), norm_in[2], float(norm_in[3]),
                                       scratch("hl", (C1, g.L), dtype))       # (C1, L)
    b2 = conv_biases([w2], [b2], dtype)[0]
    grid2 = conv3x3_line(hl, np.ascontiguousarray(w2), np.zeros(C2, dtype), *steps(g),
                         scratch("grid2", (grid_rows(C2), g.P), dtype), 0)
    y, _, _ = groupnorm_silu_to_lines(grid2[:C2], g, H, W, b2, *norm_arrays(norm_out, C2, dtype), np.zeros((B, C2), dtype),
                                      norm_out[2], float(norm_out[3]), np.empty((C2, g.L), dtype), residual)
    return OnLines(y, g, (B, C2, H, W))
