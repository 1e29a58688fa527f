"""The fused DDPM / DDIM / solver step CUDA kernels (kernels/sampling/cuda.py) vs their references
(kernels/sampling/reference.py) under Numba's CUDA simulator.

Run by tests/kernels/test_cuda_simulator.py in a process with NUMBA_ENABLE_CUDASIM=1
(see conv/conv_cuda_check.py). Tiny shapes: the simulator runs every thread in Python.
"""
import os

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("needs NUMBA_ENABLE_CUDASIM=1 (run tests/kernels/test_cuda_simulator.py)", allow_module_level=True)

from numba import config  # noqa: E402

from layouts import assert_any_layout  # noqa: E402
from minidiff.kernels.check import check_kernel, ddim_case, ddpm_case, solver_case  # noqa: E402
from minidiff.kernels.sampling import cuda as sampling_cuda  # noqa: E402
from minidiff.kernels.sampling import reference as sampling  # noqa: E402

DTYPES = [np.float32, np.float64]


def test_simulator_is_on():
    assert config.ENABLE_CUDASIM


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("clip", [True, False])
def test_ddpm_step_matches_reference(dtype, clip):
    rng = np.random.default_rng(5)
    x_prev, x0 = check_kernel(sampling_cuda.ddpm_step_cuda, sampling.ddpm_step_reference,
                              ddpm_case(rng, (2, 1, 5, 7), dtype), {"clip": clip})
    assert x_prev.dtype == x0.dtype == dtype and x_prev.shape == (2, 1, 5, 7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("clip", [True, False])
def test_ddim_step_matches_reference(dtype, clip):
    rng = np.random.default_rng(6)
    x_next, x0 = check_kernel(sampling_cuda.ddim_step_cuda, sampling.ddim_step_reference,
                              ddim_case(rng, (3, 2, 4, 5), dtype, eta=0.5), {"clip": clip})
    assert x_next.dtype == x0.dtype == dtype and x_next.shape == (3, 2, 4, 5)


def test_steps_without_noise_and_in_place():
    rng = np.random.default_rng(7)
    case = ddpm_case(rng, (2, 3, 4), noise=False)
    want, _ = sampling.ddpm_step_reference(*case)
    x_t = case[0].copy()
    got, _ = sampling_cuda.ddpm_step_cuda(x_t, *case[1:], out=x_t)
    assert got is x_t
    np.testing.assert_allclose(x_t, want, rtol=1e-5, atol=1e-6)
    check_kernel(sampling_cuda.ddim_step_cuda, sampling.ddim_step_reference,
                 ddim_case(rng, (2, 3, 4), noise=False))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_hist", [0, 1, 2])
@pytest.mark.parametrize("clip", [True, False])
def test_solver_step_matches_reference(dtype, n_hist, clip):
    rng = np.random.default_rng(8)
    x_next, x0 = check_kernel(sampling_cuda.solver_step_cuda, sampling.solver_step_reference,
                              solver_case(rng, (2, 1, 5, 7), dtype, n_hist), {"clip": clip})
    assert x_next.dtype == x0.dtype == dtype and x_next.shape == (2, 1, 5, 7)


def test_solver_step_heun_form_without_noise_in_place():
    """x_eval != x (Heun's corrector), no noise, x_next written over x_eval."""
    rng = np.random.default_rng(9)
    case = solver_case(rng, (3, 4, 5), np.float64, 1, noise=False, separate_eval=True)
    want, x0_want = sampling.solver_step_reference(*case)
    x_eval = case[0].copy()
    got, x0 = sampling_cuda.solver_step_cuda(x_eval, *case[1:], out=x_eval)
    assert got is x_eval
    np.testing.assert_allclose(x_eval, want, rtol=1e-12)
    np.testing.assert_allclose(x0, x0_want, rtol=1e-12)


@pytest.mark.parametrize("shape", [(2, 2, 3, 2), (1, 3, 2)])
def test_steps_any_layout(shape):
    """x_t, eps_hat and z in Fortran order, permuted, strided or reversed views, batch 1 and 2:
    the same x_prev / x_next and x0_hat as on C-contiguous arrays (the outputs used to be
    allocated in x_t's order and returned unwritten)."""
    rng = np.random.default_rng(8)
    ddpm = ddpm_case(rng, shape, np.float64)
    assert_any_layout(lambda *a: sampling_cuda.ddpm_step_cuda(*a[:7], z=a[7]), ddpm, which=[0, 1, 7],
                      name="ddpm_step_cuda")
    ddim = ddim_case(rng, shape, np.float64, eta=0.5)
    assert_any_layout(lambda *a: sampling_cuda.ddim_step_cuda(*a[:5], z=a[5]), ddim, which=[0, 1, 5],
                      name="ddim_step_cuda")
