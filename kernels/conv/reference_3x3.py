"""3x3 stride-1 padding-1 convolution in plain `xp`, on the padded lines of conv/cpu_3x3.py.

Nearly all of the U-Net's convolutions are 3x3 with stride 1 and padding 1.
conv/reference.py builds each kernel offset's window X_ij as a strided 4-D copy
(rows of W values). This file uses the layout of the Numba kernel instead:
one zero-padded line per channel for the whole batch, rows of R = W + 1 values
(one shared zero between rows), one shared zero row after each image:

    xl[c, (R + 1) + (b*(H+1) + h)*R + w] = x[b, c, h, w]        (zeros elsewhere)

On that line tap (i, j) of grid point p = (b*(H+1) + h)*R + w is
xl[c, p + i*R + j], so for all P = B*(H+1)*R grid points at once the window
is one contiguous slice, and

    cols = the nine slices xl[:, i*R+j : i*R+j+P] stacked       (9*Cin, P), row (i, j, c)
    y    = w as (Cout, (i, j, c)) @ cols                          (Cout, P), one GEMM
    dw[:, :, i, j] = dY @ xl[:, i*R+j : i*R+j+P]^T               (Cout, Cin), a view, no copy
    dx   = the forward on dy's line, taps flipped (i, j -> 2-i, 2-j), channels swapped

with dY = dyl[:, R+1 : R+1+P], dy on the grid (zero at the junk points: the
zero column and row). The grid has (H+1)(W+1) points per H*W outputs; the
junk outputs are dropped by `from_grid`.

The batch is processed in groups of images (image_groups) so the nine slices
of a group stay in cache. Measured on 2 cores, in-process against
conv/reference.py's strided windows over alternating steps: the U-Net train
step (batch 32) 0.67x the time, its forward (batch 64) 0.83x.
"""
from ..xp import get_xp

# The nine tap slices of a group of images are at most this large (but at least
# one image), so they stay in cache between being written and read by the GEMM.
# One slab for the whole batch is up to 64 MB at the U-Net's sizes; measured
# against it (in-process, alternating steps), 2 MB groups took the U-Net train
# step from 0.82-0.84x to 0.67x the strided windows' time, and the forward at
# batch 64 from 1.13x to 0.83x; one image per group, 1, 4, 8 and 32 MB were slower.
COLS_BYTES = 2 << 20


def is_3x3_same(kh, kw, sh, sw, ph, pw):
    """True for the convolution this file covers: 3x3, stride 1, padding 1."""
    return kh == kw == 3 and sh == sw == 1 and ph == pw == 1


def to_line(x):
    """x (B, C, H, W) -> (xl (C, L), R, P): the padded lines, row length and grid length."""
    xp = get_xp(x)
    B, C, H, W = x.shape
    R = W + 1
    P = B * (H + 1) * R
    xl = xp.zeros((C, P + 2 * R + 2), dtype=x.dtype)                  # (C, L)
    grid = xl[:, R + 1:R + 1 + P].reshape(C, B, H + 1, R)              # a view (one axis split)
    grid[:, :, :H, :W] = x.transpose(1, 0, 2, 3)
    return xl, R, P


def from_grid(g, B, H, W):
    """g (C, P) on the grid -> (B, C, H, W): drop the junk column and row."""
    xp = get_xp(g)
    C = g.shape[0]
    planes = g.reshape(C, B, H + 1, W + 1)[:, :, :H, :W]              # (C, B, H, W)
    return xp.ascontiguousarray(planes.transpose(1, 0, 2, 3))


def line_taps(xl, R, P):
    """cols (9*C, P): row (i, j, c) is the slice xl[c, i*R + j : i*R + j + P]."""
    xp = get_xp(xl)
    C = xl.shape[0]
    cols = xp.empty((3, 3, C, P), dtype=xl.dtype)
    for i in range(3):
        for j in range(3):
            cols[i, j] = xl[:, i * R + j:i * R + j + P]
    return cols.reshape(9 * C, P)


def image_groups(B, H, W, C, itemsize):
    """Consecutive image ranges [b0, b1) whose nine tap slices (9*C rows) fit COLS_BYTES."""
    per_image = 9 * C * (H + 1) * (W + 1) * itemsize
    k = max(1, COLS_BYTES // per_image)
    return [(b0, min(b0 + k, B)) for b0 in range(0, B, k)]


def flip_taps(w):
    """(Cout, Cin, kh, kw) -> (Cin, Cout, kh, kw), taps flipped (i, j -> kh-1-i, kw-1-j):
    the weights of the transposed stride-1 convolution, which gives dx from dy."""
    return get_xp(w).ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))


def _conv_lines(xl, R, P, w, b, B, H, W):
    """y (B, Cout, H, W) = w @ line_taps(xl) + b for a group of B images in lines xl."""
    xp = get_xp(xl)
    Cout, Cin = w.shape[:2]
    w_m = w.transpose(0, 2, 3, 1).reshape(Cout, 9 * Cin)               # columns (i, j, c)
    y = xp.matmul(w_m, line_taps(xl, R, P))                            # (Cout, P)
    if b is not None:
        y += b[:, None]
    return from_grid(y, B, H, W)


def conv3x3_forward_reference(x, w, b):
    """y = conv3x3(x, w) + b, stride 1, padding 1:  x (B, Cin, H, W) -> y (B, Cout, H, W)."""
    xp = get_xp(x)
    B, Cin, H, W = x.shape
    y = xp.empty((B, w.shape[0], H, W), dtype=xp.result_type(x, w))
    for b0, b1 in image_groups(B, H, W, Cin, x.dtype.itemsize):
        xl, R, P = to_line(x[b0:b1])                                   # (Cin, L)
        y[b0:b1] = _conv_lines(xl, R, P, w, b, b1 - b0, H, W)
    return y


def conv3x3_backward_reference(dy, x, w, need_bias=True):
    """(dx, dw, db) of conv3x3_forward_reference; db is None unless need_bias.

    Per group of images: dx is the forward on dy's lines with flip_taps(w), and
    dw[:, :, i, j] = dY @ (tap (i, j) slice of xl)^T, a GEMM on a view."""
    xp = get_xp(x)
    B, Cin, H, W = x.shape
    Cout = w.shape[0]
    w_flip = flip_taps(w)                                              # (Cin, Cout, 3, 3)
    dx = xp.empty(x.shape, dtype=xp.result_type(dy, w))
    dw = xp.zeros(w.shape, dtype=xp.result_type(dy, x))
    for b0, b1 in image_groups(B, H, W, max(Cin, Cout), x.dtype.itemsize):
        xl, R, P = to_line(x[b0:b1])                                   # (Cin, L)
        dyl, _, _ = to_line(dy[b0:b1])                                 # (Cout, L)
        dx[b0:b1] = _conv_lines(dyl, R, P, w_flip, None, b1 - b0, H, W)
        dY = dyl[:, R + 1:R + 1 + P]                                   # (Cout, P), dy on the grid
        for i in range(3):
            for j in range(3):
                dw[:, :, i, j] += dY @ xl[:, i * R + j:i * R + j + P].T  # (Cout, Cin)
    db = dy.sum(axis=(0, 2, 3)) if need_bias else None                 # (Cout,)
    return dx, dw, db
