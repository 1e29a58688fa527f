"""A U-Net train step on image lanes: the backward passes of the layers of on_lines_cpu.py (CPU, Numba).

With grad, the U-Net's layers hand on OnLines too (on_lines.py) and each keeps
its input OnLines for backward; the gradients flow back on the lines as well,
so a train step never goes through NCHW between two convs. Every gradient
OnLines is zero off its pixels, which the kernels below need: the weight
gradients of conv3x3_cpu.py / conv4x4s2_cpu.py sum over the whole grid, the
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
from numba import njit, prange

from . import numba_threads  # noqa: F401  (selects the threading layer first)
from .conv3x3_cpu import CHUNK, chunks, conv3x3_line, conv3x3_line_weight_grad, conv_biases, grid_rows, steps
from .conv3x3_reference import flip_taps
from .conv4x4s2_cpu import _phase_point, conv2x2_line, conv2x2_line_weight_grad, line_shifts
from .conv4x4s2_cpu import phase_weights as phase_weights_4x4
from .groupnorm_lines_cpu import groupnorm_silu_backward_lanes, groupnorm_silu_to_lines
from .lines import LANES, gather_lanes, offsets, zero_ends
from .on_lines import OnLines
from .on_lines_cpu import conv_lines, norm_arrays, on_lines, phase_lanes_from_lines, phase_sizes, stack_lines
from .scratch import scratch
from .upconv_phases import PHASES, phase_weights_grad
from .upconv_phases import phase_weights as phase_weights_up


# --- copies -----------------------------------------------------------------------------
# Loop mapping: prange over (channel c, image group i); iteration (c, i) writes group i's
# stretch of dx line c: each pixel's V values from its phase point of dq (flat), then the
# zero points, the zero row, and for the first / last group the head / tail.
@njit(parallel=True, cache=True)
def lines_from_phases(dq, H, W, G, Ho, Wo, dx):
    """dx[c, head + ((i*(H+1) + h)*R + w)*V + lane] = dq[4c + 2a + e, ((i*(Ho+1) + u)*Ro + v)*V + lane],
    h = 2u + a - 1, w = 2v + e - 1 (the inverse of on_lines_cpu.phase_lanes_from_lines):
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
                s, d = _phase_point(c, h, w, i, size_out, Ro, V, P), np.uint64(d0 + w * V)
                for lane in range(v_):
                    line[d + lane] = dq_f[s + lane]
            line[d0 + W * V:d0 + R * V] = 0                                    # the zero point
    return dx


# Loop mapping: prange over (channel c, image group i), as upconv_cpu.phase_lines_lanes,
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


def split_lines(X, channels):
    """X's channels split into OnLines of `channels` channels each (views of X's rows)."""
    B, _, H, W = X.shape
    c = offsets(channels)
    return [OnLines(X.line[c[k]:c[k + 1]], X.g, (B, c[k + 1] - c[k], H, W)) for k in range(len(channels))]


def concat_lines(parts):
    """The channel concatenation of OnLines parts as OnLines (a fresh array; one part: itself)."""
    if len(parts) == 1:
        return parts[0]
    B, _, H, W = parts[0].shape
    line = np.concatenate([p.line for p in parts])
    return OnLines(line, parts[0].g, (B, line.shape[0], H, W))


def _pixel_sums(D):
    """(C,) the sum of D over its batch and pixels (its lines are zero elsewhere)."""
    return D.line.sum(axis=1)


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
