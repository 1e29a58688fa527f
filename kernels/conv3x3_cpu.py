"""Direct 3x3 stride-1 padding-1 convolution on the CPU (Numba), no im2col.

The U-Net's convolutions are almost all 3x3 with stride 1 and padding 1. For
them the im2col path (conv_cpu.py) spends as long writing and reading the
9x larger `cols` matrix as its GEMM spends computing; these kernels read the
input where it lies instead.

Memory layout: the padded grid
------------------------------
Each (H, W) plane is stored zero-padded, row by row, as one flat line of
Wp = W + 2 values per row:

    xp[b, c, (h + 1) * Wp + (w + 1)] = x[b, c, h, w]      (zeros elsewhere)

On that line the 3x3 window of output pixel p = h * Wp + w is the nine values
at p + i * Wp + j (i, j in 0..2): a fixed offset per tap. So the convolution
becomes, for every (output channel o, input channel c),

    y[o, p] += sum_ij w[o, c, i, j] * xp[c, p + i*Wp + j]     for p < P

a loop over p with nine loads and nine multiply-adds per output value and
no index arithmetic but p: it vectorises along p (16 floats per AVX-512
register). The output is computed on the same grid, including the two pad
columns of each row (junk, cropped afterwards) and a tail that rounds P up to
a multiple of ALIGN so the vector loop has no scalar remainder. That costs
7% extra work at 28x28 and 14% at 14x14.

The backward pass reuses the same two ideas:
    dx  = the same kernel on the padded dy with the weights flipped (i, j ->
          2 - i, 2 - j) and in/out channels swapped (a transposed conv);
    dw[o, c, i, j] = sum_{b, p} dyp[b, o, p + Wp + 1] * xp[b, c, p + i*Wp + j],
          nine dot products along the grid; the pad columns of dyp are zero,
          so the junk columns add nothing.

Indices are unsigned (np.uint64): with signed ones Numba tests every access
for negative wraparound and LLVM does not vectorise the loop.
"""
import numpy as np
from numba import njit, prange

from . import numba_threads  # noqa: F401  (selects the threading layer first)
from .scratch import scratch

ALIGN = 64      # grid length P is rounded up to this: LLVM's vector loop does 4 x 16 floats per trip


def grid_lengths(rows, R, k):
    """(P, L) for a k x k kernel on a grid of `rows` rows of length R: the grid length
    (>= rows*R, a multiple of ALIGN) and the plane length (the last tap of the last grid
    point reads index P-1 + (k-1)*(R+1))."""
    P = -(-rows * R // ALIGN) * ALIGN
    return P, P + (k - 1) * (R + 1)


def grid_geometry(H, W):
    """(Wp, P, Lp): padded row length, grid length and plane length of a 3x3 conv on H x W."""
    Wp = W + 2
    return (Wp, *grid_lengths(H, Wp, 3))


# Loop mapping: prange over (b, c) planes; each iteration zeroes and fills its
# own plane xp[b, c], so iterations write disjoint memory.
@njit(parallel=True, cache=True)
def pad_planes(x, Wp, xp):
    """xp[b, c, (h+1)*Wp + w+1] = x[b, c, h, w], zero elsewhere:  (B, C, H, W) -> (B, C, Lp)."""
    B, C, H, W = x.shape
    for bc in prange(B * C):
        b, c = bc // C, bc % C
        xp[b, c, :] = 0
        for h in range(H):
            o = (h + 1) * Wp + 1
            xp[b, c, o:o + W] = x[b, c, h, :]
    return xp


# Loop mapping: prange over (b, pair of output channels); iteration (b, o)
# owns the grid rows y[b, o] and y[b, o+1]. For each input channel it holds the
# 18 weights in registers and streams the plane xp[b, c] (a few KB, in L1):
# nine loads feed eighteen multiply-adds. The sum is written as three row
# sums so the additions are not one long dependent chain.
@njit(parallel=True, fastmath={"contract"}, cache=True)
def conv3x3_grid(xp, w, Wp, P, y):
    """y[b, o, p] = sum_{c,i,j} w[o, c, i, j] * xp[b, c, p + i*Wp + j], p < P.

    xp (B, Cin, Lp) padded planes, w (Cout, Cin, 3, 3), y (B, Cout, P) the output grid.
    """
    B, Cin, _ = xp.shape
    Cout = w.shape[0]
    pairs = (Cout + 1) // 2
    r1, r2 = np.uint64(Wp), np.uint64(2 * Wp)
    u1, u2 = np.uint64(1), np.uint64(2)
    zeros = np.zeros_like(w[0])                                   # (Cin, 3, 3)
    for it in prange(B * pairs):
        b, o0 = it // pairs, 2 * (it % pairs)
        o1 = min(o0 + 1, Cout - 1)         # odd Cout: the last "pair" is o0 alone,
        wb = w[o1] if o1 > o0 else zeros   # and its second half adds zeros to it
        ya, yb = y[b, o0], y[b, o1]
        ya[:] = 0
        yb[:] = 0
        for c in range(Cin):
            x = xp[b, c]
            a00, a01, a02 = w[o0, c, 0, 0], w[o0, c, 0, 1], w[o0, c, 0, 2]
            a10, a11, a12 = w[o0, c, 1, 0], w[o0, c, 1, 1], w[o0, c, 1, 2]
            a20, a21, a22 = w[o0, c, 2, 0], w[o0, c, 2, 1], w[o0, c, 2, 2]
            b00, b01, b02 = wb[c, 0, 0], wb[c, 0, 1], wb[c, 0, 2]
            b10, b11, b12 = wb[c, 1, 0], wb[c, 1, 1], wb[c, 1, 2]
            b20, b21, b22 = wb[c, 2, 0], wb[c, 2, 1], wb[c, 2, 2]
            for p in range(np.uint64(P)):
                x00, x01, x02 = x[p], x[p + u1], x[p + u2]                  # window row 0
                x10, x11, x12 = x[p + r1], x[p + r1 + u1], x[p + r1 + u2]   # row 1
                x20, x21, x22 = x[p + r2], x[p + r2 + u1], x[p + r2 + u2]   # row 2
                ya[p] += ((a00 * x00 + a01 * x01 + a02 * x02)
                          + (a10 * x10 + a11 * x11 + a12 * x12)
                          + (a20 * x20 + a21 * x21 + a22 * x22))
                yb[p] += ((b00 * x00 + b01 * x01 + b02 * x02)
                          + (b10 * x10 + b11 * x11 + b12 * x12)
                          + (b20 * x20 + b21 * x21 + b22 * x22))
    return y


# Loop mapping: prange over (b, pair of output channels); iteration (b, o)
# writes its own partial sums dw_b[b, o] and dw_b[b, o+1] (summed over b
# afterwards, so no two threads add into one element). For each input channel:
# eighteen dot products over the grid in one pass, the nine shifted loads of
# xp[b, c] shared by both channels. fastmath lets LLVM split each sum across
# vector lanes (a reassociation of float sums of ~900 terms per sample).
@njit(parallel=True, fastmath=True, cache=True)
def conv3x3_weight_grad(xp, dyp, Wp, P, dw_b):
    """dw_b[b, o, c, i*3 + j] = sum_p dyp[b, o, p + Wp + 1] * xp[b, c, p + i*Wp + j].

    xp (B, Cin, Lp), dyp (B, Cout, Lp) padded planes, dw_b (B, Cout, Cin, 9).
    """
    B, Cin, _ = xp.shape
    Cout = dyp.shape[1]
    pairs = (Cout + 1) // 2
    r1, r2 = np.uint64(Wp), np.uint64(2 * Wp)
    u1, u2, g0 = np.uint64(1), np.uint64(2), np.uint64(Wp + 1)   # dy[h, w] sits at p + Wp + 1
    zero = dw_b.dtype.type(0)
    for it in prange(B * pairs):
        b, o0 = it // pairs, 2 * (it % pairs)
        o1 = min(o0 + 1, Cout - 1)         # odd Cout: the last pair computes o0 twice (same values)
        ga, gb = dyp[b, o0], dyp[b, o1]
        for c in range(Cin):
            x = xp[b, c]
            a00 = a01 = a02 = a10 = a11 = a12 = a20 = a21 = a22 = zero      # dw[o0, c]
            b00 = b01 = b02 = b10 = b11 = b12 = b20 = b21 = b22 = zero      # dw[o1, c]
            for p in range(np.uint64(P)):
                da, db = ga[p + g0], gb[p + g0]
                x00, x01, x02 = x[p], x[p + u1], x[p + u2]
                x10, x11, x12 = x[p + r1], x[p + r1 + u1], x[p + r1 + u2]
                x20, x21, x22 = x[p + r2], x[p + r2 + u1], x[p + r2 + u2]
                a00 += da * x00; a01 += da * x01; a02 += da * x02       # noqa: E702
                a10 += da * x10; a11 += da * x11; a12 += da * x12       # noqa: E702
                a20 += da * x20; a21 += da * x21; a22 += da * x22       # noqa: E702
                b00 += db * x00; b01 += db * x01; b02 += db * x02       # noqa: E702
                b10 += db * x10; b11 += db * x11; b12 += db * x12       # noqa: E702
                b20 += db * x20; b21 += db * x21; b22 += db * x22       # noqa: E702
            sa, sb = dw_b[b, o0, c], dw_b[b, o1, c]
            sa[0], sa[1], sa[2], sa[3], sa[4], sa[5], sa[6], sa[7], sa[8] = (
                a00, a01, a02, a10, a11, a12, a20, a21, a22)
            sb[0], sb[1], sb[2], sb[3], sb[4], sb[5], sb[6], sb[7], sb[8] = (
                b00, b01, b02, b10, b11, b12, b20, b21, b22)
    return dw_b


# Loop mapping: prange over (b, o) planes; each copies the H rows of W real
# values out of its grid row (dropping pad columns and tail) and adds the bias.
@njit(parallel=True, cache=True)
def crop_grid(grid, Wp, bias, y):
    """y[b, o, h, w] = grid[b, o, h*Wp + w] + bias[o]:  (B, C, P) -> (B, C, H, W)."""
    B, C, H, W = y.shape
    for bc in prange(B * C):
        b, o = bc // C, bc % C
        g, yo, bo = grid[b, o], y[b, o], bias[o]
        for h in range(H):
            for w in range(W):
                yo[h, w] = g[h * Wp + w] + bo
    return y


def is_3x3_same(kh, kw, sh, sw, ph, pw):
    """True for the convolution these kernels cover: 3x3, stride 1, padding 1."""
    return kh == kw == 3 and sh == sw == 1 and ph == pw == 1


def conv3x3_forward_cpu(x, w, bias):
    """y = conv3x3(x, w) + bias, stride 1, padding 1:  x (B, Cin, H, W) -> y (B, Cout, H, W)."""
    B, Cin, H, W = x.shape
    Cout = w.shape[0]
    Wp, P, Lp = grid_geometry(H, W)
    xp = pad_planes(x, Wp, scratch("xp", (B, Cin, Lp), x.dtype))           # (B, Cin, Lp)
    grid = conv3x3_grid(xp, w, Wp, P, scratch("grid", (B, Cout, P), x.dtype))  # (B, Cout, P)
    return crop_grid(grid, Wp, bias, np.empty((B, Cout, H, W), x.dtype))


def conv3x3_backward_cpu(dy, x, w, need_bias=True):
    """(dx, dw, db) of conv3x3_forward_cpu; db is None unless need_bias."""
    B, Cin, H, W = x.shape
    Cout = w.shape[0]
    Wp, P, Lp = grid_geometry(H, W)
    xp = pad_planes(x, Wp, scratch("xp", (B, Cin, Lp), x.dtype))           # (B, Cin, Lp)
    dyp = pad_planes(dy, Wp, scratch("dyp", (B, Cout, Lp), x.dtype))       # (B, Cout, Lp)
    dw_b = conv3x3_weight_grad(xp, dyp, Wp, P, scratch("dw_b", (B, Cout, Cin, 9), x.dtype))
    dw = dw_b.sum(axis=0).reshape(w.shape)                                 # (Cout, Cin, 3, 3)
    w_t = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (Cin, Cout, 3, 3)
    grid = scratch("xp", (B, Cin, P), x.dtype)                             # xp is done with: reuse it
    grid = conv3x3_grid(dyp, w_t, Wp, P, grid)                             # (B, Cin, P)
    dx = crop_grid(grid, Wp, np.zeros(Cin, x.dtype), np.empty_like(x))     # (B, Cin, H, W)
    db = dy.sum(axis=(0, 2, 3)) if need_bias else None                      # (Cout,)
    return dx, dw, db
