"""The stochastic samplers reproduce the data's mean and variance within their Monte-Carlo error.

Gaussian data x0 ~ N(mu, std^2) per dimension, with the exact model (tests/exact_models.py): the data
prediction is affine in x, D = mu + A (x / alpha - mu) with A = std^2 / (std^2 + s^2), and every update is
affine in (x, earlier D, z). So a sampler's output is exactly Gaussian, and its law can be propagated step
by step: mean and covariance of the state (x, D_prev), with each step's coefficients read off the
independently transcribed updates of tests/sampler_formulas.py. That law carries the sampler's own
discretisation bias: the first-order ancestral steps (DDIM with eta = 1, Euler ancestral, DDPM) lose
variance, about 60% at 10 steps and 1% at all 961, the bias falling as 1/steps; the 2M SDE's falls faster.

Two checks per sampler, each at 4.5 standard errors:
- at 10 steps, the empirical mean and variance of 16,000 samples x 4 dimensions equal the propagated law
  (so the noise each step adds has the right size: a few percent error in it would show);
- at enough steps that the law's bias is below one standard error (asserted: all 961 steps and 3,000
  samples for the first-order samplers, whose bias is then 1.0-1.2%; 81 steps and 16,000 samples for
  the 2M SDE, bias 0.5%), the empirical moments equal the data's.
The runs start from the exact marginal at t = T-1, so the start adds no error. (DDPM is DDIM with eta = 1
over all T steps, tests/diffusion/test_ddim.py.)
"""
import numpy as np
import pytest

import sampler_formulas as F
from exact_models import GaussianData, GaussianMixture, uniform_logsnr_betas
from minidiff.diffusion import GaussianDiffusion, sampler_timesteps

T = 961
BETAS = uniform_logsnr_betas(T, 5.0, -5.0)
ABAR = np.cumprod(1 - BETAS)
MU, STD = np.array([0.3, -0.5, 0.1, 0.0]), np.array([0.5, 0.2, 0.8, 0.35])
N = 16_000
STOCHASTIC = [("ddim", 1.0), ("euler_ancestral", 1.0), ("euler_ancestral", 0.5), ("dpmpp_2m_sde", 1.0),
              ("dpmpp_2m_sde", 0.5)]


def step_coefficients(sampler, eta, t, t_next, h_last, order):
    """(cx, c0, c1, cz) of x_next = cx x + c0 D + c1 D_prev + cz z, read off the transcribed update by
    evaluating it at unit inputs (it is linear in x, D, D_prev and z)."""
    ab = lambda u: 1.0 if u < 0 else float(ABAR[u])
    one = np.ones(1)

    def f(x, d, d_prev, z):
        if sampler == "ddim":
            return F.ddim_update(x, d, ab(t), ab(t_next), eta, z)
        if sampler == "euler_ancestral":
            return F.euler_ancestral_update(x, d, ab(t), ab(t_next), eta, z)
        return F.dpmpp_2m_sde_update(x, [d, d_prev][:order], h_last, ab(t), ab(t_next), eta, z)

    base = f(0 * one, 0 * one, 0 * one, 0 * one)
    return [(f(*(one if k == j else 0 * one for k in range(4))) - base)[0] for j in range(4)]


def propagated_law(sampler, eta, steps):
    """Mean and variance per dimension of the sampler's output, exactly, from the marginal at t = T-1."""
    ts = [int(t) for t in sampler_timesteps(ABAR, steps, "logsnr")]
    pairs = list(zip(ts, ts[1:] + [-1]))
    s_T = np.sqrt((1 - ABAR[-1]) / ABAR[-1])
    mean = np.stack([np.sqrt(ABAR[-1]) * MU, np.zeros(4)], 1)                      # (4, 2): (x, D_prev)
    cov = np.zeros((4, 2, 2))
    cov[:, 0, 0] = ABAR[-1] * (STD ** 2 + s_T ** 2)
    for i, (t, t_next) in enumerate(pairs):
        alpha, s = np.sqrt(ABAR[t]), np.sqrt((1 - ABAR[t]) / ABAR[t])
        A = STD ** 2 / (STD ** 2 + s ** 2)
        a, b = A / alpha, MU * (1 - A)                                               # D = a x + b, (4,)
        h_last = None if i == 0 else F.log_snr(ABAR[t]) - F.log_snr(ABAR[ts[i - 1]])
        cx, c0, c1, cz = step_coefficients(sampler, eta, t, t_next, h_last, 1 if i == 0 else 2)
        M = np.zeros((4, 2, 2))                                                      # new (x, D) from (x, D_prev)
        M[:, 0, 0], M[:, 0, 1], M[:, 1, 0] = cx + c0 * a, c1, a
        const = np.stack([c0 * b, b], 1)
        mean = np.einsum("dij,dj->di", M, mean) + const
        cov = np.einsum("dij,djk,dlk->dil", M, cov, M)
        cov[:, 0, 0] += cz ** 2
    return mean[:, 0], cov[:, 0, 0]


def run(sampler, eta, steps, seed, n=N):
    d = GaussianDiffusion(GaussianData(MU, STD, ABAR), betas=BETAS, clip_denoised=False, dtype=np.float64)
    rng = np.random.default_rng(seed)
    s_T = np.sqrt((1 - ABAR[-1]) / ABAR[-1])
    x_T = np.sqrt(ABAR[-1]) * (MU + np.sqrt(STD ** 2 + s_T ** 2) * rng.standard_normal((n, 4)))  # the marginal
    return d.sample(None, sampler=sampler, steps=steps, spacing="logsnr", eta=eta, x_T=x_T, rng=rng,
                    progress=False)


def z_scores(x, mean, var):
    """(mean z, variance z) per dimension for N samples of a Gaussian with this mean and variance."""
    n = x.shape[0]
    return (x.mean(0) - mean) / np.sqrt(var / n), (x.var(0, ddof=1) - var) / (var * np.sqrt(2 / (n - 1)))


@pytest.mark.parametrize("sampler, eta", STOCHASTIC)
def test_ten_steps_follow_their_exact_law(sampler, eta):
    mean, var = propagated_law(sampler, eta, 10)
    zm, zv = z_scores(run(sampler, eta, 10, seed=1), mean, var)
    assert np.abs(zm).max() < 4.5 and np.abs(zv).max() < 4.5, (zm, zv)
    if eta == 1.0 and sampler != "dpmpp_2m_sde":
        assert np.all(var < 0.5 * STD ** 2)                          # the first-order bias at 10 steps


@pytest.mark.parametrize("sampler, eta, steps, n", [("ddim", 1.0, 961, 3000), ("euler_ancestral", 1.0, 961, 3000),
                                                    ("dpmpp_2m_sde", 1.0, 81, N)])
def test_enough_steps_reproduce_the_data(sampler, eta, steps, n):
    mean, var = propagated_law(sampler, eta, steps)
    assert np.all(np.abs(var - STD ** 2) < STD ** 2 * np.sqrt(2 / (n - 1))), var / STD ** 2 - 1   # bias < 1 SE
    assert np.abs(mean - MU).max() < 1e-12
    zm, zv = z_scores(run(sampler, eta, steps, seed=2, n=n), MU, STD ** 2)
    assert np.abs(zm).max() < 4.5 and np.abs(zv).max() < 4.5, (zm, zv)


def test_sde_sampler_reproduces_a_mixture():
    """Two Gaussians in 2-D: the 2M SDE at 81 steps gives the mixture's mean and variance and the share of
    samples in each mode (the side of the midpoint they land on), within Monte-Carlo error."""
    mus, w, std = np.array([[-0.6, 0.2], [0.5, -0.3]]), np.array([0.3, 0.7]), 0.15
    model = GaussianMixture(mus, w, std, ABAR)
    rng, n = np.random.default_rng(5), 8000
    k = rng.random(n) < w[1]
    s_T = np.sqrt((1 - ABAR[-1]) / ABAR[-1])
    x_T = np.sqrt(ABAR[-1]) * (mus[k.astype(int)] + np.sqrt(std ** 2 + s_T ** 2) * rng.standard_normal((n, 2)))
    d = GaussianDiffusion(model, betas=BETAS, clip_denoised=False, dtype=np.float64)
    x = d.sample(None, sampler="dpmpp_2m_sde", steps=81, spacing="logsnr", x_T=x_T, rng=rng, progress=False)
    mean, var = model.moments()
    fourth = w @ ((mus - mean) ** 4 + 6 * (mus - mean) ** 2 * std ** 2 + 3 * std ** 4)   # E (x - mean)^4
    zm = (x.mean(0) - mean) / np.sqrt(var / n)
    zv = (x.var(0, ddof=1) - var) / np.sqrt((fourth - var ** 2) / n)
    assert np.abs(zm).max() < 4.5 and np.abs(zv).max() < 4.5, (zm, zv)
    share = np.mean(x[:, 0] > (mus[0, 0] + mus[1, 0]) / 2)
    assert abs(share - w[1]) < 4.5 * np.sqrt(w[1] * w[0] / n), share
