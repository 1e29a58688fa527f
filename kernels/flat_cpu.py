"""Inlined row helpers for the Numba CPU kernels: fill, gather, scatter-add on flat arrays."""
import numpy as np
from numba import njit


# The row helpers index flat arrays with unsigned integers: with signed ones
# Numba adds a negative-index wraparound test to every access, which stops
# LLVM from vectorising the loop (measured: im2col 3x slower).
@njit(inline="always")
def fill(dst, d0, n, value):
    """dst[d0 : d0 + n] = value."""
    d0 = np.uint64(d0)
    for k in range(np.uint64(n)):
        dst[d0 + k] = value


@njit(inline="always")
def gather(dst, d0, src, s0, n, step):
    """dst[d0 + k] = src[s0 + k*step] for k < n."""
    d0, s0, step = np.uint64(d0), np.uint64(s0), np.uint64(step)
    for k in range(np.uint64(n)):
        dst[d0 + k] = src[s0 + k * step]


@njit(inline="always")
def scatter_add(dst, d0, step, src, s0, n):
    """dst[d0 + k*step] += src[s0 + k] for k < n."""
    d0, s0, step = np.uint64(d0), np.uint64(s0), np.uint64(step)
    for k in range(np.uint64(n)):
        dst[d0 + k * step] += src[s0 + k]


@njit(inline="always")
def add(dst, d0, n, value):
    """dst[d0 : d0 + n] += value."""
    d0 = np.uint64(d0)
    for k in range(np.uint64(n)):
        dst[d0 + k] += value
