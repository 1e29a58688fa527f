"""Direct 3x3 stride-1 padding-1 convolution on the CPU (Numba), no im2col.

The U-Net's convolutions are almost all 3x3 with stride 1 and padding 1. For
them the im2col path (conv/cpu.py) spends as long writing and reading the
9x larger `cols` matrix as its GEMM spends computing; these kernels read the
input where it lies instead.

Memory layout: the padded lines of lines/geometry.py
-------------------------------------------
Every channel of the whole batch lies on one zero-padded line on which the
3x3 window of an output is nine values at fixed offsets from it: with one
image per point (V = 1), grid point p = (b*(H + 1) + h)*R + w, R = W + 1,
has its taps at p + i*R + j; with V images side by side per point (lanes),
at p + (i*R + j)*V. So the convolution becomes, for every (output channel o,
input channel c),

    y[o, p] += sum_ij w[o, c, i, j] * xl[c, p + i*row + j*col]      (row = R*V, col = V)

a loop over p with nine loads and nine multiply-adds per output value and no
index arithmetic but p: it vectorises along p (16 floats per AVX-512
register). The output is computed on the same grid, junk included (the zero
column, and for V = 1 the zero rows and a tail rounding P up to ALIGN),
dropped afterwards by from_lines.

Why one line for the whole batch: the loop over p is then long at every size.
With one padded plane per image (an earlier layout) a 7x7 plane was a
loop of 4 vectors per (output pair, input channel), and setting it up cost as
much as running it; the weight gradient also summed a (B, Cout, Cin, 9)
array. Measured in-process on the anchor U-Net (25 interleaved steps): train
step 0.91x and forward 0.96x the per-image layout's time.

Work is split into chunks of CHUNK grid values, so the two output rows a
thread accumulates stay in L1 (2 x 4 KB) while it sweeps the input channels.

The backward pass reuses the same two ideas:
    dx  = the same kernel on dy in the line layout, with the weights flipped
          (i, j -> 2 - i, 2 - j) and in/out channels swapped (a transposed conv);
    dw[o, c, i, j] = sum_p dyl[o, p + row + col] * xl[c, p + i*row + j*col],
          nine dot products along the grid, a partial sum per chunk; the junk
          positions of dyl are zero, so they add nothing.

Convs sharing an input (conv3x3_shared_*): the U-Net's up blocks run their
first conv and their 3x3 skip conv on the same input, the concatenation of a
skip connection and the upsampled path. Both are one conv here, their weights
stacked along Cout, reading one input line that the parts are copied into
(the concatenation is never built); the backward sums both input gradients in
that one conv. Measured in-process on the anchor U-Net (31 alternating steps,
paired): train step 0.936x, batch-64 forward 0.944x the separate convs'.

Indices are unsigned (np.uint64): with signed ones Numba tests every access
for negative wraparound and LLVM does not vectorise the loop.
"""
import numpy as np
from numba import njit, prange

from ..runtime import numba_threads  # noqa: F401  (selects the threading layer first)
from .reference_3x3 import flip_taps
from ..lines.geometry import from_lines, lines, offsets, parts_to_lines
from ..runtime.scratch import scratch

CHUNK = 1024    # grid values per prange iteration (a multiple of geometry.ALIGN); measured best of 512-2048.
# It is passed to the kernels as an argument: with it compiled in as a
# constant instead, the U-Net forward measured 12-15% slower.


def grid_rows(C, per_pass=2):
    """Rows of an output grid for C channels: C rounded up to a multiple of
    per_pass, the rows a kernel iteration fills together (2 here, 4 in the 4x4
    kernel). Past channel C - 1 the last pass writes spare rows, not row C - 1
    again: two names for one row stop LLVM from vectorising (a 16 -> 1 conv at
    32x28x28 measured 0.71 ms with the row shared, 0.09 ms with a spare)."""
    return -(-C // per_pass) * per_pass


# Loop mapping: prange over (chunk, pair of output channels); a chunk is up
# to `chunk` values of one of the nseg stretches. Iteration (k, o) owns chunk
# k of the rows y[o] and y[o+1]. For each input channel it holds the 18
# weights in registers and streams that stretch of xl[c]: nine loads feed
# eighteen multiply-adds. The sum is written as three row sums so the
# additions are not one long dependent chain. Iterations with consecutive
# numbers share a chunk, so a thread re-reads it from cache.
@njit(parallel=True, fastmath={"contract"}, cache=True)
def conv3x3_line(xl, w, bias, row, col, nseg, seg, stride, chunk, y, y_head):
    """y[o, y_head + p] = bias[o] + sum_{c,i,j} w[o, c, i, j] * xl[c, p + i*row + j*col] for p in
    the stretches [s*stride, s*stride + seg), s < nseg (lines.Lines gives the steps and stretches).

    xl (Cin, L) padded lines, w (Cout, Cin, 3, 3), bias (Cout,), y (grid_rows(Cout), >= P + y_head)
    the output: a grid (y_head = 0), or lines (y_head = their head: conv/lanes.py);
    `chunk` values per iteration.
    """
    Cin = xl.shape[0]
    Cout = w.shape[0]
    pairs = (Cout + 1) // 2
    if y.shape[0] < 2 * pairs:
        raise ValueError("conv3x3_line: y needs grid_rows(Cout) rows (a spare one for odd Cout)")
    per_seg = (seg + chunk - 1) // chunk
    r1, r2 = np.uint64(row), np.uint64(2 * row)
    u1, u2 = np.uint64(col), np.uint64(2 * col)
    zeros = np.zeros_like(w[0])                                   # (Cin, 3, 3)
    for it in prange(nseg * per_seg * pairs):
        k, o0 = it // pairs, 2 * (it % pairs)
        o1 = min(o0 + 1, Cout - 1)         # odd Cout: the last "pair" is o0 alone,
        wb = w[o1] if o1 > o0 else zeros   # and its second half sums zeros into y's spare row
        s, q = k // per_seg, k % per_seg   # chunk q of stretch s
        p0 = s * stride + q * chunk
        p1 = s * stride + min((q + 1) * chunk, seg)
        ya, yb = y[o0], y[o0 + 1]
        ya[y_head + p0:y_head + p1] = bias[o0]
        yb[y_head + p0:y_head + p1] = bias[o1] if o1 > o0 else 0
        for c in range(Cin):
            x = xl[c]
            a00, a01, a02 = w[o0, c, 0, 0], w[o0, c, 0, 1], w[o0, c, 0, 2]
            a10, a11, a12 = w[o0, c, 1, 0], w[o0, c, 1, 1], w[o0, c, 1, 2]
            a20, a21, a22 = w[o0, c, 2, 0], w[o0, c, 2, 1], w[o0, c, 2, 2]
            b00, b01, b02 = wb[c, 0, 0], wb[c, 0, 1], wb[c, 0, 2]
            b10, b11, b12 = wb[c, 1, 0], wb[c, 1, 1], wb[c, 1, 2]
            b20, b21, b22 = wb[c, 2, 0], wb[c, 2, 1], wb[c, 2, 2]
            for p in range(np.uint64(p0), np.uint64(p1)):
                x00, x01, x02 = x[p], x[p + u1], x[p + u2]                  # window row 0
                x10, x11, x12 = x[p + r1], x[p + r1 + u1], x[p + r1 + u2]   # row 1
                x20, x21, x22 = x[p + r2], x[p + r2 + u1], x[p + r2 + u2]   # row 2
                o = p + np.uint64(y_head)
                ya[o] += ((a00 * x00 + a01 * x01 + a02 * x02)
                          + (a10 * x10 + a11 * x11 + a12 * x12)
                          + (a20 * x20 + a21 * x21 + a22 * x22))
                yb[o] += ((b00 * x00 + b01 * x01 + b02 * x02)
                          + (b10 * x10 + b11 * x11 + b12 * x12)
                          + (b20 * x20 + b21 * x21 + b22 * x22))
    return y


# Loop mapping: prange over (chunk, pair of output channels), the chunks of
# conv3x3_line; iteration (k, o) writes its own partial sums dw_k[k, o],
# dw_k[k, o+1], db_k[k, o] and db_k[k, o+1] (summed over the chunks
# afterwards, so no two threads add into one element). For each input
# channel: eighteen dot products over the chunk in one pass, the nine shifted
# loads of xl[c] shared by both channels. fastmath lets LLVM split each sum
# across vector lanes (a reassociation of float sums of `chunk` terms).
@njit(parallel=True, fastmath=True, cache=True)
def conv3x3_line_weight_grad(xl, dyl, row, col, nseg, seg, stride, chunk, dw_k, db_k):
    """dw_k[k, o, c, i*3 + j] = sum_{p in chunk k} dyl[o, p + row + col] * xl[c, p + i*row + j*col],
    db_k[k, o] = sum_{p in chunk k} dyl[o, p + row + col], the chunks of conv3x3_line.

    xl (Cin, L), dyl (Cout, L) padded lines, dw_k (chunks, Cout, Cin, 9),
    db_k (chunks, Cout) with chunks = nseg * ceil(seg / chunk).
    """
    Cin = xl.shape[0]
    Cout = dyl.shape[0]
    pairs = (Cout + 1) // 2
    per_seg = (seg + chunk - 1) // chunk
    r1, r2 = np.uint64(row), np.uint64(2 * row)
    u1, u2 = np.uint64(col), np.uint64(2 * col)
    g0 = np.uint64(row + col)              # dy[b, h, w] sits at its grid point + row + col
    zero = dw_k.dtype.type(0)
    for it in prange(nseg * per_seg * pairs):
        k, o0 = it // pairs, 2 * (it % pairs)
        o1 = min(o0 + 1, Cout - 1)         # odd Cout: the last pair computes o0 twice (same values)
        s, q = k // per_seg, k % per_seg
        p0 = s * stride + q * chunk
        p1 = s * stride + min((q + 1) * chunk, seg)
        ga, gb = dyl[o0], dyl[o1]
        db_a = db_b = zero                 # the bias gradient: dy summed over the chunk
        for p in range(np.uint64(p0), np.uint64(p1)):
            db_a += ga[p + g0]
            db_b += gb[p + g0]
        db_k[k, o0], db_k[k, o1] = db_a, db_b
        for c in range(Cin):
            x = xl[c]
            a00 = a01 = a02 = a10 = a11 = a12 = a20 = a21 = a22 = zero      # dw[o0, c]
            b00 = b01 = b02 = b10 = b11 = b12 = b20 = b21 = b22 = zero      # dw[o1, c]
            for p in range(np.uint64(p0), np.uint64(p1)):
                dya, dyb = ga[p + g0], gb[p + g0]
                x00, x01, x02 = x[p], x[p + u1], x[p + u2]
                x10, x11, x12 = x[p + r1], x[p + r1 + u1], x[p + r1 + u2]
                x20, x21, x22 = x[p + r2], x[p + r2 + u1], x[p + r2 + u2]
                a00 += dya * x00; a01 += dya * x01; a02 += dya * x02       # noqa: E702
                a10 += dya * x10; a11 += dya * x11; a12 += dya * x12       # noqa: E702
                a20 += dya * x20; a21 += dya * x21; a22 += dya * x22       # noqa: E702
                b00 += dyb * x00; b01 += dyb * x01; b02 += dyb * x02       # noqa: E702
                b10 += dyb * x10; b11 += dyb * x11; b12 += dyb * x12       # noqa: E702
                b20 += dyb * x20; b21 += dyb * x21; b22 += dyb * x22       # noqa: E702
            sa, sb = dw_k[k, o0, c], dw_k[k, o1, c]
            sa[0], sa[1], sa[2], sa[3], sa[4], sa[5], sa[6], sa[7], sa[8] = (
                a00, a01, a02, a10, a11, a12, a20, a21, a22)
            sb[0], sb[1], sb[2], sb[3], sb[4], sb[5], sb[6], sb[7], sb[8] = (
                b00, b01, b02, b10, b11, b12, b20, b21, b22)
    return dw_k, db_k


def chunks(g):
    """How many chunks conv3x3_line splits the stretches of geometry g into."""
    return g.nseg * -(-g.seg // CHUNK)


def steps(g):
    """The line kernels' geometry arguments for Lines g: (row, col, nseg, seg, stride, chunk)."""
    return g.row, g.col, g.nseg, g.seg, g.stride, CHUNK


def conv3x3_shared_forward_cpu(xs, ws, bs):
    """[y_k = conv3x3(x, w_k) + b_k for each k], x = concatenate(xs, axis=1), stride 1, padding 1.

    xs: parts (B, C_i, H, W) of one input; ws: weights (Cout_k, sum C_i, 3, 3); bs: (Cout_k,).
    The convs share one input line (built from the parts, no concatenation) and
    run as one conv with their weights stacked; each y_k is (B, Cout_k, H, W).
    The U-Net's up blocks read their input this way in their first conv and their skip conv.
    """
    B, _, H, W = xs[0].shape
    dtype = xs[0].dtype
    bs = conv_biases(ws, bs, dtype)
    grid, g, o = conv3x3_grid(xs, ws)                                          # (Cout+, P)
    return [from_lines(grid[o[k]:o[k + 1]], g, b, np.empty((B, o[k + 1] - o[k], H, W), dtype))
            for k, b in enumerate(bs)]                                         # [(B, Cout_k, H, W)]


def conv_biases(ws, bs, dtype):
    """The biases of the convs with weights ws as contiguous arrays, zeros for None."""
    return [np.zeros(w.shape[0], dtype) if b is None else np.ascontiguousarray(b) for w, b in zip(ws, bs)]


def conv3x3_grid(xs, ws, g=None):
    """(grid, g, o): the convs of conv3x3_shared_forward_cpu on their output grid, no bias:
    grid (grid_rows(sum Cout_k), g.P) on Lines g (by default lines() of these convs),
    conv k in rows o[k]:o[k + 1]. The grid is a scratch array, overwritten by the next conv."""
    xs, ws = [np.ascontiguousarray(x) for x in xs], [np.ascontiguousarray(w) for w in ws]
    B, _, H, W = xs[0].shape
    dtype = xs[0].dtype
    Cin, o = sum(x.shape[1] for x in xs), offsets(w.shape[0] for w in ws)
    g = lines(B, H, W, min(Cin, o[-1])) if g is None else g
    xl = parts_to_lines(xs, g, scratch("xl", (Cin, g.L), dtype))                # (Cin, L)
    w = ws[0] if len(ws) == 1 else np.concatenate(ws)                          # (sum Cout_k, Cin, 3, 3)
    grid = conv3x3_line(xl, w, np.zeros(o[-1], dtype), *steps(g), scratch("grid", (grid_rows(o[-1]), g.P), dtype),
                        0)                                                     # (Cout+, P)
    return grid, g, o


def conv3x3_shared_backward_cpu(dys, xs, ws, need_bias=True):
    """(dxs, dws, dbs) of conv3x3_shared_forward_cpu: dxs split like xs (the input
    gradient summed over the convs), dws and dbs one per conv (dbs None unless need_bias)."""
    xs, dys = [np.ascontiguousarray(x) for x in xs], [np.ascontiguousarray(dy) for dy in dys]
    B, _, H, W = xs[0].shape
    dtype = xs[0].dtype
    c, o = offsets(x.shape[1] for x in xs), offsets(w.shape[0] for w in ws)
    g = lines(B, H, W, min(c[-1], o[-1]))
    xl = parts_to_lines(xs, g, scratch("xl", (c[-1], g.L), dtype))              # (Cin, L)
    dyl = parts_to_lines(dys, g, scratch("dyl", (o[-1], g.L), dtype))           # (Cout, L)
    dw_k, db_k = conv3x3_line_weight_grad(xl, dyl, *steps(g), scratch("dw_k", (chunks(g), o[-1], c[-1], 9), dtype),
                                          scratch("db_k", (chunks(g), o[-1]), dtype))
    dw = dw_k.sum(axis=0).reshape(o[-1], c[-1], 3, 3)                          # (Cout, Cin, 3, 3)
    w = ws[0] if len(ws) == 1 else np.concatenate(ws)
    grid = conv3x3_line(dyl, flip_taps(w), np.zeros(c[-1], dtype), *steps(g),
                        scratch("xl", (grid_rows(c[-1]), g.P), dtype), 0)     # xl is done with
    zeros = np.zeros(c[-1], dtype)
    dxs = [from_lines(grid[c[k]:c[k + 1]], g, zeros, np.empty_like(x)) for k, x in enumerate(xs)]
    dws = [dw[o[k]:o[k + 1]] for k in range(len(ws))]
    db = db_k.sum(axis=0) if need_bias else None                                # (Cout,)
    dbs = [None if db is None else db[o[k]:o[k + 1]] for k in range(len(ws))]
    return dxs, dws, dbs


def conv3x3_forward_cpu(x, w, bias):
    """y = conv3x3(x, w) + bias, stride 1, padding 1:  x (B, Cin, H, W) -> y (B, Cout, H, W)."""
    return conv3x3_shared_forward_cpu([x], [w], [bias])[0]


def conv3x3_backward_cpu(dy, x, w, need_bias=True):
    """(dx, dw, db) of conv3x3_forward_cpu; db is None unless need_bias."""
    dxs, dws, dbs = conv3x3_shared_backward_cpu([dy], [x], [w], need_bias)
    return dxs[0], dws[0], dbs[0]
