"""Adam's CUDA kernel vs the NumPy reference, under the CUDA simulator.

Run by tests/kernels/test_cuda_simulator.py in a process with NUMBA_ENABLE_CUDASIM=1
(see conv/conv_cuda_check.py). Tiny sizes: the simulator runs every thread in Python.
"""
import os

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("needs NUMBA_ENABLE_CUDASIM=1 (run tests/kernels/test_cuda_simulator.py)", allow_module_level=True)

from layouts import as_layout  # noqa: E402
from minidiff.kernels.adam import cuda as adam_cuda  # noqa: E402
from minidiff.kernels.adam import reference as adam  # noqa: E402


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("P", [1, 130, 300])                  # one block, a partial second, three
@pytest.mark.parametrize("weight_decay,decoupled", [(0.0, False), (0.05, False), (0.05, True)])
def test_adam_cuda_matches_reference(P, dtype, weight_decay, decoupled):
    rng = np.random.default_rng(P)
    vecs = [rng.standard_normal(P), rng.standard_normal(P), 0.1 * rng.standard_normal(P), 0.01 * rng.random(P)]
    want = [a.astype(dtype) for a in vecs]
    got = [a.copy() for a in want]
    for t in (1, 4):
        adam.adam_step_reference(*want, 2e-3, 0.9, 0.999, 1e-8, t, weight_decay, decoupled)
        adam_cuda.adam_step_cuda(*got, 2e-3, 0.9, 0.999, 1e-8, t, weight_decay, decoupled)
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    for name, w, g in zip(("theta", "g", "m", "v"), want, got):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * 1e-2, err_msg=name)


def test_adam_cuda_any_layout():
    """Strided and reversed views of g (read) and of theta, m, v (updated in place) give the
    reference's step, and the caller's views are the ones updated."""
    rng = np.random.default_rng(3)
    vecs = [rng.standard_normal(40), rng.standard_normal(40), 0.1 * rng.standard_normal(40), 0.01 * rng.random(40)]
    want = [a.copy() for a in vecs]
    adam.adam_step_reference(*want, 2e-3, 0.9, 0.999, 1e-8, 3)
    for layout in ("strided", "reversed"):
        for i in range(4):
            got = [a.copy() for a in vecs]
            got[i] = as_layout(got[i], layout)
            adam_cuda.adam_step_cuda(*got, 2e-3, 0.9, 0.999, 1e-8, 3)
            for name, w, g in zip(("theta", "g", "m", "v"), want, got):
                np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-15, err_msg=f"{name}, {layout} argument {i}")
