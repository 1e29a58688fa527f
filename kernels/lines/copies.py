"""Copies onto, off and between image lanes (CPU, Numba): the plumbing of the lanes layout.

An OnLines (activation.py) is an activation lying on the image lanes of
geometry.py: V = LANES images side by side per point, zero at every point
that is not a pixel, so any 3x3 conv reads it where it lies. Onto and off the
lanes a point's V values are one image each (gather / scatter: image_to_lines,
lines_to_image); between two layouts of lanes (the phases of conv/lanes.py and
upconv/lanes.py) a point's V values move together. A conv kernel writes its outputs
straight onto lines (y_head = the lines' head, the bias as the sums' start);
zero_off_pixels then clears the junk it wrote at each row's zero point (on_lines).

Lines of a group of V images: rows of R = W + 1 points (the last one zero), then
a zero row; `size` = (H + 1) R V values a group, `head` = (R + 1) V zeros first.
"""
import numpy as np
from numba import njit, prange

from ..runtime import numba_threads  # noqa: F401  (selects the threading layer first)
from ..runtime.scratch import scratch
from . import geometry
from .activation import OnLines
from .geometry import LANES, from_lanes, lane_lines, offsets, to_lanes, zero_ends

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


def pixel_sums(D):
    """(C,) the sum of D over its batch and pixels (its lines are zero elsewhere)."""
    return D.line.sum(axis=1)


def norm_arrays(norm, C, dtype):
    """(weight, bias) of a GroupNorm as contiguous arrays, ones / zeros for None."""
    weight, bias = norm[0], norm[1]
    return (np.ones(C, dtype) if weight is None else np.ascontiguousarray(weight),
            np.zeros(C, dtype) if bias is None else np.ascontiguousarray(bias))
