"""The layers of a U-Net forward on image lanes, and their copies (CPU, Numba).

Read on_lines.py first: an OnLines is an activation lying on the image lanes
of lines.py, zero off its pixels, so any 3x3 conv reads it where it lies.
Each layer here takes OnLines and returns OnLines:

    conv 3x3         conv3x3_line on the input's lines, writing fresh lines (zero_off_pixels after)
    conv 4x4 s2      the input's phases gathered from its lines (phase_lanes_from_lines),
                     conv2x2_line writing fresh lines
    upsample + conv  the four phase convs of upconv_cpu.py on the input's lines; the
                     phase grids interleaved onto the lines of the 2H x 2W output
    ResBlock         conv -> GroupNorm+SiLU -> conv -> GroupNorm+SiLU + skip, each
                     GroupNorm writing lines (groupnorm_lines_cpu.py), the last one
                     adding the skip (the input's lines, or the 3x3 skip conv's grid)
    attention        via NCHW (to_array, then image_to_lines): 7x7, and its GEMMs want tokens

Under no_grad() the ResBlock runs fused (resblock_on_lines: its convs' grids are scratch);
with grad the layers run one by one on lines and keep their inputs (on_lines_grad_cpu.py).

Copies: onto and off the lanes a point's V = LANES values are one image each
(gather / scatter: to_lanes, from_lanes), but between two layouts of lanes a
point's V values move together, one contiguous vector: phase_lanes_from_lines
and phase_grids_to_lanes copy whole points. A conv kernel writes its outputs
straight onto lines (y_head = the lines' head, the bias as the sums' start);
zero_off_pixels then clears the junk it wrote at each row's zero point.

Lines of a group of V images: rows of R = W + 1 points (the last one zero), then
a zero row; `size` = (H + 1) R V values a group, `head` = (R + 1) V zeros first.
"""
import numpy as np
from numba import njit, prange

from . import lines as lines_mod
from . import numba_threads  # noqa: F401  (selects the threading layer first)
from .conv3x3_cpu import conv3x3_line, conv_biases, grid_rows, steps
from .conv4x4s2_cpu import _phase_point, conv2x2_line, line_shifts, output_size, zero_phase_stretch
from .conv4x4s2_cpu import phase_weights as phase_weights_4x4
from .groupnorm_lines_cpu import groupnorm_silu_to_lines
from .lines import LANES, from_lanes, lane_lines, to_lanes, zero_ends
from .on_lines import OnLines
from .scratch import scratch
from .upconv_phases import PHASES
from .upconv_phases import phase_weights as phase_weights_up


def lines_flow_cpu(x):
    """True when a forward of x (B, C, H, W) can run on OnLines: B a multiple of LANES
    (and lines.USE_LANES). The dispatcher has checked the array type and the kernels."""
    return lines_mod.USE_LANES and x.ndim == 4 and x.shape[0] > 0 and x.shape[0] % LANES == 0


# --- copies -----------------------------------------------------------------------------
# Loop mapping: prange over (channel c, image group i); iteration (c, i) zeroes group
# i's zero points and zero row on line c, and the first and last groups the head and tail.
@njit(parallel=True, cache=True)
def zero_off_pixels(line, R, H, W, G):
    """line[c] = 0 at every point that is not a pixel of image lanes (rows of R = W + 1 points):
    after a conv kernel wrote its outputs straight onto the lines (y_head = the head), the
    junk at each row's zero point and whatever was in the rest."""
    C = line.shape[0]
    V = LANES
    row, size, head = R * V, (H + 1) * R * V, (R + 1) * V
    for ci in prange(C * G):
        c, i = ci // G, ci % G
        dst = line[c]
        zero_ends(dst, head, head + G * size, i == 0, i == G - 1)
        dst[head + i * size + H * row:head + (i + 1) * size] = 0          # the zero row
        for h in range(H):
            o = head + i * size + h * row + W * V
            dst[o:o + V] = 0                                              # the zero point
    return line


@njit(inline="always")
def phase_sizes(H, W, Ho, Wo):
    """(R, Ro, size_in, size_out, head): the row lengths in points and the group stretches of
    an H x W input's lanes lines and of its Ho x Wo phase lines, and the input lines' head."""
    V = LANES
    R, Ro = W + 1, Wo + 1
    return R, Ro, (H + 1) * R * V, (Ho + 1) * Ro * V, (R + 1) * V


# Loop mapping: prange over (channel c, image group i), as space_to_depth_lanes
# (conv4x4s2_cpu.py), whose phase layout this writes; each pixel's V values are
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
                o = _phase_point(c, h, w, i, size_out, Ro, V, L)
                s = np.uint64(head + i * size_in + (h * R + w) * V)
                for lane in range(v_):
                    q_f[o + lane] = src[s + lane]
    return q


# Loop mapping: prange over (channel o, image group i); iteration (o, i) writes group
# i's stretch of output line o: pixel (2u + a, 2v + e) is point (u, v) of phase grid
# 2a + e, V contiguous values, plus the bias; zero points, zero row, head and tail.
@njit(parallel=True, cache=True)
def phase_grids_to_lanes(grids, R, H, W, G, bias, line):
    """line (C, L2) = the lines of y[b, o, 2u + a, 2v + e] = grids[2a + e, o, ((i*(H+1) + u)*R + v)*V + lane]
    + bias[o] (b = i*V + lane): the four phase grids of upconv_cpu.py, interleaved onto
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


# Loop mapping: prange over the rows; each one contiguous copy.
@njit(parallel=True, cache=True)
def copy_rows(src, dst):
    """dst[c] = src[c] for every row c."""
    for c in prange(src.shape[0]):
        dst[c] = src[c]
    return dst


# --- onto and off the lanes ----------------------------------------------------------------
def image_to_lines(x):
    """OnLines of x (B, C, H, W), B a multiple of LANES."""
    B, C, H, W = x.shape
    g = lane_lines(B, H, W)
    line = to_lanes(np.ascontiguousarray(x), g.R, np.empty((C, g.L), x.dtype))   # (C, L)
    return OnLines(line, g, (B, C, H, W))


def lines_to_image(X):
    """X as an NCHW array (B, C, H, W): from_lanes of the lines past their head."""
    return from_lanes(X.line, X.g.R, np.zeros(X.shape[1], X.line.dtype), np.empty(X.shape, X.line.dtype), X.g.head)


def conv_lines(rows, g, dtype):
    """A fresh (rows, g.L) array for a conv kernel to write its outputs onto as lines
    (y_head = g.head); on_lines() then zeroes what is not a pixel."""
    return np.empty((rows, g.L), dtype)


def on_lines(y, g, shape):
    """OnLines of shape (B, C, H, W) from lines y (>= C rows) a conv wrote its outputs onto."""
    B, C, H, W = shape
    return OnLines(zero_off_pixels(y[:C], g.R, H, W, g.nseg), g, shape)


def stack_lines(parts, name="xl"):
    """The lines (sum C_k, L) of the channel concatenation of OnLines parts, in scratch array
    `name` (one part: its own lines)."""
    if len(parts) == 1:
        return parts[0].line
    Cin, L = sum(p.shape[1] for p in parts), parts[0].line.shape[1]
    xl = scratch(name, (Cin, L), parts[0].line.dtype)
    c = 0
    for p in parts:
        copy_rows(p.line, xl[c:c + p.shape[1]])
        c += p.shape[1]
    return xl


# --- the layers -----------------------------------------------------------------------------
def conv3x3_on_lines(X, w, b):
    """conv3x3 (stride 1, padding 1) of X with w (Cout, Cin, 3, 3) plus b (None: 0), as OnLines."""
    B, _, H, W = X.shape
    Cout, g, dtype = w.shape[0], X.g, X.line.dtype
    y = conv3x3_line(X.line, np.ascontiguousarray(w), conv_biases([w], [b], dtype)[0], *steps(g),
                     conv_lines(grid_rows(Cout), g, dtype), g.head)                   # (Cout+, L)
    return on_lines(y, g, (B, Cout, H, W))


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


def norm_arrays(norm, C, dtype):
    """(weight, bias) of a GroupNorm as contiguous arrays, ones / zeros for None."""
    weight, bias = norm[0], norm[1]
    return (np.ones(C, dtype) if weight is None else np.ascontiguousarray(weight),
            np.zeros(C, dtype) if bias is None else np.ascontiguousarray(bias))
