"""Copies onto, off and between image lanes (CPU, Numba): the plumbing of the lanes layout.

An OnLines (activation.py) is an activation lying on the image lanes of
geometry.py: V = LANES images side by side per point, zero at every point
that is not a pixel, so any 3x3 conv reads it where it lies. Onto and off the
lanes a point's V values are one image each (gather / scatter: image_to_lines,
lines_to_image); between two layouts of lanes a point's V values move
together, one contiguous vector (phase_lanes_from_lines, phase_grids_to_lanes,
lines_from_phases, phase_lines_from_lines). A conv kernel writes its outputs
straight onto lines (y_head = the lines' head, the bias as the sums' start);
zero_off_pixels then clears the junk it wrote at each row's zero point (on_lines).

Lines of a group of V images: rows of R = W + 1 points (the last one zero), then
a zero row; `size` = (H + 1) R V values a group, `head` = (R + 1) V zeros first.
"""
import numpy as np
from numba import njit, prange

from ..conv.cpu_4x4s2 import phase_point, zero_phase_stretch
from ..runtime import numba_threads  # noqa: F401  (selects the threading layer first)
from ..runtime.scratch import scratch
from . import geometry
from .activation import OnLines
from .geometry import LANES, from_lanes, gather_lanes, lane_lines, offsets, to_lanes, zero_ends

def lines_fit(x):
    """True when x (B, C, H, W) can go onto image lanes: B a positive multiple of LANES (and
    geometry.USE_LANES). ops.lanes_fit has checked the array type and the kernels."""
    return geometry.USE_LANES and x.ndim == 4 and x.shape[0] > 0 and x.shape[0] % LANES == 0


# --- copies between layouts of lanes ------------------------------------------------------
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
                s, d = phase_point(c, h, w, i, size_out, Ro, V, P), np.uint64(d0 + w * V)
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


# --- onto and off the lanes, and channel parts -----------------------------------------------
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


def norm_arrays(norm, C, dtype):
    """(weight, bias) of a GroupNorm as contiguous arrays, ones / zeros for None."""
    weight, bias = norm[0], norm[1]
    return (np.ones(C, dtype) if weight is None else np.ascontiguousarray(weight),
            np.zeros(C, dtype) if bias is None else np.ascontiguousarray(bias))
