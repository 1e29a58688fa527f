"""DDIM: timestep spacing, the eq. 12 step, its limits (eta = 0, eta = 1 with S = T), inversion."""
import math

import numpy as np
import pytest

from minidiff.diffusion import GaussianDiffusion, make_betas, sampling_timesteps_spacing


class OracleModel:
    """Knows the clean x0: eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)."""

    def __init__(self, betas, x0):
        self.abar, self.x0 = np.cumprod(1 - np.asarray(betas, np.float64)), x0

    def forward(self, x, t):
        a = self.abar[t].reshape(-1, *([1] * (x.ndim - 1)))
        return ((x - np.sqrt(a) * self.x0) / np.sqrt(1 - a)).astype(x.dtype)

    def backward(self, d_out):
        return None


class GaussianDataModel:
    """The exact eps predictor for data ~ N(0, std^2 I): eps = sqrt(1-a) x / (a std^2 + 1 - a).

    Its probability-flow ODE maps x0 to x_t = x0 sqrt(a std^2 + 1 - a) / std.
    """

    def __init__(self, betas, std):
        self.abar, self.std = np.cumprod(1 - np.asarray(betas, np.float64)), std

    def flow(self, x0, t):
        a = self.abar[t]
        return x0 * math.sqrt(a * self.std**2 + 1 - a) / self.std

    def forward(self, x, t):
        a = self.abar[t].reshape(-1, *([1] * (x.ndim - 1)))
        return np.sqrt(1 - a) * x / (a * self.std**2 + 1 - a)

    def backward(self, d_out):
        return None


class TimeOnlyModel:
    """eps_hat depends on t only (smooth in t): DDIM inversion is then exact."""

    def __init__(self, pattern):
        self.pattern = pattern

    def forward(self, x, t):
        return (np.cos(t / 7.0).reshape(-1, *([1] * (x.ndim - 1))) * self.pattern + 0 * x).astype(x.dtype)

    def backward(self, d_out):
        return None


def make(model, T=50, schedule="cosine", **kw):
    return GaussianDiffusion(model, T, schedule=schedule, dtype=np.float64, **kw)


def make_with(model_class, arg, T=50, schedule="cosine", **kw):
    """A float64 diffusion whose model is model_class(betas, arg)."""
    betas = make_betas(schedule, T)
    return GaussianDiffusion(model_class(betas, arg), betas=betas, dtype=np.float64, **kw)


# ---- spacing ----------------------------------------------------------------------------
def test_spacing_hand_values():
    assert sampling_timesteps_spacing(10, 4, "linspace").tolist() == [9, 6, 3, 0]
    assert sampling_timesteps_spacing(10, 4, "leading").tolist() == [6, 4, 2, 0]
    assert sampling_timesteps_spacing(10, 4, "trailing").tolist() == [9, 7, 4, 1]   # 10, 7.5, 5, 2.5
    assert sampling_timesteps_spacing(1000, 3, "trailing").tolist() == [999, 666, 332]
    assert sampling_timesteps_spacing(1000, 50, "leading")[:2].tolist() == [980, 960]


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
@pytest.mark.parametrize("T,S", [(1000, 50), (1000, 999), (1000, 1000), (100, 7), (37, 36), (5, 1), (1, 1)])
def test_spacing_properties(spacing, T, S):
    ts = sampling_timesteps_spacing(T, S, spacing)
    assert ts.shape == (S,) and ts.dtype == np.int64
    assert len(set(ts.tolist())) == S and ts.min() >= 0 and ts.max() <= T - 1
    assert np.all(np.diff(ts) < 0)
    if spacing == "trailing":
        assert ts[0] == T - 1
    if spacing in ("linspace", "leading"):
        assert ts[-1] == 0
    if spacing == "linspace" and S > 1:
        assert ts[0] == T - 1
    if S == T:
        assert ts.tolist() == list(range(T - 1, -1, -1))


def test_spacing_bad_input():
    with pytest.raises(ValueError, match=r"sampling_timesteps: expected an integer in \[1, 10\]"):
        sampling_timesteps_spacing(10, 11)
    with pytest.raises(ValueError, match="sampling_timesteps"):
        sampling_timesteps_spacing(10, 0)
    with pytest.raises(ValueError, match="spacing: expected one of"):
        sampling_timesteps_spacing(10, 5, "quadratic")


# ---- one step ---------------------------------------------------------------------------
def _data(B=4, D=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.9, 0.9, (B, D)), rng.standard_normal((B, D))


def test_eta0_is_deterministic_and_matches_eq12():
    x0, eps = _data()
    d = make_with(OracleModel, x0)
    x_t = d.q_sample(x0, 30, eps)
    a1, _ = d.ddim_sample(x_t, 30, 20, noise=np.zeros_like(x_t))
    a2, x0_hat = d.ddim_sample(x_t, 30, 20, noise=np.random.default_rng(1).standard_normal(x_t.shape))
    a3, _ = d.ddim_sample(x_t, 30, 20, rng=5)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(a1, a3)
    abar = np.cumprod(1 - d._buffers64["betas"])
    np.testing.assert_allclose(a1, math.sqrt(abar[20]) * x0 + math.sqrt(1 - abar[20]) * eps, atol=1e-10)
    np.testing.assert_allclose(x0_hat, x0, atol=1e-10)


def test_sigma_formula_for_a_skip():
    x0, eps = _data()
    d = make_with(OracleModel, x0)
    x_t, z = d.q_sample(x0, 40, eps), np.random.default_rng(2).standard_normal(x0.shape)
    eta = 0.5
    abar = np.cumprod(1 - d._buffers64["betas"])
    a_t, a_n = abar[40], abar[25]
    sigma = eta * math.sqrt((1 - a_n) / (1 - a_t)) * math.sqrt(1 - a_t / a_n)
    x_next, _ = d.ddim_sample(x_t, 40, 25, noise=z, eta=eta)
    expected = math.sqrt(a_n) * x0 + math.sqrt(1 - a_n - sigma**2) * eps + sigma * z
    np.testing.assert_allclose(x_next, expected, atol=1e-10)


def test_eta1_with_every_step_is_ddpm():
    """eta = 1, S = T: sigma^2 = posterior_variance and the mean is the DDPM posterior mean."""
    x0, eps = _data(B=3)
    d = make_with(OracleModel, x0, T=30)
    z = np.random.default_rng(3).standard_normal(x0.shape)
    for t in range(30):
        x_t = d.q_sample(x0, t, eps)
        mean, _ = d.ddim_sample(x_t, t, t - 1, noise=np.zeros_like(x_t), eta=1.0)
        noisy, _ = d.ddim_sample(x_t, t, t - 1, noise=z, eta=1.0)
        sigma = (noisy - mean) / z                                        # (B, D), all equal
        np.testing.assert_allclose(sigma**2, d.posterior_variance[t], rtol=1e-8, atol=1e-14)
        ddpm_mean, _ = d.p_sample(x_t, t, noise=np.zeros_like(x_t))
        np.testing.assert_allclose(mean, ddpm_mean, atol=1e-9)


def test_last_step_lands_on_x0_hat():
    d = make(TimeOnlyModel(np.array([0.3, -2.0, 1.0])), clip_denoised=True)
    x_t = np.random.default_rng(4).standard_normal((5, 3)) * 3
    for eta in (0.0, 1.0):
        x_next, x0_hat = d.ddim_sample(x_t, 12, -1, eta=eta, rng=0)
        np.testing.assert_array_equal(x_next, x0_hat)
        assert np.abs(x0_hat).max() <= 1.0


def test_per_sample_timesteps_match_scalar_calls():
    x0, eps = _data(B=3)
    d = make_with(OracleModel, x0)
    t, t_next = np.array([49, 10, 0]), np.array([30, -1, -1])
    x_t = d.q_sample(x0, t, eps)
    z = np.random.default_rng(5).standard_normal(x0.shape)
    batch, _ = d.ddim_sample(x_t, t, t_next, noise=z, eta=0.7)
    for i in range(3):
        d.model = OracleModel(d._buffers64["betas"], x0[i:i + 1])
        one, _ = d.ddim_sample(x_t[i:i + 1], int(t[i]), int(t_next[i]), noise=z[i:i + 1], eta=0.7)
        np.testing.assert_allclose(batch[i:i + 1], one, atol=1e-12)


# ---- loops ------------------------------------------------------------------------------
@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
def test_loop_with_oracle_lands_on_x0_and_return_all(spacing):
    x0, _ = _data(B=2)
    d = make_with(OracleModel, x0, T=100)
    out = d.ddim_sample_loop((2, 3), 10, spacing=spacing, rng=0, progress=False)
    np.testing.assert_allclose(out, x0, atol=1e-9)
    xs, x0_hats = d.ddim_sample_loop((2, 3), 10, spacing=spacing, rng=0, progress=False, return_all=True)
    assert xs.shape == (11, 2, 3) and x0_hats.shape == (10, 2, 3)
    np.testing.assert_array_equal(xs[-1], out)


def test_loop_eta0_deterministic_given_x_T():
    d = make_with(GaussianDataModel, 0.5, T=40)
    x_T = np.random.default_rng(6).standard_normal((4, 2))
    a = d.ddim_sample_loop(None, 8, x_T=x_T, rng=1, progress=False)
    b = d.ddim_sample_loop((4, 2), 8, x_T=x_T, rng=2, progress=False)
    c = d.ddim_sample_loop((4, 2), 8, x_T=x_T, eta=1.0, rng=2, progress=False)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loop_dtype(dtype):
    d = GaussianDiffusion(TimeOnlyModel(np.ones(2)), 40, dtype=dtype)
    assert d.ddim_sample_loop((3, 2), 5, eta=0.3, rng=0, progress=False).dtype == dtype


# ---- inversion --------------------------------------------------------------------------
@pytest.mark.parametrize("spacing", ["linspace", "trailing"])
def test_inversion_round_trip_exact_when_eps_ignores_x(spacing):
    d = make(TimeOnlyModel(np.array([0.5, -1.0, 0.2])), T=100, clip_denoised=False)
    x0, _ = _data(B=6)
    x_T = d.ddim_reverse_loop(x0, 20, spacing=spacing, progress=False)
    assert not np.allclose(x_T, x0)
    rec = d.ddim_sample_loop(None, 20, spacing=spacing, x_T=x_T, eta=0.0, progress=False)
    np.testing.assert_allclose(rec, x0, atol=1e-10)


def test_inversion_follows_the_probability_flow():
    """For Gaussian data the exact ODE map is known; DDIM (first order) converges to it."""
    d = make_with(GaussianDataModel, 0.5, T=1000, schedule="linear", clip_denoised=False)
    model = d.model
    x0 = np.random.default_rng(7).normal(0, 0.5, (8, 2))
    errors = []
    for S in (100, 1000):
        x_T = d.ddim_reverse_loop(x0, S, progress=False)
        np.testing.assert_allclose(x_T, model.flow(x0, 999), atol=0.05)
        rec = d.ddim_sample_loop(None, S, x_T=x_T, progress=False)
        errors.append(np.abs(rec - x0).max())
    assert errors[1] < 5e-3 and errors[1] < errors[0] / 5      # error ~ 1/S
    decoded = d.ddim_sample_loop(None, 1000, x_T=model.flow(x0, 999), progress=False)
    np.testing.assert_allclose(decoded, x0, atol=5e-3)


# ---- bad input ------------------------------------------------------------------------
def test_bad_inputs_raise_naming_the_argument():
    d = make(TimeOnlyModel(np.ones(3)), T=20, data_shape=(3,))
    x = np.zeros((2, 3))
    cases = [
        (lambda: d.ddim_sample(x, 5, 2, eta=1.5), ValueError, r"eta: expected a number in \[0, 1\]"),
        (lambda: d.ddim_sample(x, 5, 2, eta=-0.1), ValueError, "eta"),
        (lambda: d.ddim_sample(x, 5, 5), ValueError, "t_next: expected t_next < t"),
        (lambda: d.ddim_sample(x, 5, -2), ValueError, r"t_next: expected an integer in \[-1, 19\]"),
        (lambda: d.ddim_sample(x, np.array([5, 3]), np.array([4, 3])), ValueError, "t_next < t"),
        (lambda: d.ddim_sample(x, 20, 2), ValueError, r"t: expected an integer in \[0, 19\]"),
        (lambda: d.ddim_sample(np.zeros((2, 4)), 5, 2), ValueError, "x_t: expected shape"),
        (lambda: d.ddim_sample(x, 5, 2, noise=np.zeros(3), eta=0.5), ValueError, "noise: expected shape"),
        (lambda: d.ddim_sample_loop((2, 3), 21, progress=False), ValueError, "sampling_timesteps"),
        (lambda: d.ddim_sample_loop((2, 3), 0, progress=False), ValueError, "sampling_timesteps"),
        (lambda: d.ddim_sample_loop((2, 3), 5, spacing="log", progress=False), ValueError, "spacing"),
        (lambda: d.ddim_sample_loop((2, 3), 5, eta=2, progress=False), ValueError, "eta"),
        (lambda: d.ddim_sample_loop((3, 3), 5, x_T=x, progress=False), ValueError, "x_T: shape"),
        (lambda: d.ddim_sample_loop((2, 3), 5, labels=np.zeros(3, int), progress=False), ValueError, "labels"),
        (lambda: d.ddim_reverse_loop(np.zeros((2, 5)), 5, progress=False), ValueError, "x0: expected shape"),
    ]
    for fn, err, msg in cases:
        with pytest.raises(err, match=msg):
            fn()
