"""2-D convolution on the CPU (Numba): im2col around a GEMM, for any kernel size, stride and padding.

ops.py sends the U-Net's two common shapes to faster direct kernels instead:
3x3 stride-1 padding-1 convolutions (nearly all of the U-Net's) to cpu_3x3.py,
which never builds the im2col matrix (measured in a U-Net train step, batch 32,
2 cores: 1.3-3x faster than this file, forward and backward, from 7x7 to
28x28), and the 4x4 stride-2 padding-1 downsampling to cpu_4x4s2.py (a 2x2
stride-1 conv over the four phases of the input; 1.8-3x faster). Every other
shape (LeNet's 5x5, 1x1 skips, any kernel size, stride and padding) runs
here, with the same maths and memory layout as reference.py (read that first):

    cols (Cin*kh*kw, B*Ho*Wo):  row (c, i, j), column (b, oh, ow)
    y_T  = w.reshape(Cout, K) @ cols                 (Cout, B*Ho*Wo)
    dw   = dY @ cols^T,   dcols = w^T @ dY,   dx = col2im(dcols)

The Numba kernels do the memory-bound parts in one pass each (im2col and
col2im in parallel; the (Cout, B, L) <-> (B, Cout, L) transposes, with the
bias fused in, serially); the GEMMs are NumPy's BLAS.
The batch is processed in blocks of samples whose cols block fits
BLOCK_BYTES (cache-sized work arrays instead of one batch-sized matrix).
A 1x1 stride-1 unpadded convolution has im2col(x) = x itself, so it skips
the copy: y[b] = w @ x[b]. The large work arrays (cols, y_T, dY) are reused
across calls (runtime/scratch.py); returned arrays are always fresh.

Threading: runtime/numba_threads.py picks Numba's OpenMP layer, and ops.py keeps
NumPy's BLAS on one thread while these kernels run (two spinning thread pools
fight over the cores; runtime/blas_threads.py). Call them through
minidiff.kernels, or switch blas_threads.kernels_mode(True) on first, as
kernels/bench.py does.
"""
import numpy as np
from numba import njit, prange

from ..runtime import numba_threads  # noqa: F401  (selects the threading layer first)
from ..runtime.scratch import scratch
from .reference import check_shapes, conv_geometry


@njit(inline="always")
def _valid_range(n_out, n_in, offset, stride):
    """[lo, hi) of output positions o with 0 <= o*stride + offset < n_in."""
    lo = 0
    if offset < 0:
        lo = (-offset + stride - 1) // stride
    hi = 0
    if n_in - offset > 0:
        hi = (n_in - offset + stride - 1) // stride
    hi = min(hi, n_out)
    return lo, max(lo, hi)


# The row helpers index flat arrays with unsigned integers: with signed ones
# Numba adds a negative-index wraparound test to every access, which stops
# LLVM from vectorising the loop (measured: im2col 3x slower).
@njit(inline="always")
def _fill(dst, d0, n, value):
    """dst[d0 : d0 + n] = value."""
    d0 = np.uint64(d0)
    for k in range(np.uint64(n)):
        dst[d0 + k] = value


@njit(inline="always")
def _gather(dst, d0, src, s0, n, step):
    """dst[d0 + k] = src[s0 + k*step] for k < n."""
    d0, s0, step = np.uint64(d0), np.uint64(s0), np.uint64(step)
    for k in range(np.uint64(n)):
        dst[d0 + k] = src[s0 + k * step]


@njit(inline="always")
def _scatter_add(dst, d0, step, src, s0, n):
    """dst[d0 + k*step] += src[s0 + k] for k < n."""
    d0, s0, step = np.uint64(d0), np.uint64(s0), np.uint64(step)
    for k in range(np.uint64(n)):
        dst[d0 + k * step] += src[s0 + k]


# Loop mapping: prange over (c, b) pairs; iteration (c, b) writes the kh*kw
# rows (c, i, j) of cols restricted to sample b's L = Ho*Wo columns -- disjoint
# slices, so no two iterations touch the same element. Per output row oh the
# Wo entries are: zeros left of the image, a strided copy of one input row,
# zeros right of it. Arrays are flat C-order views: x[b, c, h, w] is
# x_f[((b*C + c)*H + h)*W + w], cols[row, n] is cols_f[row*N + n].
@njit(parallel=True, cache=True)
def im2col_cpu(x, kh, kw, sh, sw, ph, pw, Ho, Wo, cols):
    """cols[(c, i, j), (b, oh, ow)] = x[b, c, sh*oh + i - ph, sw*ow + j - pw] (0 off the edge)."""
    B, C, H, W = x.shape
    L, N = Ho * Wo, cols.shape[1]
    x_f, cols_f = x.ravel(), cols.ravel()
    for cb in prange(C * B):
        c, b = cb // B, cb % B
        for i in range(kh):
            for j in range(kw):
                row = (c * kh + i) * kw + j
                lo, hi = _valid_range(Wo, W, j - pw, sw)
                for oh in range(Ho):
                    h = oh * sh + i - ph
                    o = row * N + b * L + oh * Wo                      # cols[row, (b, oh, 0)]
                    if h < 0 or h >= H:
                        _fill(cols_f, o, Wo, 0)
                        continue
                    _fill(cols_f, o, lo, 0)
                    src = ((b * C + c) * H + h) * W + lo * sw + j - pw  # x[b, c, h, lo*sw + j - pw]
                    _gather(cols_f, o + lo, x_f, src, hi - lo, sw)
                    _fill(cols_f, o + hi, Wo - hi, 0)
    return cols


# Loop mapping: prange over (c, b); iteration (c, b) owns the plane dx[b, c]
# and adds into it every cols entry im2col read from that plane, so the
# overlapping windows sum without races. Flat views as in im2col_cpu.
@njit(parallel=True, cache=True)
def col2im_cpu(cols, kh, kw, sh, sw, ph, pw, Ho, Wo, dx):
    """dx[b, c, h, w] = sum of cols[(c, i, j), (b, oh, ow)] over the windows that read (h, w)."""
    B, C, H, W = dx.shape
    L, N = Ho * Wo, cols.shape[1]
    dx_f, cols_f = dx.ravel(), cols.ravel()
    for cb in prange(C * B):
        c, b = cb // B, cb % B
        _fill(dx_f, (b * C + c) * H * W, H * W, 0)
        for i in range(kh):
            for j in range(kw):
                row = (c * kh + i) * kw + j
                lo, hi = _valid_range(Wo, W, j - pw, sw)
                for oh in range(Ho):
                    h = oh * sh + i - ph
                    if h < 0 or h >= H:
                        continue
                    dst = ((b * C + c) * H + h) * W + lo * sw + j - pw  # dx[b, c, h, lo*sw + j - pw]
                    _scatter_add(dx_f, dst, sw, cols_f, row * N + b * L + oh * Wo + lo, hi - lo)
    return dx


# Loop mapping: serial over (b, o) -- a parallel launch costs more than this
# copy (measured 0.02-0.04 ms serial vs 0.05-0.12 ms with prange). Each (b, o)
# copies one contiguous run of L values y_T[o, b*L : (b+1)*L] -> y[b, o, :].
@njit(cache=True)
def batch_major_plus_bias(y_T, bias, y):
    """y[b, o, l] = y_T[o, b*L + l] + bias[o]:  (Cout, B*L) -> (B, Cout, L)."""
    B, Cout, L = y.shape
    y_f, yT_f = y.ravel(), y_T.ravel()
    for bo in range(B * Cout):
        b, o = bo // Cout, bo % Cout
        _gather(y_f, bo * L, yT_f, o * B * L + b * L, L, 1)
        d0 = np.uint64(bo * L)
        for k in range(np.uint64(L)):
            y_f[d0 + k] += bias[o]
    return y


# Loop mapping: serial over (o, b), one contiguous run of L values each:
# dy[b, o, :] -> dY[o, b*L : (b+1)*L]. (Serial for the same reason as above.)
@njit(cache=True)
def channel_major(dy, dY):
    """dY[o, b*L + l] = dy[b, o, l]:  (B, Cout, L) -> (Cout, B*L)."""
    B, Cout, L = dy.shape
    dy_f, dY_f = dy.ravel(), dY.ravel()
    for o in range(Cout):
        for b in range(B):
            _gather(dY_f, (o * B + b) * L, dy_f, (b * Cout + o) * L, L, 1)
    return dY


def _float_arrays(*arrays):
    """C-contiguous float arrays of one dtype, or TypeError."""
    dt = arrays[0].dtype
    if dt not in (np.float32, np.float64) or any(a.dtype != dt for a in arrays):
        raise TypeError(f"conv2d (Numba CPU): expected float32 or float64 arrays of one dtype, "
                        f"got {[str(a.dtype) for a in arrays]}")
    return [np.ascontiguousarray(a) for a in arrays]


def im2col(x, kh, kw, stride, padding):
    """x (B, C, H, W) -> cols (C*kh*kw, B*Ho*Wo), as reference.im2col."""
    (x,) = _float_arrays(x)
    B, C = x.shape[:2]
    sh, sw, ph, pw, Ho, Wo = conv_geometry(x.shape, kh, kw, stride, padding)
    cols = np.empty((C * kh * kw, B * Ho * Wo), dtype=x.dtype)       # (K, N)
    return im2col_cpu(x, kh, kw, sh, sw, ph, pw, Ho, Wo, cols)


def col2im(cols, x_shape, kh, kw, stride, padding):
    """The adjoint of im2col: cols (C*kh*kw, B*Ho*Wo) -> dx (B, C, H, W)."""
    (cols,) = _float_arrays(cols)
    sh, sw, ph, pw, Ho, Wo = conv_geometry(x_shape, kh, kw, stride, padding)
    dx = np.empty(x_shape, dtype=cols.dtype)                           # (B, C, H, W)
    return col2im_cpu(cols, kh, kw, sh, sw, ph, pw, Ho, Wo, dx)


# The im2col matrix of a whole batch is large (48 channels, 3x3, batch 32 at
# 28x28: 43 MB), so it is built and consumed a block of samples at a time:
# each (K, nb*L) block stays within BLOCK_BYTES, the work arrays stay small
# (peak memory) and the GEMM reads the block while it is still in cache.
BLOCK_BYTES = 8 << 20


def _blocks(B, K, L, itemsize):
    """[(b0, b1), ...]: sample ranges whose (K, (b1 - b0)*L) im2col block fits BLOCK_BYTES."""
    nb = max(1, min(B, BLOCK_BYTES // (K * L * itemsize)))
    return [(b0, min(B, b0 + nb)) for b0 in range(0, B, nb)]


def _is_pointwise(kh, kw, sh, sw, ph, pw):
    """A 1x1, stride-1, unpadded conv is y[b] = w @ x[b]: batched GEMMs on x as it is."""
    return kh == kw == sh == sw == 1 and ph == pw == 0


def conv2d_forward_cpu(x, w, b, stride, padding):
    """y = w.reshape(Cout, K) @ im2col(x) + b:  x (B, Cin, H, W) -> y (B, Cout, Ho, Wo)."""
    check_shapes(x, w)
    x, w = _float_arrays(x, w)
    B, Cin = x.shape[:2]
    Cout, _, kh, kw = w.shape
    sh, sw, ph, pw, Ho, Wo = conv_geometry(x.shape, kh, kw, stride, padding)
    bias = np.zeros(Cout, x.dtype) if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    w2 = w.reshape(Cout, -1)                                           # (Cout, K)
    if _is_pointwise(kh, kw, sh, sw, ph, pw):                          # no im2col needed
        y = w2 @ x.reshape(B, Cin, Ho * Wo)                            # (B, Cout, L)
        return (y + bias[:, None]).reshape(B, Cout, Ho, Wo)
    K, L = w2.shape[1], Ho * Wo
    y = np.empty((B, Cout, L), dtype=x.dtype)                          # (B, Cout, L)
    for b0, b1 in _blocks(B, K, L, x.dtype.itemsize):                  # nb = b1 - b0 samples
        n = (b1 - b0) * L
        cols = im2col_cpu(x[b0:b1], kh, kw, sh, sw, ph, pw, Ho, Wo, scratch("cols", (K, n), x.dtype))
        y_T = np.matmul(w2, cols, out=scratch("y_T", (Cout, n), x.dtype))  # (Cout, nb*L)
        batch_major_plus_bias(y_T, bias, y[b0:b1])
    return y.reshape(B, Cout, Ho, Wo)


def conv2d_backward_cpu(dy, x, w, stride, padding, need_bias=True):
    """(dx, dw, db): dw = dY cols^T, dx = col2im(w^T dY), db = sum of dy over (B, Ho, Wo)."""
    check_shapes(x, w)
    dy, x, w = _float_arrays(dy, x, w)
    B, Cin = x.shape[:2]
    Cout, _, kh, kw = w.shape
    sh, sw, ph, pw, Ho, Wo = conv_geometry(x.shape, kh, kw, stride, padding)
    if dy.shape != (B, Cout, Ho, Wo):
        raise ValueError(f"conv2d backward: dy has shape {dy.shape}, expected {(B, Cout, Ho, Wo)}")
    w2 = w.reshape(Cout, -1)                                           # (Cout, K)
    dy3 = dy.reshape(B, Cout, Ho * Wo)                                 # (B, Cout, L)
    if _is_pointwise(kh, kw, sh, sw, ph, pw):                          # batched GEMMs, no im2col
        dx = (w2.T @ dy3).reshape(x.shape)                             # (B, Cin, H, W)
        dw = (dy3 @ x.reshape(B, Cin, -1).transpose(0, 2, 1)).sum(axis=0)  # (Cout, Cin)
        return dx, dw.reshape(w.shape), (dy3.sum(axis=(0, 2)) if need_bias else None)
    K, L = w2.shape[1], Ho * Wo
    db = dy3.sum(axis=(0, 2)) if need_bias else None                   # (Cout,)
    dw = np.zeros((Cout, K), dtype=x.dtype)                            # (Cout, K)
    dx = np.empty_like(x)                                              # (B, Cin, H, W)
    for b0, b1 in _blocks(B, K, L, x.dtype.itemsize):
        n = (b1 - b0) * L
        dY = channel_major(dy3[b0:b1], scratch("dY", (Cout, n), x.dtype))  # (Cout, nb*L)
        cols = im2col_cpu(x[b0:b1], kh, kw, sh, sw, ph, pw, Ho, Wo, scratch("cols", (K, n), x.dtype))
        dw += dY @ cols.T                                              # (Cout, K)
        dcols = np.matmul(w2.T, dY, out=cols)                          # (K, nb*L), reuses cols
        col2im_cpu(dcols, kh, kw, sh, sw, ph, pw, Ho, Wo, dx[b0:b1])
    return dx, dw.reshape(w.shape), db
