"""GaussianDiffusion (DDPM): buffers, q, posterior, parameterisations, p_sample, p_losses, CFG, checks.

Reference values are derived independently in scalar float64 from the betas.
"""
import math

import numpy as np
import pytest

from minidiff.diffusion import GaussianDiffusion, classifier_free_guidance, cosine_beta_schedule


class FixedModel:
    """Returns a fixed array whatever the input; records what it was called with."""

    def __init__(self, out):
        self.out, self.calls = out, []

    def forward(self, x, t, *labels):
        self.calls.append((x, t) + labels)
        return self.out.copy()

    def backward(self, d_out):
        return None


class OracleModel:
    """Knows the clean x0: returns the true eps, x0 or v for the given x_t, from the betas in float64."""

    def __init__(self, betas, x0, objective="eps"):
        self.abar, self.x0, self.objective = np.cumprod(1 - np.asarray(betas, np.float64)), x0, objective

    def forward(self, x, t):
        a = self.abar[t].reshape(-1, *([1] * (x.ndim - 1)))
        eps = (x - np.sqrt(a) * self.x0) / np.sqrt(1 - a)
        out = {"eps": eps, "x0": self.x0 + 0 * x, "v": np.sqrt(a) * eps - np.sqrt(1 - a) * self.x0}
        return out[self.objective].astype(x.dtype)

    def backward(self, d_out):
        return None


def make(T=20, model=None, **kw):
    kw.setdefault("dtype", np.float64)
    kw.setdefault("schedule", "cosine")       # linear needs T > 20 (betas scaled by 1000/T)
    return GaussianDiffusion(model or FixedModel(np.zeros((4, 3))), T, **kw)


# ---- buffers --------------------------------------------------------------------------
NAMES = ["betas", "alphas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
         "sqrt_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
         "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_buffers_exist_with_dtype(dtype):
    d = make(T=30, dtype=dtype)
    assert d.num_timesteps == 30 and d.xp is np
    for name in NAMES:
        buf = d.buffers[name]
        assert getattr(d, name) is buf and buf.dtype == dtype and buf.shape == (30,)
    abar = np.cumprod(1 - d._buffers64["betas"])
    np.testing.assert_allclose(d.alphas_cumprod, abar, rtol=1e-6 if dtype == np.float32 else 1e-14)
    assert d.alphas_cumprod_prev[0] == 1.0


def test_astype_and_to_recompute_from_float64():
    d = make(T=40, dtype=np.float32, schedule="linear")
    assert d.astype(np.float64) is d and d.betas.dtype == np.float64
    np.testing.assert_array_equal(d.betas, np.linspace(1e-4 * 25, 0.02 * 25, 40))
    assert d.to("cpu") is d and d.xp is np
    with pytest.raises(TypeError, match="dtype"):
        d.astype(np.int32)


def test_given_betas_and_validation():
    betas = cosine_beta_schedule(25)
    d = make(T=None, betas=betas)
    assert d.num_timesteps == 25
    np.testing.assert_array_equal(d.betas, betas)
    for bad in ([0.1, 1.0], [0.0, 0.1], [[0.1, 0.2]], []):
        with pytest.raises(ValueError, match="betas"):
            make(T=None, betas=np.array(bad))
    with pytest.raises(ValueError, match="num_timesteps"):
        make(T=None)


# ---- posterior ------------------------------------------------------------------------
def _posterior_by_completing_the_square(betas, t, x0, x_t):
    """q(x_{t-1} | x_t, x0) ~ q(x_t | x_{t-1}) q(x_{t-1} | x0): fit the log-density quadratic in y = x_{t-1}."""
    beta, abar_prev = betas[t], float(np.prod(1 - betas[:t]))
    def logp(y):
        return (-(x_t - math.sqrt(1 - beta) * y) ** 2 / (2 * beta)
                - (y - math.sqrt(abar_prev) * x0) ** 2 / (2 * (1 - abar_prev)))
    h = 0.5
    f0, fp, fm = logp(0.0), logp(h), logp(-h)
    a = (fp + fm - 2 * f0) / (2 * h * h)        # logp = a y^2 + b y + c, exact for a quadratic
    b = (fp - fm) / (2 * h)
    return -b / (2 * a), -1 / (2 * a)           # mean, variance


@pytest.mark.parametrize("t", [1, 2, 7, 24])
def test_posterior_coefficients_from_gaussian_product(t):
    betas = cosine_beta_schedule(25)
    d = make(T=None, betas=betas)
    c1, v1 = _posterior_by_completing_the_square(betas, t, x0=1.0, x_t=0.0)
    c2, v2 = _posterior_by_completing_the_square(betas, t, x0=0.0, x_t=1.0)
    assert d.posterior_mean_coef1[t] == pytest.approx(c1, rel=1e-7)
    assert d.posterior_mean_coef2[t] == pytest.approx(c2, rel=1e-7)
    assert d.posterior_variance[t] == pytest.approx(v1, rel=1e-7) and v1 == pytest.approx(v2)
    assert d.posterior_log_variance_clipped[t] == pytest.approx(math.log(v1), rel=1e-7)
    # q_posterior_mean_variance on arrays, with a per-sample t
    x0, x_t = np.array([[0.3, -1.0]]), np.array([[2.0, 0.5]])
    mean, var, log_var = d.q_posterior_mean_variance(x0, x_t, np.array([t]))
    np.testing.assert_allclose(mean, c1 * x0 + c2 * x_t, rtol=1e-7)
    assert var.shape == (1, 1) and var[0, 0] == pytest.approx(v1, rel=1e-7)


def test_posterior_at_t0_is_the_data():
    d = make(T=20)
    assert d.posterior_variance[0] == 0.0
    assert d.posterior_mean_coef1[0] == pytest.approx(1.0) and d.posterior_mean_coef2[0] == 0.0
    assert d.posterior_log_variance_clipped[0] == pytest.approx(math.log(d.posterior_variance[1]))
    np.testing.assert_allclose(d.posterior_log_variance_clipped[1:], np.log(d.posterior_variance[1:]))


# ---- forward process and parameterisations ----------------------------------------------
@pytest.mark.parametrize("t", [0, 5, 39])
def test_q_sample_moments(t):
    d, N = make(T=40, schedule="linear"), 200_000
    x0 = np.full((N, 1), 0.7)
    noise = np.random.default_rng(t).standard_normal((N, 1))
    x_t = d.q_sample(x0, t, noise)
    abar = float(np.prod(1 - (np.linspace(1e-4, 0.02, 40) * 25)[:t + 1]))    # linear schedule, T = 40
    mean_tol = 5 * math.sqrt((1 - abar) / N)
    var_tol = 5 * math.sqrt(2 / N) * (1 - abar)
    assert abs(x_t.mean() - math.sqrt(abar) * 0.7) < mean_tol
    assert abs(x_t.var() - (1 - abar)) < var_tol


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_predict_start_from_noise_inverts_q_sample(dtype, tol):
    d = make(T=50, dtype=dtype)
    rng = np.random.default_rng(0)
    x0, eps = rng.standard_normal((6, 2, 3)).astype(dtype), rng.standard_normal((6, 2, 3)).astype(dtype)
    t = np.array([0, 1, 10, 25, 48, 49])
    x_t = d.q_sample(x0, t, eps)
    assert x_t.dtype == dtype
    np.testing.assert_allclose(d.predict_start_from_noise(x_t, t, eps), x0, atol=tol * 100)
    t1 = t[1:]   # at t = 0 recovering eps divides by sqrt(beta_0): check elsewhere
    np.testing.assert_allclose(d.predict_noise_from_start(x_t[1:], t1, x0[1:]), eps[1:], atol=tol * 1000)


def test_v_round_trip():
    d = make(T=50)
    rng = np.random.default_rng(1)
    x0, eps = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    t = np.array([0, 3, 17, 30, 49])
    x_t, v = d.q_sample(x0, t, eps), d.predict_v(x0, t, eps)
    abar = np.cumprod(1 - d._buffers64["betas"])[t][:, None]
    np.testing.assert_allclose(v, np.sqrt(abar) * eps - np.sqrt(1 - abar) * x0, atol=1e-12)
    np.testing.assert_allclose(d.predict_start_from_v(x_t, t, v), x0, atol=1e-12)


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
def test_model_predictions_every_objective(objective):
    rng = np.random.default_rng(2)
    x0, eps = rng.uniform(-0.9, 0.9, (4, 3)), rng.standard_normal((4, 3))
    d = make(T=30)
    d.model = OracleModel(d._buffers64["betas"], x0, objective)
    d.objective = objective
    t = np.array([2, 9, 20, 29])
    x_t = d.q_sample(x0, t, eps)
    for clip in (False, True):
        eps_hat, x0_hat = d.model_predictions(x_t, t, clip_denoised=clip)
        np.testing.assert_allclose(x0_hat, x0, atol=1e-10)
        np.testing.assert_allclose(eps_hat, eps, atol=1e-8)


def test_clipping_rederives_eps():
    d = make(T=30, model=FixedModel(np.full((2, 3), 3.0)), objective="x0")
    x_t, t = np.ones((2, 3)) * 0.5, 12
    eps_hat, x0_hat = d.model_predictions(x_t, t)                 # clip on by default
    assert np.all(x0_hat == 1.0)
    a = np.prod(1 - d._buffers64["betas"][:t + 1])
    np.testing.assert_allclose(math.sqrt(a) * x0_hat + math.sqrt(1 - a) * eps_hat, x_t, atol=1e-12)
    _, x0_raw = d.model_predictions(x_t, t, clip_denoised=False)
    assert np.all(x0_raw == 3.0)


# ---- reverse step -----------------------------------------------------------------------
def test_p_sample_with_oracle_gives_posterior_mean_and_sigma():
    rng = np.random.default_rng(3)
    x0, eps = rng.uniform(-0.9, 0.9, (5, 2)), rng.standard_normal((5, 2))
    d = make(T=40)
    d.model = OracleModel(d._buffers64["betas"], x0)
    t = np.array([0, 1, 13, 0, 39])
    x_t = d.q_sample(x0, t, eps)
    mean_ref, _, log_var = d.q_posterior_mean_variance(x0, x_t, t)
    x_prev, x0_hat = d.p_sample(x_t, t, noise=np.zeros_like(x_t))
    np.testing.assert_allclose(x0_hat, x0, atol=1e-10)
    np.testing.assert_allclose(x_prev, mean_ref, atol=1e-10)
    z = rng.standard_normal((5, 2))
    x_noisy, _ = d.p_sample(x_t, t, noise=z)
    sigma = np.where(t[:, None] == 0, 0.0, np.exp(0.5 * log_var))         # no noise at t = 0
    np.testing.assert_allclose(x_noisy - x_prev, sigma * z, atol=1e-10)
    assert np.all(x_noisy[[0, 3]] == x_prev[[0, 3]])


def test_fixed_large_variance():
    d = make(T=20, variance="fixed_large")
    post = d.posterior_variance
    for t in (0, 1, 7, 19):
        _, var, log_var, _ = d.p_mean_variance(np.zeros((4, 3)), t)
        expected = post[1] if t == 0 else d.betas[t]
        assert var.ravel()[0] == pytest.approx(expected) and log_var.ravel()[0] == pytest.approx(math.log(expected))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_p_sample_loop_lands_on_oracle_x0(dtype):
    x0 = np.array([[0.5, -0.25], [0.0, 0.75], [-1.0, 1.0]])
    d = make(T=25, dtype=dtype)
    d.model = OracleModel(d._buffers64["betas"], x0)
    out = d.p_sample_loop((3, 2), rng=0, progress=False)
    assert out.dtype == dtype and out.shape == (3, 2)
    np.testing.assert_allclose(out, x0, atol=1e-4 if dtype == np.float32 else 1e-10)
    xs, x0_hats = d.p_sample_loop_all((3, 2), rng=0, progress=False)
    assert xs.shape == (26, 3, 2) and x0_hats.shape == (25, 3, 2)
    np.testing.assert_array_equal(xs[-1], out)                 # same rng -> same path
    assert not np.allclose(xs[0], xs[-1])


def test_p_sample_loop_model_sees_int_batch_t():
    model = FixedModel(np.zeros((4, 3)))
    make(T=6, model=model).p_sample_loop((4, 3), rng=0, progress=False)
    ts = [call[1] for call in model.calls]
    assert len(ts) == 6 and all(t.shape == (4,) and t.dtype.kind == "i" for t in ts)
    assert [int(t[0]) for t in ts] == [5, 4, 3, 2, 1, 0]
    assert all(len(call) == 2 for call in model.calls)         # no labels passed


# ---- loss -----------------------------------------------------------------------------
def _loss_value(d, out, x0, t, noise, loss):
    d.model = FixedModel(out)
    value, _ = d.p_losses(x0, t=t, noise=noise, loss=loss)
    return float(value)


@pytest.mark.parametrize("loss", ["mse", "mae"])
@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
def test_p_losses_gradient_matches_finite_difference(loss, objective):
    rng = np.random.default_rng(4)
    x0, noise, out = (rng.standard_normal((3, 2, 2)) for _ in range(3))
    t = np.array([0, 4, 9])
    d = make(T=10, objective=objective)
    d.model = FixedModel(out)
    value, d_out = d.p_losses(x0, t=t, noise=noise, loss=loss)
    assert isinstance(value, np.ndarray) and value.shape == () and d_out.shape == out.shape
    target = {"eps": noise, "x0": x0, "v": d.predict_v(x0, t, noise)}[objective]
    diff = out - target
    assert float(value) == pytest.approx(np.mean(diff**2) if loss == "mse" else np.mean(np.abs(diff)))
    h, num = 1e-6, np.zeros_like(out)
    for i in np.ndindex(out.shape):
        op, om = out.copy(), out.copy()
        op[i] += h
        om[i] -= h
        num[i] = (_loss_value(d, op, x0, t, noise, loss) - _loss_value(d, om, x0, t, noise, loss)) / (2 * h)
    np.testing.assert_allclose(d_out, num, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
@pytest.mark.parametrize("loss", ["mse", "mae"])
def test_min_snr_weighted_loss_and_gradient(objective, loss):
    rng = np.random.default_rng(5)
    x0, noise, out = (rng.standard_normal((4, 3)) for _ in range(3))
    t = np.array([0, 3, 11, 19])
    d = make(T=20, objective=objective, min_snr_gamma=5.0)
    # the weight, derived here from the x0-space weight min(SNR, 5): a target eps
    # (x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)) scales errors by 1/SNR, a target v by 1/(SNR + 1)
    abar = np.cumprod(1.0 - d._buffers64["betas"])
    weight = []
    for k in t:
        snr = abar[k] / (1.0 - abar[k])
        weight.append(min(snr, 5.0) * {"eps": 1.0 / snr, "x0": 1.0, "v": 1.0 / (snr + 1.0)}[objective])
    weight = np.array(weight)[:, None]
    assert weight.min() < 0.99 or objective != "eps"          # the weighting changes something
    d.model = FixedModel(out)
    value, d_out = d.p_losses(x0, t=t, noise=noise, loss=loss)
    target = {"eps": noise, "x0": x0, "v": d.predict_v(x0, t, noise)}[objective]
    diff = out - target
    want = np.mean(weight * (diff**2 if loss == "mse" else np.abs(diff)))
    assert float(value) == pytest.approx(want, rel=1e-12)
    h, num = 1e-6, np.zeros_like(out)
    for i in np.ndindex(out.shape):
        op, om = out.copy(), out.copy()
        op[i] += h
        om[i] -= h
        num[i] = (_loss_value(d, op, x0, t, noise, loss) - _loss_value(d, om, x0, t, noise, loss)) / (2 * h)
    np.testing.assert_allclose(d_out, num, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("gamma", [0, -1.0, "5", float("nan")])
def test_min_snr_gamma_must_be_positive(gamma):
    with pytest.raises(ValueError, match="min_snr_gamma"):
        make(min_snr_gamma=gamma)


def test_p_losses_draws_t_and_noise_from_rng():
    model = FixedModel(np.zeros((64, 2), np.float32))
    d = GaussianDiffusion(model, 40)
    x0 = np.ones((64, 2), np.float32)
    l1, g1 = d.p_losses(x0, rng=7)
    l2, g2 = d.p_losses(x0, rng=np.random.default_rng(7))
    assert l1 == l2 and np.array_equal(g1, g2) and g1.dtype == np.float32
    t = model.calls[0][1]
    assert t.shape == (64,) and t.min() >= 0 and t.max() <= 39 and len(np.unique(t)) > 3
    assert not np.array_equal(d.p_losses(x0, rng=8)[1], g1)


# ---- classifier-free guidance -----------------------------------------------------------
class LabelModel:
    """eps = x + 10 * label (+ 0 for label 0): conditioned and unconditioned outputs differ."""

    def __init__(self):
        self.calls = []

    def forward(self, x, t, labels=None):
        self.calls.append((x.shape[0], None if labels is None else labels.copy()))
        return x + (0 if labels is None else 10.0 * labels[:, None])

    def backward(self, d_out):
        return None


@pytest.mark.parametrize("s", [0.0, 1.0, 3.0])
def test_guidance_doubles_batch_and_combines(s):
    model = LabelModel()
    d = make(T=10, model=model, clip_denoised=False)
    x, labels = np.ones((3, 2)), np.array([1, 2, 3])
    eps_hat, _ = d.model_predictions(x, 4, labels=labels, guidance_scale=s)
    if s == 1.0:
        assert model.calls == [(3, model.calls[0][1])] and np.array_equal(model.calls[0][1], labels)
    else:
        assert len(model.calls) == 1 and model.calls[0][0] == 6
        np.testing.assert_array_equal(model.calls[0][1], [1, 2, 3, 0, 0, 0])
    eps_c, eps_u = x + 10.0 * labels[:, None], x
    np.testing.assert_allclose(eps_hat, eps_u + s * (eps_c - eps_u), atol=1e-12)
    np.testing.assert_allclose(classifier_free_guidance(eps_c, eps_u, s), eps_u + s * (eps_c - eps_u))


def test_labels_none_calls_model_without_labels():
    model = LabelModel()
    make(T=10, model=model).model_predictions(np.ones((3, 2)), 4)
    assert model.calls == [(3, None)]
    with pytest.raises(ValueError, match="without labels"):       # a guidance scale would be ignored
        make(T=10, model=model).model_predictions(np.ones((3, 2)), 4, guidance_scale=2.0)
    assert model.calls == [(3, None)]                               # refused before the model ran


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_guidance_interval_guides_only_inside_it(sampler):
    """With interval (2, 5): a doubled batch exactly at the steps 2..5, one pass
    elsewhere, and the same samples as stepping by hand with s chosen per step."""
    T, s, lo, hi = 10, 3.0, 2, 5
    labels, shape = np.array([1, 2, 3]), (3, 2)
    model = LabelModel()
    d = make(T=T, model=model, clip_denoised=False)
    if sampler == "ddpm":
        got = d.p_sample_loop(shape, labels=labels, guidance_scale=s, rng=0, progress=False,
                              guidance_interval=(lo, hi))
        steps = list(range(T - 1, -1, -1))
    else:
        got = d.ddim_sample_loop(shape, sampling_timesteps=T, eta=0.5, labels=labels, guidance_scale=s,
                                 rng=0, progress=False, guidance_interval=(lo, hi))
        steps = list(range(T - 1, -1, -1))
    batch_sizes = [n for n, _ in model.calls]
    assert batch_sizes == [6 if lo <= t <= hi else 3 for t in steps]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    for t in steps:                                     # the same loop by hand, one step at a time
        scale = s if lo <= t <= hi else 1.0
        if sampler == "ddpm":
            noise = rng.standard_normal(shape) if t > 0 else None
            x = d.p_sample(x, t, noise=noise, labels=labels, guidance_scale=scale)[0]
        else:
            x = d.ddim_sample(x, t, t - 1, noise=rng.standard_normal(shape), eta=0.5, labels=labels,
                              guidance_scale=scale)[0]
    np.testing.assert_allclose(got, x, rtol=1e-12, atol=1e-12)
    full = d.p_sample_loop(shape, labels=labels, guidance_scale=s, rng=0, progress=False) \
        if sampler == "ddpm" else d.ddim_sample_loop(shape, sampling_timesteps=T, eta=0.5, labels=labels,
                                                     guidance_scale=s, rng=0, progress=False)
    assert not np.allclose(full, got)                   # the interval changed the samples


@pytest.mark.parametrize("interval", [(5, 2), (-1, 3), (0, 10), (1,), "ab", 3])
def test_guidance_interval_rejects_bad_values(interval):
    d = make(T=10, model=LabelModel(), data_shape=(2,))
    with pytest.raises(ValueError, match="guidance_interval"):
        d.p_sample_loop((1, 2), labels=np.array([1]), guidance_scale=2.0, progress=False, guidance_interval=interval)
    with pytest.raises(ValueError, match="guidance_interval"):
        d.ddim_sample_loop((1, 2), sampling_timesteps=5, labels=np.array([1]), guidance_scale=2.0,
                           progress=False, guidance_interval=interval)


# ---- bad input ------------------------------------------------------------------------
def test_bad_inputs_raise_naming_the_argument():
    d = make(T=10, data_shape=(3,))
    x = np.zeros((4, 3))
    cases = [
        (lambda: d.q_sample(np.zeros((4, 2)), 0, np.zeros((4, 2))), ValueError, "x0: expected shape"),
        (lambda: d.q_sample(x, 10, x), ValueError, r"t: expected an integer in \[0, 9\]"),
        (lambda: d.q_sample(x, -1, x), ValueError, "t: expected an integer"),
        (lambda: d.q_sample(x, np.array([0, 1, 2, 10]), x), ValueError, "t: values must lie"),
        (lambda: d.q_sample(x, np.array([0, 1]), x), ValueError, r"t: expected shape \(4,\)"),
        (lambda: d.q_sample(x, 1.5, x), TypeError, "t: expected an int"),
        (lambda: d.q_sample(x, np.zeros(4), x), TypeError, "t: expected integer"),
        (lambda: d.q_sample(x, 1, np.zeros((4, 2))), ValueError, "noise: expected shape"),
        (lambda: d.p_losses(x, loss="huber"), ValueError, "loss: expected one of"),
        (lambda: d.p_losses(np.full((4, 3), np.nan)), ValueError, "x0: contains NaN"),
        (lambda: d.p_losses(np.full((4, 3), np.inf)), ValueError, "x0: contains NaN or inf"),
        (lambda: d.p_losses(x, labels=np.zeros((4, 1), int)), ValueError, r"labels: expected shape \(4,\)"),
        (lambda: d.p_losses(x, labels=np.zeros(4)), TypeError, "labels: expected integer"),
        (lambda: d.p_sample(x, 0, labels=np.zeros(3, int)), ValueError, "labels"),
        (lambda: d.p_sample(x, 0, guidance_scale="2"), TypeError, "guidance_scale"),
        (lambda: d.p_sample_loop((4, 2), progress=False), ValueError, "shape: expected"),
        (lambda: d.p_sample(x.astype(int), 0), TypeError, "x_t: expected a float array"),
        (lambda: make(objective="score"), ValueError, "objective: expected one of"),
        (lambda: make(variance="learned"), ValueError, "variance: expected one of"),
        (lambda: make(schedule="quadratic"), ValueError, "schedule: expected one of"),
        (lambda: make(device="tpu"), ValueError, "device"),
        (lambda: make(T=10, schedule="linear"), ValueError, "T > 20"),
        (lambda: GaussianDiffusion(object(), 10), TypeError, "model"),
    ]
    for fn, err, msg in cases:
        with pytest.raises(err, match=msg):
            fn()


def test_model_output_shape_checked():
    d = make(T=10, model=FixedModel(np.zeros((4, 2))))
    with pytest.raises(ValueError, match="model output"):
        d.p_losses(np.zeros((4, 3)))
