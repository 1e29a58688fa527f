"""Reused work arrays for the CPU kernels (not zeroed between calls)."""
import math

import numpy as np

ALIGN_BYTES = 64          # one cache line, one AVX-512 register
_scratch_buffers = {}     # name -> flat array, grown on demand, reused across calls


def scratch(name, shape, dtype):
    """A reused (not zeroed) work array: im2col's `cols` is up to tens of MB, and a
    fresh allocation of that size costs page faults on every call (measured: the
    backward GEMM into a new 14 MB array took 6 ms instead of 0.6 ms). Not
    thread-safe, like the workqueue threading layer itself.
    The array starts on a 64-byte boundary (ALIGN_BYTES), so the lane layout's
    vector loads are aligned (lines/geometry.py)."""
    n = math.prod(shape)                  # (np.prod costs ~5 us a call; a train step makes ~160)
    buf = _scratch_buffers.get(name)
    if buf is None or buf.dtype != dtype or buf.size < n:
        buf = _scratch_buffers[name] = aligned_empty(n, dtype)
    return buf[:n].reshape(shape)


def aligned_empty(n, dtype):
    """np.empty(n, dtype) starting on an ALIGN_BYTES boundary (NumPy only promises 16)."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.empty(n * itemsize + ALIGN_BYTES, np.uint8)
    start = -raw.ctypes.data % ALIGN_BYTES
    return raw[start:start + n * itemsize].view(dtype)


def release_scratch():
    """Free the work arrays (they hold the largest im2col matrix seen so far)."""
    _scratch_buffers.clear()
