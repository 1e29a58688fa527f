"""Numba CPU kernels for the "padded grid" form of a stride-1 convolution.

Lay every padded image side by side in one channel-major row per channel,

    grid (C, front + B*Hp*Wp + back):  grid[c, front + (b*Hp + h)*Wp + w] = x_pad[b, c, h, w]

Then moving a kernel window by (i, j) is moving along the row by i*Wp + j, so
for a stride-1 convolution every im2col row is ONE contiguous slice of `grid`:

    cols[(c, i, j), m] = grid[c, m + i*Wp + j]      m = (b*Hp + oh)*Wp + ow

computed for all M = B*Hp*Wp grid positions m. The positions with oh >= Ho or
ow >= Wo read across a row or image boundary and give garbage outputs, which
`from_grid_cpu` simply never copies out. That costs (Hp*Wp)/(Ho*Wo) - 1 extra
columns (15% at 28x28, 31% at 14x14), and buys im2col as plain memcpy and
col2im as a second im2col (see conv_cpu.py). These three kernels are all the
data movement; the arithmetic is in the BLAS GEMMs.

Flat indexing as in conv_cpu.py (unsigned offsets keep the loops vectorised).
"""
from numba import njit, prange

from . import numba_threads  # noqa: F401  (selects the threading layer first)
from .flat_cpu import add as _add, fill as _fill, gather as _gather


# Loop mapping: prange over (c, b); iteration (c, b) owns the Hp*Wp block of
# sample b in channel c's row and writes it whole (zeros, then the image rows).
@njit(parallel=True, cache=True)
def to_grid_cpu(x, top, left, Hp, Wp, front, grid):
    """grid[c, front + (b*Hp + top + h)*Wp + left + w] = x[b, c, h, w], every other entry 0.

    x (B, C, H, W) -> grid (C, L), L >= front + B*Hp*Wp; (top, left) is where
    the image starts inside its Hp x Wp cell (the padding, or 0 for dy).
    """
    B, C, H, W = x.shape
    L, P = grid.shape[1], Hp * Wp
    x_f, g_f = x.ravel(), grid.ravel()
    for cb in prange(C * B):
        c, b = cb // B, cb % B
        cell = c * L + front + b * P                                  # grid[c, front + b*P]
        _fill(g_f, cell, P, 0)
        for h in range(H):
            _gather(g_f, cell + (top + h) * Wp + left, x_f, ((b * C + c) * H + h) * W, W, 1)
    for c in prange(C):                                               # the margins
        _fill(g_f, c * L, front, 0)
        _fill(g_f, c * L + front + B * P, L - front - B * P, 0)
    return grid


# Loop mapping: prange over the C*n output rows; each is one contiguous copy of M values.
@njit(parallel=True, cache=True)
def shifted_rows_cpu(grid, offsets, M, cols):
    """cols[c*n + k, :] = grid[c, offsets[k] : offsets[k] + M]:  (C, L) -> (C*n, M), n = len(offsets)."""
    C, L = grid.shape
    n = offsets.shape[0]
    g_f, c_f = grid.ravel(), cols.ravel()
    for r in prange(C * n):
        c, k = r // n, r % n
        _gather(c_f, r * M, g_f, c * L + offsets[k], M, 1)
    return cols


# Loop mapping: prange over (b, c); each copies the H rows of W values of one
# output plane out of its cell (and adds the bias). Output planes are disjoint.
@njit(parallel=True, cache=True)
def from_grid_cpu(grid, top, left, Hp, Wp, bias, out):
    """out[b, c, h, w] = grid[c, (b*Hp + top + h)*Wp + left + w] + bias[c]:  (C, B*Hp*Wp) -> (B, C, H, W)."""
    B, C, H, W = out.shape
    L, P = grid.shape[1], Hp * Wp
    g_f, o_f = grid.ravel(), out.ravel()
    for bc in prange(B * C):
        b, c = bc // C, bc % C
        for h in range(H):
            dst = (bc * H + h) * W
            _gather(o_f, dst, g_f, c * L + b * P + (top + h) * Wp + left, W, 1)
            _add(o_f, dst, W, bias[c])
    return out
