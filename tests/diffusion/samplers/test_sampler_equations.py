"""Each sampler's fused update (minidiff.kernels: dpmpp_step, euler_step, euler_ancestral_step, heun_step)
equals its equation, transcribed independently in tests/sampler_formulas.py, for one step in float64: every
objective, with and without clipping, on the Numba CPU path and the reference path (the CUDA kernel is
checked against the reference in tests/kernels/sampling/sampling_cuda_check.py)."""
import math

import numpy as np
import pytest

import sampler_formulas as F
from minidiff import kernels

TOL = dict(rtol=1e-12, atol=1e-12)
ABAR_T, ABAR_NEXT = 0.35, 0.62
LAMBDAS_PREV = (F.log_snr(0.2), F.log_snr(0.12))                     # earlier (noisier) evaluation points


@pytest.fixture(params=["cpu", "reference"])
def path(request):
    """Run the ops on the Numba CPU kernels or on the plain-NumPy reference."""
    with kernels.reference_mode(request.param == "reference"):
        yield request.param


def arrays(seed, n=4, shape=(3, 2, 5)):
    rng = np.random.default_rng(seed)
    return [1.4 * rng.standard_normal(shape) for _ in range(n)]


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_dpmpp_step_equals_the_paper(path, objective, clip, order):
    x, out, m1, m2 = arrays(1)
    x0_prev, lambdas = (m1, m2)[:order - 1], LAMBDAS_PREV[:order - 1]
    got, x0 = kernels.dpmpp_step(x, out, ABAR_T, ABAR_NEXT, objective, x0_prev, lambdas, clip=clip)
    m0 = F.x0_from(objective, out, x, ABAR_T, clip)
    want = F.dpmpp_update(x, [m0, *x0_prev], [F.log_snr(ABAR_T), *lambdas], ABAR_T, ABAR_NEXT)
    np.testing.assert_allclose(x0, m0, **TOL)
    np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("objective", ["eps", "v"])
@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("eta", [1.0, 0.4])
def test_dpmpp_sde_step_equals_k_diffusion(path, objective, order, eta):
    x, out, m1, z = arrays(2)
    lam1 = LAMBDAS_PREV[0]
    got, _ = kernels.dpmpp_step(x, out, ABAR_T, ABAR_NEXT, objective, (m1,)[:order - 1], (lam1,)[:order - 1],
                                eta=eta, z=z, clip=True)
    m0 = F.x0_from(objective, out, x, ABAR_T, True)
    h_last = F.log_snr(ABAR_T) - lam1
    want = F.dpmpp_2m_sde_update(x, [m0, m1][:order], h_last, ABAR_T, ABAR_NEXT, eta, z)
    np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
@pytest.mark.parametrize("clip", [False, True])
def test_euler_step_equals_k_diffusion(path, objective, clip):
    x, out = arrays(3, 2)
    got, x0 = kernels.euler_step(x, out, ABAR_T, ABAR_NEXT, objective, clip=clip)
    D = F.x0_from(objective, out, x, ABAR_T, clip)
    np.testing.assert_allclose(got, F.euler_update(x, D, ABAR_T, ABAR_NEXT), **TOL)
    np.testing.assert_allclose(x0, D, **TOL)


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
@pytest.mark.parametrize("eta", [1.0, 0.4, 0.0])
def test_euler_ancestral_step_equals_k_diffusion(path, objective, eta):
    x, out, z = arrays(4, 3)
    got, _ = kernels.euler_ancestral_step(x, out, ABAR_T, ABAR_NEXT, z, objective, eta=eta, clip=True)
    D = F.x0_from(objective, out, x, ABAR_T, True)
    np.testing.assert_allclose(got, F.euler_ancestral_update(x, D, ABAR_T, ABAR_NEXT, eta, z), **TOL)


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
@pytest.mark.parametrize("clip", [False, True])
def test_heun_step_equals_karras_algorithm_1(path, objective, clip):
    """Predictor (euler_step) and corrector (heun_step) against sample_heun; out2 plays the model's
    output at the predictor's point."""
    x, out, out2 = arrays(5, 3)
    x_pred, D = kernels.euler_step(x, out, ABAR_T, ABAR_NEXT, objective, clip=clip)
    got, D2 = kernels.heun_step(x, x_pred, out2, D, ABAR_T, ABAR_NEXT, objective, clip=clip)

    def denoise_at_next(xp):
        np.testing.assert_allclose(xp, x_pred, **TOL)                # the formula's predictor is the op's
        return F.x0_from(objective, out2, xp, ABAR_NEXT, clip)

    want = F.heun_update(x, F.x0_from(objective, out, x, ABAR_T, clip), denoise_at_next, ABAR_T, ABAR_NEXT)
    np.testing.assert_allclose(got, want, **TOL)
    np.testing.assert_allclose(D2, F.x0_from(objective, out2, x_pred, ABAR_NEXT, clip), **TOL)


def test_every_step_onto_the_data_is_the_denoiser(path):
    """abar_next = 1 (t_next = -1): x_next = x0_hat for every sampler."""
    x, out, z = arrays(6, 3)
    D = F.x0_from("eps", out, x, ABAR_T, True)
    for x_next, x0 in (kernels.dpmpp_step(x, out, ABAR_T, 1.0), kernels.dpmpp_step(x, out, ABAR_T, 1.0, eta=1.0),
                       kernels.euler_step(x, out, ABAR_T, 1.0),
                       kernels.euler_ancestral_step(x, out, ABAR_T, 1.0, None)):
        np.testing.assert_allclose(x_next, D, **TOL)
        np.testing.assert_allclose(x0, D, **TOL)


def test_first_order_steps_agree_with_ddim(path):
    """Euler = DPM-Solver++ order 1 = DDIM with eta = 0; Euler ancestral (eta 1) = the SDE variant of order 1
    (eta 1) = DDIM with eta = 1 (DDPM's posterior step between the two timesteps), for the same z."""
    x, eps, z = arrays(7, 3)
    sigma = math.sqrt((1 - ABAR_NEXT) / (1 - ABAR_T) * (1 - ABAR_T / ABAR_NEXT))
    ddim0, _ = kernels.ddim_step(x, eps, ABAR_T, ABAR_NEXT, 0.0)
    ddim1, _ = kernels.ddim_step(x, eps, ABAR_T, ABAR_NEXT, sigma, z=z)
    np.testing.assert_allclose(kernels.euler_step(x, eps, ABAR_T, ABAR_NEXT)[0], ddim0, **TOL)
    np.testing.assert_allclose(kernels.dpmpp_step(x, eps, ABAR_T, ABAR_NEXT)[0], ddim0, **TOL)
    np.testing.assert_allclose(kernels.euler_ancestral_step(x, eps, ABAR_T, ABAR_NEXT, z)[0], ddim1, **TOL)
    np.testing.assert_allclose(kernels.dpmpp_step(x, eps, ABAR_T, ABAR_NEXT, eta=1.0, z=z)[0], ddim1, **TOL)


def test_sde_variant_with_eta_zero_is_the_ode_update(path):
    x, out, m1, z = arrays(8)
    ode = kernels.dpmpp_step(x, out, ABAR_T, ABAR_NEXT, "eps", (m1,), LAMBDAS_PREV[:1])[0]
    sde = kernels.dpmpp_step(x, out, ABAR_T, ABAR_NEXT, "eps", (m1,), LAMBDAS_PREV[:1], eta=0.0, z=z)[0]
    np.testing.assert_allclose(sde, ode, **TOL)


def test_multistep_updates_are_exact_when_x0_hat_is_a_polynomial_in_lambda():
    """With a state-independent x0_hat(lambda), the exact solution is sigma_next (x/sigma_t + integral of
    e^lambda x0_hat). DPM-Solver++ of order k integrates the degree k-1 interpolant exactly, so order 3 is
    exact for a quadratic. 2M (the paper's midpoint form) is exact for a constant only. The third-order
    update as DPM-Solver's and diffusers' multistep code writes it (D2 without the factor 2) is not exact
    for a quadratic: its local error is O(h^3), so it converges at order 2."""
    from scipy.integrate import quad
    lam_t, lam_n = F.log_snr(ABAR_T), F.log_snr(ABAR_NEXT)
    lams = [lam_t, *LAMBDAS_PREV]
    x = np.array([[0.8, -0.3]])
    for degree, order, exact in ((0, 2, True), (1, 2, False), (2, 3, True)):
        poly = np.array([0.3, 0.7, -0.4])[:degree + 1]                # x0_hat(lambda) = sum_k poly_k lambda^k
        m = lambda lam: sum(c * lam ** k for k, c in enumerate(poly))
        ms = [np.full_like(x, m(v)) for v in lams[:order]]
        integral = quad(lambda lam: math.exp(lam) * m(lam), lam_t, lam_n, epsabs=1e-14, epsrel=1e-14)[0]
        want = math.sqrt(1 - ABAR_NEXT) * (x / math.sqrt(1 - ABAR_T) + integral)
        got, _ = kernels.dpmpp_step(x, ms[0], ABAR_T, ABAR_NEXT, "x0", tuple(ms[1:]), tuple(lams[1:order]),
                                    clip=False)                           # out = x0_hat: objective "x0"
        assert (np.abs(got - want).max() < 1e-13) == exact, (degree, order, np.abs(got - want).max())
    # the upstream third-order multistep update, transcribed, on the quadratic
    h, (r0, r1) = lam_n - lam_t, ((lams[0] - lams[1]) / (lam_n - lam_t), (lams[1] - lams[2]) / (lam_n - lam_t))
    m0, m1, m2 = (0.3 + 0.7 * v - 0.4 * v * v for v in lams)
    D1_0, D1_1 = (m0 - m1) / r0, (m1 - m2) / r1
    D1, D2 = D1_0 + r0 / (r0 + r1) * (D1_0 - D1_1), (D1_0 - D1_1) / (r0 + r1)
    phi1 = math.expm1(-h)
    phi2 = phi1 / h + 1
    phi3 = phi2 / h - 0.5
    alpha_n, sigma_n, sigma_t = math.sqrt(ABAR_NEXT), math.sqrt(1 - ABAR_NEXT), math.sqrt(1 - ABAR_T)
    upstream = sigma_n / sigma_t * 0.8 - alpha_n * phi1 * m0 + alpha_n * phi2 * D1 - alpha_n * phi3 * D2
    integral = quad(lambda lam: math.exp(lam) * (0.3 + 0.7 * lam - 0.4 * lam * lam), lam_t, lam_n,
                    epsabs=1e-14, epsrel=1e-14)[0]
    assert abs(upstream - sigma_n * (0.8 / sigma_t + integral)) > 1e-4
