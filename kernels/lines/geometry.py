"""The padded-line layout of the CPU conv kernels: where a batch of images lies.

The direct conv kernels (conv/cpu_3x3.py, conv/cpu_4x4s2.py, upconv/cpu.py)
never build an im2col matrix. They read each channel of the whole batch from
one flat, zero-padded line on which every tap of a 3x3 window is a fixed
offset from its output, so their inner loop is a plain sweep along the line.

One image per point (V = 1)
---------------------------
All B images of channel c lie on one line, row after row, each row followed
by one zero, each image followed by one zero row of R = W + 1 values:

    xl[c, (R + 1) + (b*(H + 1) + h)*R + w] = x[b, c, h, w]        (zeros elsewhere)

The zero after row h is both its right neighbour and the left neighbour of
row h + 1, and the zero row after image b is both its bottom and the top of
image b + 1, so one zero serves two borders. Grid point
p = (b*(H + 1) + h)*R + w is output (b, h, w), and its tap (i, j) is
xl[c, p + i*R + j]. The kernels compute every grid point, the zero column and
row included (junk, dropped afterwards by from_line): (H + 1)(W + 1) points
per H*W outputs, 7% extra work at 28x28, 15% at 14x14, 31% at 7x7.

V images per point (lanes)
--------------------------
When the batch is a multiple of V = LANES = 16 (and the conv has enough
channels for it to pay: lanes()), the images of a group of V lie side
by side: every point of the line above holds V values, one per image, one
512-bit vector register of float32 (two of float64):

    xl[c, ((R + 1) + (g*(H + 1) + h)*R + w)*V + v] = x[g*V + v, c, h, w]

Tap (i, j) is then the offset (i*R + j)*V, a whole number of vectors, so with
the line's start aligned to 64 bytes every load of the kernels is aligned;
and a group's H rows are a stretch of H*R*V values long enough to sweep
alone, so the kernels skip the zero rows (junk: (W + 1)/W, 14% at 7x7,
7% at 14x14). Measured against V = 1 at the U-Net's shapes, kernels alone,
batch 32 and 64, aligned lines, alternating calls: 3x3 forward 0.74-0.84x
the time. The copies in and out gather / scatter across the V images.

Each geometry is a `Lines` tuple; the kernels take its steps and stretches:
a tap (i, j) at p + i*row + j*col, the computed values in `nseg` stretches
of `seg` values, `stride` apart (for V = 1, one stretch: the whole grid).
"""
from itertools import accumulate
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from ..runtime import numba_threads  # noqa: F401  (selects the threading layer first)

ALIGN = 64      # V = 1: the grid length P is rounded up to this (LLVM's vector loop does 4 x 16 floats per trip)
LANES = 16      # V of the lanes layout: images per point. A compile-time constant of
# to_lanes / from_lanes: with V passed as an argument they measured 2x slower
# (their inner loop over the V images is then not unrolled into one gather).
USE_LANES = True  # False: always one image per point (for A/B timing and tests)
# When lanes pay (lanes()). Per conv of the anchor U-Net, forward and backward,
# batch 32 and 64, lanes / V = 1 (their copies in and out cost more than
# V = 1's, so the kernel must gain enough per copied value):
#   7x7 (31% junk -> 14%):     0.79-0.91x   14x14 (15% -> 7%):  0.81-0.94x
#   28x28 (7% -> 3.5%), 32 -> 32 channels: 0.87-0.98x, 16 -> 16: 0.91-1.08x,
#   1 -> 16 and 16 -> 1: 1.01-1.51x.
# 28x28 with 16 channels used to stay on V = 1 (whole forward 1.04x slower on
# lanes); since the lane copies index NCHW flat and no_grad() keeps a ResBlock's
# middle on the lines, lanes there too measured (one process, alternating):
# no_grad forward 0.979-0.987x, train step 0.992x. So the rule is the channels.
LANES_MIN_CHANNELS = 16          # min(Cin, Cout) for lanes

class Lines(NamedTuple):
    """Geometry of a batch on the padded lines (values, not bytes)."""
    V: int        # images per point: 1, or one vector of lanes
    R: int        # points per row: W + 1
    P: int        # grid length: where the outputs and the junk lie
    L: int        # line length: the last tap of the last grid value reads L - 1
    row: int      # offset of the next window row: R*V
    col: int      # offset of the next window column: V
    nseg: int     # stretches the kernels compute ...
    seg: int      # ... each this long ...
    stride: int   # ... and this far apart

    @property
    def head(self):
        """Where grid point 0 lies on the lines: (R + 1) V zeros before the first image."""
        return (self.R + 1) * self.V


def line_geometry(B, H, W):
    """(R, P, L) of one image per point: row length, grid length (a multiple of ALIGN)
    and line length of B images of H x W (the last tap of the last grid point reads L - 1)."""
    R = W + 1
    P = -(-B * (H + 1) * R // ALIGN) * ALIGN
    return R, P, P + 2 * R + 2


def lanes(B, H, W, C):
    """Images per point for a conv on B images of H x W with C = min(Cin, Cout):
    LANES when B is a multiple of it and C >= LANES_MIN_CHANNELS (above: when it pays), else 1."""
    if not USE_LANES or B % LANES or C < LANES_MIN_CHANNELS:
        return 1
    return LANES


def lines(B, H, W, C):
    """The Lines of a conv on B images of H x W, C = min(Cin, Cout): V = lanes(B, H, W, C)."""
    if lanes(B, H, W, C) == 1:
        R, P, L = line_geometry(B, H, W)
        return Lines(1, R, P, L, R, 1, 1, P, P)
    return lane_lines(B, H, W)


def lane_lines(B, H, W):
    """The Lines of B images of H x W as image lanes (V = LANES), B a multiple of LANES."""
    V, R = LANES, W + 1
    stride = (H + 1) * R * V                  # one group's H rows and its zero row
    P = B // V * stride
    return Lines(V, R, P, P + (2 * R + 2) * V, R * V, V, B // V, H * R * V, stride)


@njit(inline="always")
def zero_ends(line, head, tail, first, last):
    """The padding before the first image (or group) and after the last: line[:head] and
    line[tail:] = 0, written by the iteration that holds the first / the last one."""
    if first:
        line[:head] = 0
    if last:
        line[tail:] = 0


# Loop mapping: prange over (c, b); iteration (c, b) writes image b's stretch
# of line c (its H rows, each with its zero, and its zero row), and the first
# and last images also the zero head and tail: disjoint writes, each value
# written once. Unsigned indices, so the row copies vectorise.
@njit(parallel=True, cache=True)
def to_line(x, R, xl):
    """xl[c, R + 1 + (b*(H+1) + h)*R + w] = x[b, c, h, w], zero elsewhere: (B, C, H, W) -> (C, L)."""
    B, C, H, W = x.shape
    head, size = R + 1, (H + 1) * R                # zeros before image 0; one image's stretch
    for cb in prange(C * B):
        c, b = cb // B, cb % B
        line = xl[c]
        zero_ends(line, head, head + B * size, b == 0, b == B - 1)
        base = head + b * size
        for h in range(H):
            row, o = x[b, c, h], np.uint64(base + h * R)
            for w in range(np.uint64(W)):
                line[o + w] = row[w]
            line[o + np.uint64(W)] = 0             # the zero between row h and row h + 1
        line[base + H * R:base + size] = 0         # the zero row after image b
    return xl


# Loop mapping: prange over (b, o) planes; each copies the H rows of W real
# values of image b out of the grid row y[o] (dropping the junk) and adds the bias.
# Unsigned indices, so the row copies vectorise.
@njit(parallel=True, cache=True)
def from_line(grid, R, bias, y):
    """y[b, o, h, w] = grid[o, (b*(H+1) + h)*R + w] + bias[o]:  (C, P) -> (B, C, H, W)."""
    B, C, H, W = y.shape
    for bo in prange(B * C):
        b, o = bo // C, bo % C
        g, bias_o = grid[o], bias[o]
        for h in range(H):
            row, s = y[b, o, h], np.uint64((b * (H + 1) + h) * R)
            for w in range(np.uint64(W)):
                row[w] = g[s + w] + bias_o
    return y


@njit(inline="always")
def gather_lanes(line, base, src_f, src, plane, row_step, col_step, H, W, R):
    """One group's stretch of a lanes line, starting at `base`: point (h, w) (h < H, w < W)
    gets the V = LANES values src_f[src + h*row_step + w*col_step + v*plane], v < V, and
    the zero point after each row and the zero row after the group are written as 0.
    Offsets are unsigned, so the index arithmetic has no negative-index tests."""
    V = LANES
    v_ = np.uint64(V)
    for h in range(H):
        for w in range(W):
            o = np.uint64(base + (h * R + w) * V)
            s = np.uint64(src + h * row_step + w * col_step)
            for v in range(v_):
                line[o + v] = src_f[s + v * plane]
        o = base + (h * R + W) * V
        line[o:o + V] = 0                          # the zero point between row h and row h + 1
    line[base + H * R * V:base + (H + 1) * R * V] = 0   # the zero row after the group


# Loop mapping: prange over (c, g); iteration (c, g) writes group g's stretch
# of line c, and the first and last groups the zero head and tail. Each point
# gathers pixel (h, w) of the V = LANES images: V contiguous values, read
# `plane` = C*H*W values apart from the flat x (flat, unsigned offsets:
# 0.73-0.85x the time of indexing x[b, c, h, w]).
@njit(parallel=True, cache=True)
def to_lanes(x, R, xl):
    """xl[c, ((R+1) + (g*(H+1) + h)*R + w)*V + v] = x[g*V + v, c, h, w], zero elsewhere; V = LANES."""
    B, C, H, W = x.shape
    V = LANES
    G = B // V
    x_f, plane = x.ravel(), np.uint64(C * H * W)   # lane v of a point is v*plane further in x_f
    head, size = (R + 1) * V, (H + 1) * R * V      # zeros before group 0; one group's stretch
    for cg in prange(C * G):
        c, g = cg // G, cg % G
        line = xl[c]
        zero_ends(line, head, head + G * size, g == 0, g == G - 1)
        gather_lanes(line, head + g * size, x_f, (g * V * C + c) * H * W, plane, W, 1, H, W, R)
    return xl


# Loop mapping: prange over (o, g); iteration (o, g) reads group g's stretch
# of grid row o (L1-sized) and scatters each point's V = LANES values to the
# V images, `plane` values apart in the flat y (as in to_lanes).
@njit(parallel=True, cache=True)
def from_lanes(grid, R, bias, y, start=0):
    """y[g*V + v, o, h, w] = grid[o, start + ((g*(H+1) + h)*R + w)*V + v] + bias[o], V = LANES:
    (C, P) -> (B, C, H, W); start = 0 for a grid, the head for lines."""
    B, C, H, W = y.shape
    V = LANES
    G, v_ = B // V, np.uint64(V)
    y_f, plane = y.ravel(), np.uint64(C * H * W)
    size = (H + 1) * R * V
    for og in prange(C * G):
        o, g = og // G, og % G
        row, bias_o = grid[o], bias[o]
        dst = np.uint64((g * V * C + o) * H * W)   # y[g*V, o, 0, 0]
        for h in range(H):
            for w in range(W):
                s, d = np.uint64(start + g * size + (h * R + w) * V), dst + np.uint64(h * W + w)
                for v in range(v_):
                    y_f[d + v * plane] = row[s + v] + bias_o
    return y


def to_lines(x, g, xl):
    """x (B, C, H, W) onto the lines xl (C, g.L) of geometry g."""
    return to_line(x, g.R, xl) if g.V == 1 else to_lanes(x, g.R, xl)


def from_lines(grid, g, bias, y):
    """The outputs y (B, C, H, W) = grid (C, g.P) without its junk, plus bias (C,);
    y C-contiguous (from_lanes writes it through a flat view)."""
    if not y.flags.c_contiguous:
        raise ValueError("from_lines: y must be C-contiguous")
    return from_line(grid, g.R, bias, y) if g.V == 1 else from_lanes(grid, g.R, bias, y)


def offsets(sizes):
    """[0, n_0, n_0 + n_1, ...]: where each of these blocks starts in their concatenation."""
    return list(accumulate(sizes, initial=0))


def parts_to_lines(parts, g, xl):
    """to_lines of the channel concatenation of `parts` (B, C_k, H, W), each part
    written into its own rows of xl (sum C_k, g.L): the concatenation is never built."""
    c = offsets(a.shape[1] for a in parts)
    for k, part in enumerate(parts):
        to_lines(part, g, xl[c[k]:c[k + 1]])
    return xl
