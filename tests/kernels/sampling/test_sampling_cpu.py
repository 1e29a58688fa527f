"""The fused DDPM / DDIM steps on the CPU (kernels/sampling/cpu.py) against their references
(kernels/sampling/reference.py)."""
import numpy as np
import pytest

pytest.importorskip("numba")

from minidiff.kernels.check import check_kernel, ddim_case, ddpm_case
from minidiff.kernels.sampling import cpu as sampling_cpu
from minidiff.kernels.sampling import reference as sampling

DTYPES = [np.float32, np.float64]
STEP_SHAPES = [(1, 1, 5, 9), (3, 2, 7, 7), (4, 10)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", STEP_SHAPES)
@pytest.mark.parametrize("clip", [True, False])
def test_ddpm_step_matches_reference(shape, dtype, clip):
    rng = np.random.default_rng(5)
    x_prev, x0 = check_kernel(sampling_cpu.ddpm_step_cpu, sampling.ddpm_step_reference,
                              ddpm_case(rng, shape, dtype), {"clip": clip})
    assert x_prev.shape == x0.shape == shape and x_prev.dtype == dtype
    assert (np.abs(x0).max() <= 1) == clip                            # the inputs make some |x0_hat| > 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", STEP_SHAPES)
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_step_matches_reference(shape, dtype, eta):
    rng = np.random.default_rng(6)
    x_next, x0 = check_kernel(sampling_cpu.ddim_step_cpu, sampling.ddim_step_reference,
                              ddim_case(rng, shape, dtype, eta=eta))
    assert x_next.shape == x0.shape == shape and x_next.dtype == dtype
    assert np.abs(x0).max() <= 1


def test_ddim_unclipped_and_no_noise():
    rng = np.random.default_rng(7)
    case = ddim_case(rng, (2, 3, 4, 4), noise=False)
    check_kernel(sampling_cpu.ddim_step_cpu, sampling.ddim_step_reference, case, {"clip": False})
    check_kernel(sampling_cpu.ddpm_step_cpu, sampling.ddpm_step_reference,
                 ddpm_case(rng, (2, 3, 4, 4), noise=False))


def test_ddpm_step_equations_by_hand():
    """x0_hat and x_prev written out for one sample, scalar coefficients."""
    x_t = np.array([[0.5, -2.0, 3.0]])
    eps = np.array([[0.1, 0.2, -0.3]])
    z = np.array([[1.0, -1.0, 0.5]])
    x_prev, x0 = sampling_cpu.ddpm_step_cpu(x_t, eps, 2.0, 1.5, 0.3, 0.6, 0.1, z)
    x0_want = np.clip(2.0 * x_t - 1.5 * eps, -1, 1)
    np.testing.assert_allclose(x0, x0_want, rtol=1e-12)
    np.testing.assert_allclose(x_prev, 0.3 * x0_want + 0.6 * x_t + 0.1 * z, rtol=1e-12)


def test_steps_run_in_place():
    rng = np.random.default_rng(8)
    case = ddpm_case(rng, (2, 3, 5, 5))
    want, x0_want = sampling.ddpm_step_reference(*case)
    x_t = case[0].copy()
    got, _ = sampling_cpu.ddpm_step_cpu(x_t, *case[1:], out=x_t)
    assert got is x_t
    np.testing.assert_allclose(x_t, want, rtol=1e-5, atol=1e-6)
    case = ddim_case(rng, (2, 3, 5, 5))
    want, _ = sampling.ddim_step_reference(*case)
    x_t, x0 = case[0].copy(), np.empty_like(case[0])
    got, got_x0 = sampling_cpu.ddim_step_cpu(x_t, *case[1:], out=x_t, x0_out=x0)
    assert got is x_t and got_x0 is x0
    np.testing.assert_allclose(x_t, want, rtol=1e-5, atol=1e-6)


def test_step_rejects_bad_input():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="c1"):
        sampling_cpu.ddpm_step_cpu(x, x, 1.0, 1.0, np.ones(3, np.float32), 1.0, 0.0)
    with pytest.raises(ValueError, match="eps_hat"):
        sampling.ddim_step_reference(x, np.zeros((2, 4), np.float32), 0.5, 0.6, 0.0)
    with pytest.raises(ValueError, match="x0_out"):
        sampling_cpu.ddim_step_cpu(x, x.copy(), 0.5, 0.6, 0.0, x0_out=x)
