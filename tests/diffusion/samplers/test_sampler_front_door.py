"""GaussianDiffusion.sample: argument checks, DDPM and DDIM bit for bit as before, every sampler's whole run
against its independent transcription (tests/sampler_formulas.py), guidance and its interval, model-call
counts, intermediates, dtypes, and the CuPy-like test backend."""
import numpy as np
import pytest

import sampler_formulas as F
from exact_models import GaussianMixture
from fakecupy import DeviceArray, xp
from minidiff.backend import to_host
from minidiff.diffusion import SAMPLERS, GaussianDiffusion, make_betas, model_evaluations, sampler_timesteps
from minidiff.models import MLP

NEW = ["euler", "heun", "euler_ancestral", "dpmpp_2m", "dpmpp_3m", "dpmpp_2m_sde"]
T = 50
BETAS = make_betas("cosine", T)
ABAR = np.cumprod(1 - BETAS)


class LabelledMixture(GaussianMixture):
    """Label k >= 1: component k-1 alone; label 0 (unconditioned) or no labels: the whole mixture."""

    def x0_hat(self, xs, s, labels=None):
        out = super().x0_hat(xs, s)
        if labels is None:
            return out
        labels = np.asarray(labels)
        v = self.std ** 2 + np.reshape(s, (-1, 1)) ** 2
        for k, mu in enumerate(self.mus):
            alone = mu + self.std ** 2 / v * (xs - mu)
            out = np.where((labels == k + 1)[:, None], alone, out)
        return out


def mixture(objective="eps", scale=1.0):
    return LabelledMixture(scale * np.array([[-0.6, 0.2], [0.5, -0.3]]), [0.3, 0.7], 0.3, ABAR, objective)


def diffusion(model, **kw):
    return GaussianDiffusion(model, betas=BETAS, objective=model.objective, dtype=np.float64, **kw)


# ---- arguments -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, name", [
    (dict(sampler="dpm"), "sampler"), (dict(sampler=None), "sampler"),
    (dict(steps=0), "steps"), (dict(steps=T + 1), "steps"), (dict(steps=2.5), "steps"), (dict(steps=True), "steps"),
    (dict(spacing="uniform"), "spacing"), (dict(sampler="heun", eta=0.5), "eta"),
    (dict(sampler="euler_ancestral", eta=1.5), "eta"), (dict(sampler="ddpm", steps=10), "steps"),
    (dict(sampler="ddpm", steps=None, spacing="karras"), "spacing"),
    (dict(guidance_interval=(5, 80)), "guidance_interval"),
    (dict(guidance_scale="2"), "guidance_scale"), (dict(return_intermediates=1), "return_intermediates"),
    (dict(x_T=np.zeros((3, 2))), "x_T"), (dict(labels=np.array([1, 2])), "labels"),
    (dict(labels=np.array([1.0, 2.0, 1.0, 2.0])), "labels"),
])
def test_bad_arguments_are_clear_errors(kwargs, name):
    model = mixture()
    d = diffusion(model)
    with pytest.raises((ValueError, TypeError), match=name):
        d.sample((4, 2), progress=False, **{"steps": 5, **kwargs})
    assert model.calls == []                                          # refused before any model call


# ---- DDPM and DDIM as they were --------------------------------------------------------------------
def test_ddpm_is_p_sample_loop():
    d = diffusion(mixture(), clip_denoised=True)
    np.testing.assert_array_equal(d.sample((6, 2), sampler="ddpm", rng=3, progress=False),
                                  d.p_sample_loop((6, 2), rng=3, progress=False))
    labels = np.array([1, 2, 0, 1, 2, 0])
    got = d.sample((6, 2), sampler="ddpm", rng=4, labels=labels, guidance_scale=2.0, guidance_interval=(5, 30),
                   return_intermediates=True, progress=False)
    want = d.p_sample_loop_all((6, 2), rng=4, labels=labels, guidance_scale=2.0, guidance_interval=(5, 30),
                               progress=False)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_ddim_is_ddim_sample_loop(spacing, eta):
    d = GaussianDiffusion(MLP(d_hid=8, num_timesteps=T, seed=0), T, schedule="cosine", data_shape=(2,))
    kw = dict(eta=eta, spacing=spacing, rng=5, progress=False)
    np.testing.assert_array_equal(d.sample((7, 2), sampler="ddim", steps=9, **kw),
                                  d.ddim_sample_loop((7, 2), sampling_timesteps=9, **kw))
    got = d.sample((7, 2), sampler="ddim", steps=9, return_intermediates=True, **kw)
    want = d.ddim_sample_loop((7, 2), sampling_timesteps=9, return_all=True, **kw)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


# ---- whole runs against the transcriptions ---------------------------------------------------------
@pytest.mark.parametrize("sampler", NEW + ["ddim"])
@pytest.mark.parametrize("objective, clip, scale", [("eps", False, 1.0), ("v", True, 2.0), ("x0", True, 2.0)])
@pytest.mark.parametrize("steps, spacing", [(4, "logsnr"), (17, "karras"), (8, "trailing")])
def test_whole_run_equals_its_transcription(sampler, objective, clip, scale, steps, spacing):
    """4 steps (3M: orders 1, 2, 2, 1), 17 (1, 2, 3, ..., 3, 1), trailing spacing ending above t = 0; scale 2
    puts the modes outside [-1, 1], so clipping acts."""
    model = mixture(objective, scale)
    d = diffusion(model, clip_denoised=clip)
    x_T = np.random.default_rng(6).standard_normal((16, 2))
    eta = 0.7 if sampler in ("euler_ancestral", "dpmpp_2m_sde", "ddim") else None
    got = d.sample(None, sampler=sampler, steps=steps, spacing=spacing, x_T=x_T, eta=eta, rng=7, progress=False)
    ts = sampler_timesteps(ABAR, steps, spacing)
    want = F.reference_run(sampler, model, objective, ABAR, ts, x_T, clip=clip, eta=eta,
                           rng=np.random.default_rng(7))
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11)
    if clip:
        assert np.abs(got).max() <= 1 + 1e-12


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_model_evaluations_are_counted_right(sampler):
    model = mixture()
    d = diffusion(model)
    steps = T if sampler == "ddpm" else 6
    d.sample((3, 2), sampler=sampler, steps=steps, rng=0, progress=False)
    assert len(model.calls) == model_evaluations(sampler, steps) == (11 if sampler == "heun" else steps)


@pytest.mark.parametrize("sampler", NEW + ["ddim", "ddpm"])
def test_guidance_and_its_interval(sampler):
    """Guided sampling equals sampling a model that mixes out_u + s (out_c - out_u) itself inside the
    interval (and returns out_c outside it); the doubled batch is run exactly at the steps inside."""
    model = mixture()
    labels = np.array([1, 2, 1, 2, 0])
    lo, hi = 10, 35

    class ByHand:
        objective = "eps"

        def __init__(self):
            self.calls = []

        def forward(self, x, t):
            self.calls.append(int(t[0]))
            cond = model.forward(x, t, labels)
            if not lo <= t[0] <= hi:
                return cond
            uncond = model.forward(x, t, np.zeros_like(labels))
            return uncond + 2.5 * (cond - uncond)

    x_T = np.random.default_rng(8).standard_normal((5, 2))
    kw = dict(progress=False, rng=9) if sampler == "ddpm" else dict(steps=12, x_T=x_T, rng=9, progress=False)
    shape = (5, 2) if sampler == "ddpm" else None
    got = diffusion(model).sample(shape, sampler=sampler, labels=labels, guidance_scale=2.5,
                                  guidance_interval=(lo, hi), **kw)
    guided_calls = list(model.calls)                                  # (batch, t) of the guided run
    by_hand = ByHand()
    want = diffusion(by_hand).sample(shape, sampler=sampler, **kw)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    inside = [t for t in by_hand.calls if lo <= t <= hi]
    assert 0 < len(inside) < len(by_hand.calls)
    assert [b for b, t in guided_calls if lo <= t <= hi] == [10] * len(inside)          # doubled batch
    assert [b for b, t in guided_calls if not lo <= t <= hi] == [5] * (len(by_hand.calls) - len(inside))


@pytest.mark.parametrize("sampler", NEW + ["ddim", "ddpm"])
def test_intermediates(sampler):
    d = diffusion(mixture())
    steps = T if sampler == "ddpm" else 7
    xs, x0_hats = d.sample((4, 2), sampler=sampler, steps=steps, rng=1, return_intermediates=True, progress=False)
    assert xs.shape == (steps + 1, 4, 2) and x0_hats.shape == (steps, 4, 2)
    np.testing.assert_array_equal(xs[-1], d.sample((4, 2), sampler=sampler, steps=steps, rng=1, progress=False))
    np.testing.assert_allclose(xs[-1], x0_hats[-1], rtol=1e-12)       # the last step lands on x0_hat


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_float32_stays_float32(sampler):
    d = GaussianDiffusion(MLP(d_hid=8, num_timesteps=T, seed=0), T, schedule="cosine", data_shape=(2,))
    x = d.sample((5, 2), sampler=sampler, steps=None if sampler == "ddpm" else 6, rng=2, progress=False)
    assert x.dtype == np.float32 and np.all(np.isfinite(x))


@pytest.mark.parametrize("sampler", NEW + ["ddim"])
def test_samplers_stay_on_the_device(sampler):
    """The CuPy-like backend refuses implicit device -> host copies: each sampler runs there and gives the
    NumPy run's samples."""
    def run(device):
        model = MLP(d_hid=8, num_timesteps=T, seed=0)
        d = GaussianDiffusion(model, T, schedule="cosine", data_shape=(2,))
        if device is not None:
            model.to(device)
            d.to(device)
        return d.sample((6, 2), sampler=sampler, steps=7, rng=3, progress=False, return_intermediates=True)

    host, dev = run(None), run(xp)
    assert isinstance(dev[0], DeviceArray) and isinstance(dev[1], DeviceArray)
    for a, b in zip(dev, host):
        np.testing.assert_allclose(to_host(a), b, rtol=1e-5, atol=1e-6)
