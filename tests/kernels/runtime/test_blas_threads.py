"""NumPy's BLAS thread count follows the kernel path (kernels/runtime/blas_threads.py)."""
import numpy as np
import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")
pytest.importorskip("numba")

import minidiff.kernels as K
from minidiff.kernels.runtime import blas_threads


def blas_threads_now():
    """{thread counts} of NumPy's own BLAS (SciPy may load another, which the kernels never call)."""
    counts = {d["num_threads"] for d in threadpoolctl.threadpool_info()
              if d["user_api"] == "blas" and "numpy" in d["filepath"]}
    assert counts, "NumPy's BLAS not found by threadpoolctl"
    return counts


@pytest.fixture
def reset_mode():
    blas_threads.kernels_mode(False)
    original = blas_threads_now()
    yield original
    blas_threads.kernels_mode(False)
    assert blas_threads_now() == original


def test_kernels_mode_limits_and_restores(reset_mode, monkeypatch):
    monkeypatch.delenv("MINIDIFF_BLAS_THREADS", raising=False)
    blas_threads.kernels_mode(True)
    assert blas_threads_now() == {1}
    blas_threads.kernels_mode(False)
    assert blas_threads_now() == reset_mode


def test_env_sets_or_keeps_the_count(reset_mode, monkeypatch):
    monkeypatch.setenv("MINIDIFF_BLAS_THREADS", "keep")
    blas_threads.kernels_mode(True)
    assert blas_threads_now() == reset_mode
    blas_threads.kernels_mode(False)
    monkeypatch.setenv("MINIDIFF_BLAS_THREADS", "0")
    with pytest.raises(ValueError, match="MINIDIFF_BLAS_THREADS"):
        blas_threads.kernels_mode(True)


def test_dispatch_switches_with_the_path(reset_mode, monkeypatch):
    monkeypatch.delenv("MINIDIFF_BLAS_THREADS", raising=False)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    K.conv2d_forward(x, w, None, 1, 1)                     # Numba CPU kernel
    assert blas_threads_now() == {1}
    with K.reference_mode():
        K.conv2d_forward(x, w, None, 1, 1)                 # plain NumPy: every BLAS thread
        assert blas_threads_now() == reset_mode
