"""Every ODE sampler converges to the exact probability-flow solution, at the order theory gives.

How a discrete-time model is compared with the continuous ODE. minidiff's model is called only at its T
grid timesteps, and a sampler uses each visited timestep's own abar_t. The exact "models" here
(tests/exact_models.py) are continuous in the noise level: called at timestep t they return the exact
prediction at abar_t. So a sampler run over timesteps t_0 > ... > t_{S-1} is an ODE solver on the
noise levels abar_{t_i}, and its only error is its discretisation between them: the exact solution from
x at t_0 to t_{S-1} is known (closed form for Gaussian data, DOP853 at 1e-12 for the mixture). The last
step of every sampler, onto the data (abar = 1, lambda = +inf), is the denoiser x0_hat(x at t_{S-1}) (the
first-order step; Heun's last step is Euler's), so the reference is that same denoiser applied to the exact
state at t_{S-1}: reference = x0_hat(flow(x_T: t_0 -> t_{S-1}), t_{S-1}).

The grid: T = 961 timesteps whose log-SNR falls linearly from 5 to -5 (uniform_logsnr_betas). With S - 1
dividing 960, the logsnr spacing's steps land exactly on timesteps with one step size h = 10 / (S - 1), and
every run starts at t = 960 and ends at t = 0. The order is the slope of log(max error) against
log(S - 1) over S - 1 = 40..160, where the asymptotic orders show (fewer steps are pre-asymptotic).
"""
import numpy as np
import pytest

from exact_models import GaussianData, GaussianMixture, uniform_logsnr_betas
from minidiff.diffusion import GaussianDiffusion

T = 961
BETAS = uniform_logsnr_betas(T, 5.0, -5.0)
ABAR = np.cumprod(1 - BETAS)
INTERVALS = (40, 60, 80, 120, 160)                                 # S - 1, each dividing T - 1 = 960
THEORY = {"ddim": 1, "euler": 1, "heun": 2, "dpmpp_2m": 2, "dpmpp_3m": 3}


def s_at(t):
    """Karras's noise level s = sigma / alpha at timestep t."""
    return np.sqrt((1 - ABAR[t]) / ABAR[t])


def gaussian(objective="eps"):
    return GaussianData([0.3, -0.5, 0.1], [0.5, 0.2, 0.8], ABAR, objective)


def mixture(objective="eps"):
    return GaussianMixture([[-0.6, 0.2], [0.5, -0.3]], [0.3, 0.7], 0.3, ABAR, objective)


def reference(model, x_T):
    """x0_hat at t = 0 of the exact flow from x_T at t = T-1 (see the module docstring)."""
    xs = model.flow(x_T / np.sqrt(ABAR[-1]), s_at(T - 1), s_at(0))    # x~ at t = 0
    return model.x0_hat(xs, s_at(0))


def errors(model, sampler, x_T, intervals=INTERVALS, spacing="logsnr", ref=None):
    d = GaussianDiffusion(model, betas=BETAS, objective=model.objective, clip_denoised=False, dtype=np.float64)
    ref = reference(model, x_T) if ref is None else ref
    return np.array([np.abs(d.sample(None, sampler=sampler, steps=n + 1, spacing=spacing, x_T=x_T,
                                     progress=False) - ref).max() for n in intervals])


def order(intervals, errs):
    """The least-squares slope of -log(error) against log(S - 1)."""
    return -np.polyfit(np.log(intervals), np.log(errs), 1)[0]


@pytest.fixture(scope="module")
def mixture_runs():
    x_T = np.random.default_rng(0).standard_normal((32, 2))
    ref = reference(mixture(), x_T)
    return {name: errors(mixture(), name, x_T, ref=ref) for name in THEORY}


@pytest.mark.parametrize("sampler", sorted(THEORY))
def test_order_of_convergence_on_a_gaussian_mixture(mixture_runs, sampler):
    errs = mixture_runs[sampler]
    assert np.all(np.diff(errs) < 0), errs                            # more steps, smaller error
    measured = order(INTERVALS, errs)
    assert abs(measured - THEORY[sampler]) < 0.15, (sampler, measured, errs)


@pytest.mark.parametrize("sampler", sorted(THEORY))
def test_gaussian_data_converges_to_the_closed_form_sample(sampler):
    """Each x_T's exact sample is mu + std (x~_T - mu) / sqrt(std^2 + s_T^2) (before the last denoising
    step, as above); every sampler approaches it at least at its theoretical order. (3M measures about 4
    on this linear problem: faster than its order 3, which the mixture shows.)"""
    x_T = np.random.default_rng(1).standard_normal((32, 3))
    errs = errors(gaussian(), sampler, x_T)
    assert np.all(np.diff(errs) < 0) and errs[-1] < 0.05, errs
    assert order(INTERVALS, errs) > THEORY[sampler] - 0.15, (sampler, order(INTERVALS, errs), errs)


def test_reference_flows_agree():
    """The mixture's DOP853 flow reproduces the Gaussian closed form when the mixture has one component."""
    g = GaussianData([0.2, -0.4], [0.3, 0.3], ABAR)
    one = GaussianMixture([[0.2, -0.4]], [1.0], 0.3, ABAR)
    x = np.random.default_rng(2).standard_normal((8, 2)) * 30
    np.testing.assert_allclose(one.flow(x, s_at(T - 1), s_at(0)), g.flow(x, s_at(T - 1), s_at(0)), rtol=1e-9)


@pytest.mark.parametrize("sampler", ["heun", "dpmpp_2m"])
def test_order_holds_on_karras_spacing(sampler):
    """Karras sigmas (rho = 7) mapped to the nearest timesteps: uneven steps, the same orders."""
    x_T = np.random.default_rng(3).standard_normal((16, 2))
    steps = (40, 60, 80, 120, 160)
    measured = order(steps, errors(mixture(), sampler, x_T, steps, spacing="karras"))
    assert abs(measured - THEORY[sampler]) < 0.2, (sampler, measured)


@pytest.mark.parametrize("sampler", sorted(THEORY))
def test_every_parameterisation_gives_the_same_run(sampler):
    """An exact model predicting eps, x0 or v carries the same x0_hat: the runs agree to rounding."""
    x_T = np.random.default_rng(4).standard_normal((8, 2))
    runs = [GaussianDiffusion(mixture(o), betas=BETAS, objective=o, clip_denoised=False, dtype=np.float64)
            .sample(None, sampler=sampler, steps=21, spacing="logsnr", x_T=x_T, progress=False)
            for o in ("eps", "x0", "v")]
    np.testing.assert_allclose(runs[1], runs[0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(runs[2], runs[0], rtol=1e-9, atol=1e-9)
