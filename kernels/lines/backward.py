"""A U-Net train step on image lanes: the backward passes of the layers of forward.py (CPU, Numba).

With grad, the U-Net's layers hand on OnLines too (activation.py) and each keeps
its input OnLines for backward; the gradients flow back on the lines as well,
so a train step never goes through NCHW between two convs. Every gradient
OnLines is zero off its pixels, which the kernels below need: the weight
gradients of conv/cpu_3x3.py / conv/cpu_4x4s2.py sum over the whole grid, the
junk points included.

    conv 3x3         dw from the input's and dy's lines (conv3x3_line_weight_grad); dx the
                     transposed conv of dy's lines, its grid onto fresh lines
    conv 4x4 s2      the input's phases again (phase_lanes_from_lines) for dw; dx on the phase
                     grid, each pixel's V values put back from its phase point (lines_from_phases)
    upsample + conv  dy's four phases gathered from its lines (phase_lines_from_lines), then
                     as upconv_cpu.upsample_conv3x3_backward_cpu
    GroupNorm+SiLU   groupnorm_lines_cpu.groupnorm_silu_backward_lanes
"""
import numpy as np

from ..conv.cpu_3x3 import CHUNK, chunks, conv3x3_line, conv3x3_line_weight_grad, grid_rows, steps
from ..conv.cpu_4x4s2 import conv2x2_line, conv2x2_line_weight_grad, line_shifts
from ..conv.cpu_4x4s2 import phase_weights as phase_weights_4x4
from ..conv.reference_3x3 import flip_taps
from ..groupnorm.cpu_lines import groupnorm_silu_backward_lanes
from ..runtime.scratch import scratch
from ..upconv.phases import PHASES, phase_weights_grad
from ..upconv.phases import phase_weights as phase_weights_up
from .activation import OnLines
from .copies import conv_lines, lines_from_phases, norm_arrays, on_lines, phase_lanes_from_lines, phase_lines_from_lines, split_lines, stack_lines
from .geometry import offsets

def _pixel_sums(D):
    """(C,) the sum of D over its batch and pixels (its lines are zero elsewhere)."""
    return D.line.sum(axis=1)


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
    """(dX, dw, db) of on_lines_cpu.conv3x3_on_lines; db None unless need_bias."""
    dxs, dws, dbs = conv3x3_shared_backward_on_lines([dY], [X], [w], need_bias)
    return dxs[0], dws[0], dbs[0]


def conv4x4s2_backward_on_lines(dY, X, w, need_bias=True):
    """(dX, dw, db) of on_lines_cpu.conv4x4s2_on_lines, as conv4x4s2_cpu.conv4x4s2_backward_cpu
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
    return OnLines(dx, X.g, X.shape), dw, _pixel_sums(dY) if need_bias else None


def upsample_conv3x3_backward_on_lines(dY, X, w, need_bias=True):
    """(dX, dw, db) of on_lines_cpu.upsample_conv3x3_on_lines, as
    upconv_cpu.upsample_conv3x3_backward_cpu on the lines; db None unless need_bias."""
    B, Cin, H, W = X.shape
    Cout, g, dtype = w.shape[0], X.g, X.line.dtype
    dyl = phase_lines_from_lines(dY.line, H, W, g.nseg, scratch("dyl", (4 * Cout, g.L), dtype))   # (4Cout, L)
    dW_k = scratch("dw_k", (4, chunks(g), Cout, Cin, 4), dtype)
    for ae, (a, e) in enumerate(PHASES):
        conv2x2_line_weight_grad(X.line, line_shifts(Cin, a * g.row + e * g.col), dyl[ae * Cout:(ae + 1) * Cout],
                                 *steps(g), dW_k[ae])
    dw = phase_weights_grad(dW_k.sum(axis=1).reshape(4, Cout, Cin, 2, 2))  # (Cout, Cin, 3, 3)
    W_dx = flip_taps(phase_weights_up(w).reshape(4 * Cout, Cin, 2, 2))     # (Cin, 4Cout, 2, 2)
    shift = np.concatenate([line_shifts(Cout, (1 - a) * g.row + (1 - e) * g.col) for a, e in PHASES])
    dx = conv2x2_line(dyl, shift, W_dx, np.zeros(Cin, dtype), *steps(g), conv_lines(grid_rows(Cin, 4), g, dtype),
                      g.head)                                                 # (Cin+, L)
    dX = on_lines(dx, g, X.shape)
    return dX, dw, _pixel_sums(dY) if need_bias else None


def groupnorm_silu_backward_on_lines(dZ, X, mean, rstd, weight, bias, shift, num_groups):
    """(dX, dweight, dbias, dshift) of groupnorm_silu_forward_on_lines (the residual's gradient
    is dZ itself); None for absent weight / bias / shift, as groupnorm_silu_backward_cpu."""
    B, C, H, W = X.shape
    dtype = X.line.dtype
    w, b = norm_arrays((weight, bias), C, dtype)
    sh = np.zeros((B, C), dtype) if shift is None else np.ascontiguousarray(shift)
    dx = np.empty_like(X.line)                                                 # (C, L)
    dshift = np.empty((B, C), np.float64)                                      # (B, C) partial sums
    dweight = np.empty((B, C), np.float64)
    groupnorm_silu_backward_lanes(dZ.line, X.line, np.ascontiguousarray(mean), np.ascontiguousarray(rstd),
                                  w, b, sh, num_groups, X.g.R, H, W, dx, dshift, dweight)
    return (OnLines(dx, X.g, X.shape),
            None if weight is None else dweight.sum(axis=0).astype(dtype),
            None if bias is None else dshift.sum(axis=0).astype(dtype),
            None if shift is None else dshift.astype(dtype))
