"""2-D convolution on a GPU with Numba CUDA kernels: im2col, tiled GEMM, col2im.

Same maths and layout as conv/reference.py:

    cols (Cin*kh*kw, B*Ho*Wo):  row (c, i, j), column (b, oh, ow)
    y_T  = w.reshape(Cout, K) @ cols      (Cout, B*Ho*Wo), then -> (B, Cout, Ho, Wo) + b
    dw   = dY @ cols^T,   dx = col2im(w^T @ dY),   db = row sums of dY

Arrays are CuPy arrays on a real GPU (passed to the kernels zero-copy through
`__cuda_array_interface__`, and big GEMMs go to `cupy.matmul`, i.e. cuBLAS),
or NumPy arrays under Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1), where
every GEMM runs through `gemm_kernel` so the tests exercise it.
Every kernel guards its threads with a bounds check.
"""
from functools import lru_cache

import numpy as np
from numba import config, cuda, float32, float64

from ..xp import get_xp

from ..runtime.cuda_launch import TPB, as_kernel_arg, blocks_for
from .reference import check_shapes, conv_geometry

GEMM_TILE = 8 if config.ENABLE_CUDASIM else 16
CUBLAS_MIN_DIM = 64                     # CuPy: GEMMs with all dims >= this go to cuBLAS



# Thread mapping: one thread per cols element, n = row * N + col with
# row = (c, i, j) and col = (b, oh, ow); reads one input pixel (or 0 for padding).
@cuda.jit(cache=True)
def im2col_kernel(x, kh, kw, sh, sw, ph, pw, Ho, Wo, cols):
    n = cuda.grid(1)
    K, N = cols.shape
    if n >= K * N:
        return
    row, col = n // N, n % N
    c, ij = row // (kh * kw), row % (kh * kw)
    i, j = ij // kw, ij % kw
    b, l = col // (Ho * Wo), col % (Ho * Wo)
    h = (l // Wo) * sh + i - ph
    w = (l % Wo) * sw + j - pw
    if 0 <= h < x.shape[2] and 0 <= w < x.shape[3]:
        cols[row, col] = x[b, c, h, w]
    else:
        cols[row, col] = 0


# Thread mapping: one thread per input pixel n = (b, c, h, w); it gathers the
# (at most kh*kw) column entries that im2col copied from this pixel, so no two
# threads write the same element and no atomics are needed.
@cuda.jit(cache=True)
def col2im_kernel(cols, kh, kw, sh, sw, ph, pw, Ho, Wo, dx):
    n = cuda.grid(1)
    B, C, H, W = dx.shape
    if n >= B * C * H * W:
        return
    b, c = n // (C * H * W), (n // (H * W)) % C
    h, w = (n // W) % H, n % W
    acc = cols[0, 0] * 0
    for i in range(kh):
        hh = h + ph - i                       # = oh * sh when (oh, i) read row h
        if hh < 0 or hh % sh != 0 or hh // sh >= Ho:
            continue
        for j in range(kw):
            ww = w + pw - j
            if ww < 0 or ww % sw != 0 or ww // sw >= Wo:
                continue
            acc += cols[(c * kh + i) * kw + j, (b * Ho + hh // sh) * Wo + ww // sw]
    dx[b, c, h, w] = acc


# Thread mapping: one thread per output element n = (b, o, l) of y (B, Cout, L).
@cuda.jit(cache=True)
def batch_major_plus_bias_kernel(y_T, bias, y):
    n = cuda.grid(1)
    B, Cout, L = y.shape
    if n >= B * Cout * L:
        return
    b, o, l = n // (Cout * L), (n // L) % Cout, n % L
    y[b, o, l] = y_T[o, b * L + l] + bias[o]


# Thread mapping: one thread per element n = (b, o, l) of dy (B, Cout, L).
@cuda.jit(cache=True)
def channel_major_kernel(dy, dY):
    n = cuda.grid(1)
    B, Cout, L = dy.shape
    if n >= B * Cout * L:
        return
    b, o, l = n // (Cout * L), (n // L) % Cout, n % L
    dY[o, b * L + l] = dy[b, o, l]


@lru_cache(maxsize=None)
def gemm_kernel(dtype, tile):
    """The tiled GEMM kernel C = A @ B for one dtype and tile size (compile-time constants)."""
    nbtype = {np.dtype(np.float32): float32, np.dtype(np.float64): float64}[np.dtype(dtype)]

    # Thread mapping: 2-D grid, thread (col, row) = cuda.grid(2) owns C[row, col];
    # x runs along columns so a warp reads/writes contiguous memory. A block of
    # tile x tile threads walks the inner axis one tile at a time: each thread
    # loads one element of A and one of B into shared memory, the block syncs,
    # and every thread does `tile` multiply-adds from the shared tiles.
    @cuda.jit(cache=True)
    def gemm(A, B, C):
        sA = cuda.shared.array(shape=(tile, tile), dtype=nbtype)
        sB = cuda.shared.array(shape=(tile, tile), dtype=nbtype)
        col, row = cuda.grid(2)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        M, K = A.shape
        N = B.shape[1]
        acc = nbtype(0)
        for k0 in range(0, K, tile):
            # every thread reaches both syncthreads: loads are guarded, not skipped
            sA[ty, tx] = A[row, k0 + tx] if row < M and k0 + tx < K else 0
            sB[ty, tx] = B[k0 + ty, col] if k0 + ty < K and col < N else 0
            cuda.syncthreads()
            for k in range(tile):
                acc += sA[ty, k] * sB[k, tx]
            cuda.syncthreads()
        if row < M and col < N:
            C[row, col] = acc

    return gemm


@lru_cache(maxsize=None)
def row_sum_kernel(dtype, tpb):
    """The kernel s[r] = sum_n X[r, n] for one dtype: one block per row, tree reduction."""
    nbtype = {np.dtype(np.float32): float32, np.dtype(np.float64): float64}[np.dtype(dtype)]

    # Thread mapping: block r sums row r; thread t adds X[r, t], X[r, t + tpb], ...
    # into shared memory, then the block halves the partial sums log2(tpb) times.
    @cuda.jit(cache=True)
    def row_sum(X, s):
        part = cuda.shared.array(shape=(tpb,), dtype=nbtype)
        r, t = cuda.blockIdx.x, cuda.threadIdx.x
        acc = nbtype(0)
        if r < X.shape[0]:
            for n in range(t, X.shape[1], tpb):
                acc += X[r, n]
        part[t] = acc
        cuda.syncthreads()
        half = tpb // 2
        while half > 0:
            if t < half:
                part[t] += part[t + half]
            cuda.syncthreads()
            half //= 2
        if t == 0 and r < X.shape[0]:
            s[r] = part[0]

    return row_sum


# --- launch helpers ----------------------------------------------------------
def matmul_cuda(A, B, tile=None):
    """C = A @ B (M, K) @ (K, N) with the tiled kernel; cuBLAS for big CuPy GEMMs."""
    xp = get_xp(A)
    M, K = A.shape
    N = B.shape[1]
    if xp is not np and min(M, K, N) >= CUBLAS_MIN_DIM:
        return xp.matmul(A, B)
    tile = tile or GEMM_TILE
    C = xp.empty((M, N), dtype=A.dtype)                                 # (M, N)
    grid = (blocks_for(N, tile), blocks_for(M, tile))
    gemm_kernel(A.dtype, tile)[grid, (tile, tile)](as_kernel_arg(A), as_kernel_arg(B), as_kernel_arg(C))
    return C


def row_sum_cuda(X, tpb=32):
    """s (R,) = X (R, N).sum(axis=1) with one block per row."""
    s = get_xp(X).empty(X.shape[0], dtype=X.dtype)                      # (R,)
    row_sum_kernel(X.dtype, tpb)[X.shape[0], tpb](as_kernel_arg(X), as_kernel_arg(s))
    return s


def im2col_cuda(x, kh, kw, stride, padding):
    """x (B, C, H, W) -> cols (C*kh*kw, B*Ho*Wo), as reference.im2col."""
    B, C = x.shape[:2]
    sh, sw, ph, pw, Ho, Wo = conv_geometry(x.shape, kh, kw, stride, padding)
    cols = get_xp(x).empty((C * kh * kw, B * Ho * Wo), dtype=x.dtype)  # (K, N)
    im2col_kernel[blocks_for(cols.size), TPB](as_kernel_arg(x), kh, kw, sh, sw, ph, pw, Ho, Wo,
                                              as_kernel_arg(cols))
    return cols


def col2im_cuda(cols, x_shape, kh, kw, stride, padding):
    """The adjoint of im2col: cols (C*kh*kw, B*Ho*Wo) -> dx (B, C, H, W)."""
    sh, sw, ph, pw, Ho, Wo = conv_geometry(x_shape, kh, kw, stride, padding)
    dx = get_xp(cols).empty(tuple(x_shape), dtype=cols.dtype)          # (B, C, H, W)
    col2im_kernel[blocks_for(dx.size), TPB](as_kernel_arg(cols), kh, kw, sh, sw, ph, pw, Ho, Wo,
                                            as_kernel_arg(dx))
    return dx


def _same_float_dtype(*arrays):
    dt = arrays[0].dtype
    if dt not in (np.float32, np.float64) or any(a.dtype != dt for a in arrays):
        raise TypeError(f"conv2d (CUDA): expected float32 or float64 arrays of one dtype, "
                        f"got {[str(a.dtype) for a in arrays]}")
    xp = get_xp(arrays[0])
    return [xp.ascontiguousarray(a) for a in arrays]


def conv2d_forward_cuda(x, w, b, stride, padding):
    """y = w.reshape(Cout, K) @ im2col(x) + b:  x (B, Cin, H, W) -> y (B, Cout, Ho, Wo)."""
    check_shapes(x, w)
    x, w = _same_float_dtype(x, w)
    xp = get_xp(x)
    B = x.shape[0]
    Cout, _, kh, kw = w.shape
    sh, sw, ph, pw, Ho, Wo = conv_geometry(x.shape, kh, kw, stride, padding)
    cols = im2col_cuda(x, kh, kw, (sh, sw), (ph, pw))                  # (K, N)
    y_T = matmul_cuda(w.reshape(Cout, -1), cols)                       # (Cout, N)
    bias = xp.zeros(Cout, x.dtype) if b is None else xp.ascontiguousarray(b, dtype=x.dtype)
    y = xp.empty((B, Cout, Ho * Wo), dtype=x.dtype)                    # (B, Cout, L)
    batch_major_plus_bias_kernel[blocks_for(y.size), TPB](as_kernel_arg(y_T), as_kernel_arg(bias),
                                                          as_kernel_arg(y))
    return y.reshape(B, Cout, Ho, Wo)


def conv2d_backward_cuda(dy, x, w, stride, padding, need_bias=True):
    """(dx, dw, db): dw = dY cols^T, dx = col2im(w^T dY), db = row sums of dY."""
    check_shapes(x, w)
    dy, x, w = _same_float_dtype(dy, x, w)
    xp = get_xp(x)
    B = x.shape[0]
    Cout, _, kh, kw = w.shape
    sh, sw, ph, pw, Ho, Wo = conv_geometry(x.shape, kh, kw, stride, padding)
    if tuple(dy.shape) != (B, Cout, Ho, Wo):
        raise ValueError(f"conv2d backward: dy has shape {dy.shape}, expected {(B, Cout, Ho, Wo)}")
    dY = xp.empty((Cout, B * Ho * Wo), dtype=dy.dtype)                 # (Cout, N)
    channel_major_kernel[blocks_for(dY.size), TPB](as_kernel_arg(dy.reshape(B, Cout, -1)),
                                                   as_kernel_arg(dY))
    cols = im2col_cuda(x, kh, kw, (sh, sw), (ph, pw))                  # (K, N)
    dw = matmul_cuda(dY, cols.T).reshape(w.shape)                      # (Cout, Cin, kh, kw)
    dcols = matmul_cuda(w.reshape(Cout, -1).T, dY)                     # (K, N)
    dx = col2im_cuda(dcols, x.shape, kh, kw, (sh, sw), (ph, pw))       # (B, Cin, H, W)
    db = row_sum_cuda(dY) if need_bias else None                       # (Cout,)
    return dx, dw, db
