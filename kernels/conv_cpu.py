"""2-D convolution on the CPU: parallel Numba data movement around BLAS GEMMs.

Same maths as conv_reference.py (read that first). Two layouts:

* stride 1 (every 3x3 and 5x5 conv of the U-Net and LeNet): the padded-grid
  form of grid_cpu.py. With grid_x (Cin, B*Hp*Wp + tail) the padded images
  laid end to end, every im2col row is one contiguous shifted slice of it:

      cols[(c, i, j), m] = grid_x[c, m + i*Wp + j]     (K, M), M = B*Hp*Wp
      y   = crop(w2 @ cols)                            w2 = w.reshape(Cout, K)
      dw  = dY @ cols^T                                dY = dy on the grid, 0 elsewhere
      dx  = crop(w_T @ dcols),  dcols[(o, i, j), m] = grid_dy[o, m + tail - i*Wp - j]

  so im2col is a memcpy and col2im becomes a second shifted-rows GEMM (the
  transposed convolution is a correlation with the flipped kernel).
* other strides (the 4x4 stride-2 downsampling): the classic layout

      cols (Cin*kh*kw, B*Ho*Wo):  row (c, i, j), column (b, oh, ow)
      y_T = w2 @ cols,  dw = dY cols^T,  dcols = w2^T dY,  dx = col2im(dcols)

  with im2col and col2im as parallel Numba kernels.

A 1x1 stride-1 unpadded convolution skips both: y[b] = w @ x[b]. The GEMMs
stay with NumPy's multithreaded BLAS. The large work arrays (cols, grids,
GEMM outputs) are reused across calls (`scratch`); returned arrays are always
fresh.

Threading: numba_threads.py picks Numba's `workqueue` layer (OpenMP's spinning
workers and OpenBLAS's fight over the cores).
"""
import numpy as np
from numba import njit, prange

from . import numba_threads  # noqa: F401  (selects the threading layer first)
from .conv_reference import _check_shapes, _geometry
from .flat_cpu import fill as _fill, gather as _gather, scatter_add as _scatter_add
from .grid_cpu import from_grid_cpu, shifted_rows_cpu, to_grid_cpu


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


_scratch_buffers = {}     # name -> flat array, grown on demand, reused across calls


def scratch(name, shape, dtype):
    """A reused (not zeroed) work array: im2col's `cols` is up to tens of MB, and a
    fresh allocation of that size costs page faults on every call (measured: the
    backward GEMM into a new 14 MB array took 6 ms instead of 0.6 ms). Not
    thread-safe, like the workqueue threading layer itself."""
    n = int(np.prod(shape))
    buf = _scratch_buffers.get(name)
    if buf is None or buf.dtype != dtype or buf.size < n:
        buf = _scratch_buffers[name] = np.empty(n, dtype=dtype)
    return buf[:n].reshape(shape)


def release_scratch():
    """Free the work arrays (they hold the largest im2col matrix seen so far)."""
    _scratch_buffers.clear()


def _float_arrays(*arrays):
    """C-contiguous float arrays of one dtype, or TypeError."""
    dt = arrays[0].dtype
    if dt not in (np.float32, np.float64) or any(a.dtype != dt for a in arrays):
        raise TypeError(f"conv2d (Numba CPU): expected float32 or float64 arrays of one dtype, "
                        f"got {[str(a.dtype) for a in arrays]}")
    return [np.ascontiguousarray(a) for a in arrays]


def im2col(x, kh, kw, stride, padding):
    """x (B, C, H, W) -> cols (C*kh*kw, B*Ho*Wo), as conv_reference.im2col."""
    (x,) = _float_arrays(x)
    B, C = x.shape[:2]
    sh, sw, ph, pw, Ho, Wo = _geometry(x.shape, kh, kw, stride, padding)
    cols = np.empty((C * kh * kw, B * Ho * Wo), dtype=x.dtype)       # (K, N)
    return im2col_cpu(x, kh, kw, sh, sw, ph, pw, Ho, Wo, cols)


def col2im(cols, x_shape, kh, kw, stride, padding):
    """The adjoint of im2col: cols (C*kh*kw, B*Ho*Wo) -> dx (B, C, H, W)."""
    (cols,) = _float_arrays(cols)
    sh, sw, ph, pw, Ho, Wo = _geometry(x_shape, kh, kw, stride, padding)
    dx = np.empty(x_shape, dtype=cols.dtype)                           # (B, C, H, W)
    return col2im_cpu(cols, kh, kw, sh, sw, ph, pw, Ho, Wo, dx)


def _is_pointwise(kh, kw, sh, sw, ph, pw):
    """A 1x1, stride-1, unpadded conv is y[b] = w @ x[b]: batched GEMMs on x as it is."""
    return kh == kw == sh == sw == 1 and ph == pw == 0


def conv2d_forward_cpu(x, w, b, stride, padding):
    """y = w.reshape(Cout, K) @ im2col(x) + b:  x (B, Cin, H, W) -> y (B, Cout, Ho, Wo)."""
    _check_shapes(x, w)
    x, w = _float_arrays(x, w)
    B, Cin = x.shape[:2]
    Cout, _, kh, kw = w.shape
    sh, sw, ph, pw, Ho, Wo = _geometry(x.shape, kh, kw, stride, padding)
    bias = np.zeros(Cout, x.dtype) if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    w2 = w.reshape(Cout, -1)                                           # (Cout, K)
    if _is_pointwise(kh, kw, sh, sw, ph, pw):                          # no im2col needed
        y = w2 @ x.reshape(B, Cin, Ho * Wo)                            # (B, Cout, L)
        return (y + bias[:, None]).reshape(B, Cout, Ho, Wo)
    if sh == sw == 1:
        return _forward_on_grid(x, w2, bias, kh, kw, ph, pw, Ho, Wo)
    K, N = w2.shape[1], B * Ho * Wo
    cols = im2col_cpu(x, kh, kw, sh, sw, ph, pw, Ho, Wo, scratch("cols", (K, N), x.dtype))
    y_T = np.matmul(w2, cols, out=scratch("y_T", (Cout, N), x.dtype))  # (Cout, N)
    y = np.empty((B, Cout, Ho * Wo), dtype=x.dtype)                    # (B, Cout, L)
    batch_major_plus_bias(y_T, bias, y)
    return y.reshape(B, Cout, Ho, Wo)


def conv2d_backward_cpu(dy, x, w, stride, padding, need_bias=True):
    """(dx, dw, db): dw = dY cols^T, dx = col2im(w^T dY), db = sum of dy over (B, Ho, Wo)."""
    _check_shapes(x, w)
    dy, x, w = _float_arrays(dy, x, w)
    B, Cin = x.shape[:2]
    Cout, _, kh, kw = w.shape
    sh, sw, ph, pw, Ho, Wo = _geometry(x.shape, kh, kw, stride, padding)
    if dy.shape != (B, Cout, Ho, Wo):
        raise ValueError(f"conv2d backward: dy has shape {dy.shape}, expected {(B, Cout, Ho, Wo)}")
    w2 = w.reshape(Cout, -1)                                           # (Cout, K)
    dy3 = dy.reshape(B, Cout, Ho * Wo)                                 # (B, Cout, L)
    if _is_pointwise(kh, kw, sh, sw, ph, pw):                          # batched GEMMs, no im2col
        dx = (w2.T @ dy3).reshape(x.shape)                             # (B, Cin, H, W)
        dw = (dy3 @ x.reshape(B, Cin, -1).transpose(0, 2, 1)).sum(axis=0)  # (Cout, Cin)
        return dx, dw.reshape(w.shape), (dy3.sum(axis=(0, 2)) if need_bias else None)
    if sh == sw == 1:
        dx, dw = _backward_on_grid(dy, x, w, kh, kw, ph, pw)
        return dx, dw, (dy3.sum(axis=(0, 2)) if need_bias else None)
    K, N = w2.shape[1], B * Ho * Wo
    dY = channel_major(dy3, scratch("dY", (Cout, N), x.dtype))        # (Cout, N)
    db = dy3.sum(axis=(0, 2)) if need_bias else None                   # (Cout,)
    cols = im2col_cpu(x, kh, kw, sh, sw, ph, pw, Ho, Wo, scratch("cols", (K, N), x.dtype))
    dw = (dY @ cols.T).reshape(w.shape)                                # (Cout, Cin, kh, kw)
    dcols = np.matmul(w2.T, dY, out=cols)                              # (K, N), reuses cols
    dx = col2im_cpu(dcols, kh, kw, sh, sw, ph, pw, Ho, Wo, np.empty_like(x))  # (B, Cin, H, W)
    return dx, dw, db


# --- stride 1: the padded-grid form (grid_cpu.py) -------------------------------
def _grid(B, H, W, kh, kw, ph, pw):
    """(Hp, Wp, M, tail, offsets): M = B*Hp*Wp grid positions, offsets[(i, j)] = i*Wp + j."""
    Hp, Wp = H + 2 * ph, W + 2 * pw
    offsets = (np.arange(kh)[:, None] * Wp + np.arange(kw)[None, :]).ravel()   # (kh*kw,)
    return Hp, Wp, B * Hp * Wp, int(offsets[-1]), offsets


def _forward_on_grid(x, w2, bias, kh, kw, ph, pw, Ho, Wo):
    """y = crop(w2 @ cols): cols[(c, i, j), m] = grid_x[c, m + i*Wp + j], all M grid positions."""
    B, Cin, H, W = x.shape
    Cout, K = w2.shape
    Hp, Wp, M, tail, offsets = _grid(B, H, W, kh, kw, ph, pw)
    grid_x = to_grid_cpu(x, ph, pw, Hp, Wp, 0, scratch("grid_x", (Cin, M + tail), x.dtype))
    cols = shifted_rows_cpu(grid_x, offsets, M, scratch("cols", (K, M), x.dtype))    # (K, M)
    y_grid = np.matmul(w2, cols, out=scratch("y_T", (Cout, M), x.dtype))             # (Cout, M)
    y = np.empty((B, Cout, Ho, Wo), dtype=x.dtype)
    return from_grid_cpu(y_grid, 0, 0, Hp, Wp, bias, y)                               # (B, Cout, Ho, Wo)


def _backward_on_grid(dy, x, w, kh, kw, ph, pw):
    """(dx, dw) on the grid, with dY = dy on the grid (zero at the garbage positions):

        dw = dY @ cols^T                                   (Cout, Cin*kh*kw)
        dx_grid[c, m] = sum_{o,i,j} w[o, c, i, j] dY[o, m - i*Wp - j]
                      = w_T @ dcols,  dcols[(o, i, j), m] = grid_dy[o, m + tail - i*Wp - j]

    i.e. the input gradient is another shifted-rows GEMM (a correlation with the
    flipped kernel) instead of a col2im scatter; grid_dy carries `tail` zeros in
    front so every shift stays inside it.
    """
    B, Cin, H, W = x.shape
    Cout = w.shape[0]
    Ho, Wo = dy.shape[2], dy.shape[3]
    Hp, Wp, M, tail, offsets = _grid(B, H, W, kh, kw, ph, pw)
    grid_x = to_grid_cpu(x, ph, pw, Hp, Wp, 0, scratch("grid_x", (Cin, M + tail), x.dtype))
    grid_dy = to_grid_cpu(dy, 0, 0, Hp, Wp, tail, scratch("grid_dy", (Cout, tail + M), x.dtype))
    dY = grid_dy[:, tail:]                                                            # (Cout, M) view
    cols = shifted_rows_cpu(grid_x, offsets, M, scratch("cols", (Cin * kh * kw, M), x.dtype))
    dw = (dY @ cols.T).reshape(w.shape)                                               # (Cout, Cin, kh, kw)
    dcols = shifted_rows_cpu(grid_dy, tail - offsets, M, scratch("cols", (Cout * kh * kw, M), x.dtype))
    w_T = w.transpose(1, 0, 2, 3).reshape(Cin, Cout * kh * kw)                        # (Cin, Cout*kh*kw)
    dx_grid = np.matmul(w_T, dcols, out=scratch("y_T", (Cin, M), x.dtype))           # (Cin, M)
    dx = np.empty(x.shape, dtype=x.dtype)
    return from_grid_cpu(dx_grid, ph, pw, Hp, Wp, np.zeros(Cin, x.dtype), dx), dw
