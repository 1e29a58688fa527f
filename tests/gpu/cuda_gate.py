"""The gate of tests/gpu: a real CUDA device seen by CuPy, or the test module is skipped with the reason.

    cp = require_cuda()          # at the top of a test module, before anything touches CuPy

Numba's CUDA simulator is not a GPU (minidiff.backend.cuda_unavailable_reason
says why not, never from numba.cuda.is_available()). With MINIDIFF_REQUIRE_GPU=1
(tools/gpu_check.sh sets it) a missing GPU fails the module instead: on the GPU
machine a skip would hide a broken install.
"""
import os

import numpy as np
import pytest

from minidiff.backend import cuda_unavailable_reason, to_host

# (rtol, atol relative to max |reference|): kernels/check.py's, atol x5 in float32, whose
# tiled GEMM sums up to B*H*W = 50,176 terms in the array dtype at batch 64
TOLERANCE = {np.dtype(np.float32): (1e-4, 5e-5), np.dtype(np.float64): (1e-10, 1e-12)}


def require_cuda():
    """The cupy module when a real CUDA device is there; else skip (or fail) the calling module."""
    reason = cuda_unavailable_reason()
    if reason is None:
        import cupy
        return cupy
    if os.environ.get("MINIDIFF_REQUIRE_GPU") == "1":
        pytest.fail(f"MINIDIFF_REQUIRE_GPU=1 but no usable GPU: {reason}", pytrace=False)
    pytest.skip(f"needs CuPy and a CUDA device: {reason}", allow_module_level=True)


def to_gpu(cp, a):
    """NumPy arrays (also inside lists and tuples) copied to the device; anything else as it is."""
    if isinstance(a, np.ndarray):
        return cp.asarray(a)
    if isinstance(a, (list, tuple)):
        return type(a)(to_gpu(cp, v) for v in a)
    return a


def assert_close(got, want, name="output", rtol=None, atol=None):
    """got (CuPy, or a list of CuPy arrays) equals want (NumPy) within TOLERANCE[dtype], scaled by max |want|."""
    if isinstance(want, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(want), f"{name}: {len(got)} parts, want {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, f"{name}[{i}]", rtol, atol)
        return
    if want is None:
        assert got is None, f"{name}: expected None, got {type(got).__name__}"
        return
    assert type(got).__module__.startswith("cupy"), f"{name}: expected a CuPy array, got {type(got).__name__}"
    got = to_host(got)
    assert got.shape == want.shape, f"{name}: shape {got.shape}, want {want.shape}"
    assert got.dtype == want.dtype, f"{name}: dtype {got.dtype}, want {want.dtype}"
    rt, at = TOLERANCE[want.dtype]
    rt, at = rtol if rtol is not None else rt, atol if atol is not None else at
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=rt, atol=at * scale, err_msg=name)
