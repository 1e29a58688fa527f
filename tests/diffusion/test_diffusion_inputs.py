"""GaussianDiffusion refuses bad input before any work, with an error that names the argument,
the value and what was expected: empty batches, float16 inputs, noise of another dtype, a model
built for fewer timesteps, labels for an unconditional model, a clip flag or rng of the wrong
kind. A batch of one works like any other."""
import numpy as np
import pytest

from minidiff.diffusion import (GaussianDiffusion, classifier_free_guidance, cosine_beta_schedule,
                                linear_beta_schedule, sigmoid_beta_schedule)
from minidiff.models import MLP, UNet


class CountingModel:
    """eps_hat = 0.5 x; counts its calls (a refused input must not reach it)."""

    def __init__(self, num_timesteps=None, num_classes="unknown"):
        self.calls = 0
        if num_timesteps is not None:
            self.num_timesteps = num_timesteps
        if num_classes != "unknown":
            self.num_classes = num_classes

    def forward(self, x, t, labels=None):
        self.calls += 1
        return 0.5 * x


def _diffusion(model=None, T=10, **kw):
    return GaussianDiffusion(model or CountingModel(), T, schedule="cosine", **kw)


def _every_entry_point(d, x, **kw):
    """{name: call} of every public method that takes a batch x (B, ...)."""
    z = np.zeros_like(x)
    return {
        "q_sample": lambda: d.q_sample(x, 1, z),
        "q_posterior_mean_variance": lambda: d.q_posterior_mean_variance(z, x, 1),
        "predict_start_from_noise": lambda: d.predict_start_from_noise(x, 1, z),
        "predict_noise_from_start": lambda: d.predict_noise_from_start(x, 1, z),
        "predict_start_from_v": lambda: d.predict_start_from_v(x, 1, z),
        "predict_v": lambda: d.predict_v(x, 1, z),
        "model_predictions": lambda: d.model_predictions(x, 1, **kw),
        "p_mean_variance": lambda: d.p_mean_variance(x, 1, **kw),
        "p_sample": lambda: d.p_sample(x, 1, **kw),
        "ddim_sample": lambda: d.ddim_sample(x, 3, 1, **kw),
        "ddim_sample_loop": lambda: d.ddim_sample_loop(None, 3, x_T=x, progress=False, **kw),
        "ddim_reverse_loop": lambda: d.ddim_reverse_loop(x, 3, progress=False, **kw),
        "p_losses": lambda: d.p_losses(x, **kw),
    }


@pytest.mark.parametrize("name", sorted(_every_entry_point(_diffusion(), np.zeros((1, 2)))))
def test_empty_batch_is_refused_by_name(name):
    model = CountingModel()
    d = _diffusion(model)
    call = _every_entry_point(d, np.zeros((0, 2), np.float32))[name]
    with pytest.raises(ValueError, match=r"(x_t|x0|x_T): expected a batch of B >= 1 samples, got an empty batch "
                                         r"\(0, 2\)"):
        call()
    assert model.calls == 0


@pytest.mark.parametrize("shape", [(0, 2), (0,)])
def test_empty_shape_and_empty_t_are_refused(shape):
    d = _diffusion()
    for loop in (d.p_sample_loop, d.p_sample_loop_all, lambda s, **k: d.ddim_sample_loop(s, 3, **k)):
        with pytest.raises(ValueError, match=r"shape: expected a tuple of positive ints"):
            loop(shape, progress=False)


@pytest.mark.parametrize("name", sorted(_every_entry_point(_diffusion(), np.zeros((1, 2)))))
@pytest.mark.parametrize("dtype", [np.float16, np.longdouble])
def test_other_float_dtypes_are_refused_by_name(name, dtype):
    """float16 used to be blamed on the internal eps_hat after the model had run."""
    model = CountingModel()
    call = _every_entry_point(_diffusion(model), np.zeros((2, 2), dtype))[name]
    with pytest.raises(TypeError, match=rf"(x_t|x0|x_T): expected a float array \(float32 or float64\), got "
                                        rf"dtype {np.dtype(dtype)}"):
        call()
    assert model.calls == 0


def test_noise_of_another_dtype_is_refused_by_name():
    """The fused step needs noise in x_t's dtype; the error used to name the kernel's `z`."""
    model = CountingModel()
    d = _diffusion(model)
    x = np.zeros((2, 2), np.float32)
    for call in (lambda: d.p_sample(x, 3, noise=np.zeros((2, 2))),
                 lambda: d.ddim_sample(x, 3, 1, noise=np.zeros((2, 2)), eta=0.5)):
        with pytest.raises(TypeError, match=r"noise: expected dtype float32 \(x_t's\), got float64"):
            call()
    with pytest.raises(TypeError, match="noise: expected a float array"):
        d.p_sample(x, 3, noise=np.zeros((2, 2), int))
    assert model.calls == 0


def test_model_output_of_another_float_dtype_is_used_in_x_t_dtype():
    """A float64 model output for a float32 x_t: the step runs in x_t's dtype, not refused as `eps_hat`."""

    class Float64Model(CountingModel):
        def forward(self, x, t, labels=None):
            return (0.5 * x).astype(np.float64)

    d = _diffusion(Float64Model())
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    x_prev, x0 = d.p_sample(x, 3, noise=np.zeros_like(x))
    want, _ = _diffusion(CountingModel()).p_sample(x, 3, noise=np.zeros_like(x))
    assert x_prev.dtype == x0.dtype == np.float32
    np.testing.assert_array_equal(x_prev, want)


@pytest.mark.parametrize("model", [MLP(2, 8, 10), UNet(1, 8, 10, channel_multipliers=(1,), groups=4),
                                   CountingModel(num_timesteps=10)])
def test_model_built_for_fewer_timesteps_is_refused(model):
    with pytest.raises(ValueError, match=r"model: built for num_timesteps=10, but the diffusion has T = 20"):
        GaussianDiffusion(model, 20, schedule="cosine")
    assert GaussianDiffusion(model, 10, schedule="cosine").num_timesteps == 10     # equal T is fine
    assert GaussianDiffusion(model, 5, schedule="cosine").num_timesteps == 5       # a longer table too


@pytest.mark.parametrize("model, shape", [(UNet(1, 8, 10, channel_multipliers=(1,), groups=4), (3, 1, 4, 4)),
                                          (CountingModel(num_classes=None), (3, 2))])
def test_labels_for_an_unconditional_model_are_refused(model, shape):
    """A model that declares num_classes=None gets no labels: refused before the first step
    (the U-Net used to refuse them only inside its forward, after the noise was drawn)."""
    d = _diffusion(model)
    x, labels = np.zeros(shape, np.float32), np.array([1, 2, 3])
    calls = [lambda: d.p_sample(x, 3, labels=labels, guidance_scale=2.0),
             lambda: d.ddim_sample(x, 3, 1, labels=labels),
             lambda: d.p_sample_loop(shape, labels=labels, guidance_scale=2.0, progress=False),
             lambda: d.ddim_sample_loop(shape, 3, labels=labels, progress=False),
             lambda: d.model_predictions(x, 3, labels=labels),
             lambda: d.p_losses(x, labels=labels)]
    for call in calls:
        with pytest.raises(ValueError, match=r"labels: given, but the model is unconditional \(num_classes=None\)"):
            call()


@pytest.mark.parametrize("clip", ["no", 1, 0.0, np.array(True)])
def test_clip_denoised_must_be_a_bool(clip):
    model = CountingModel()
    d = _diffusion(model)
    x = np.zeros((2, 2), np.float32)
    for call in (lambda: d.p_sample(x, 3, clip_denoised=clip), lambda: d.ddim_sample(x, 3, 1, clip_denoised=clip),
                 lambda: d.p_sample_loop((2, 2), clip_denoised=clip, progress=False),
                 lambda: d.ddim_sample_loop((2, 2), 3, clip_denoised=clip, progress=False),
                 lambda: _diffusion(clip_denoised=clip)):
        with pytest.raises(TypeError, match=r"clip_denoised: expected True.*, got"):
            call()
    assert model.calls == 0


@pytest.mark.parametrize("rng, error", [("a", TypeError), (1.5, TypeError), (True, TypeError), (-1, ValueError)])
def test_rng_of_the_wrong_kind_is_refused_by_name(rng, error):
    model = CountingModel()
    d = _diffusion(model)
    x = np.zeros((2, 2), np.float32)
    for call in (lambda: d.p_sample(x, 3, rng=rng), lambda: d.p_sample_loop((2, 2), rng=rng, progress=False),
                 lambda: d.ddim_sample_loop((2, 2), 3, eta=0.5, rng=rng, progress=False),
                 lambda: d.ddim_sample(x, 3, 1, eta=0.5, rng=rng), lambda: d.p_losses(x, rng=rng)):
        with pytest.raises(error, match=r"rng: expected None, a seed \(an int >= 0\) or a "
                                            r"numpy.random.Generator, got"):
            call()
    assert model.calls == 0


def test_batch_of_one_is_one_row_of_a_larger_batch():
    """B = 1 through every sampler gives row 0 of the same call on a batch of 3 (the step is per sample)."""
    d = _diffusion(MLP(2, 8, 10, seed=1), dtype=np.float64)
    d.model.astype(np.float64)
    rng = np.random.default_rng(2)
    x, z = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    pairs = [(lambda x, z: d.p_sample(x, 4, noise=z)), (lambda x, z: d.ddim_sample(x, 4, 1, noise=z, eta=0.5)),
             (lambda x, z: d.ddim_sample_loop(None, 4, x_T=x, progress=False)),
             (lambda x, z: d.ddim_reverse_loop(x, 4, progress=False)),
             (lambda x, z: d.q_sample(x, 4, z))]
    for fn in pairs:
        one, three = fn(x[:1], z[:1]), fn(x, z)
        for a, b in zip(one if isinstance(one, tuple) else (one,), three if isinstance(three, tuple) else (three,)):
            assert a.shape == (1, 2)
            np.testing.assert_allclose(a, b[:1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("call, error, message", [
    (lambda: linear_beta_schedule("a"), TypeError, r"num_timesteps: expected a positive integer, got 'a'"),
    (lambda: cosine_beta_schedule(None), TypeError, r"num_timesteps: expected a positive integer, got None"),
    (lambda: cosine_beta_schedule(10, s=-0.5), ValueError, r"s: expected a number >= 0, got -0.5"),
    (lambda: sigmoid_beta_schedule(10, tau=0), ValueError, r"tau: expected a number > 0, got 0"),
    (lambda: sigmoid_beta_schedule(10, start=3, end=3), ValueError, r"start, end: expected start < end, got 3, 3"),
    (lambda: classifier_free_guidance(np.zeros((2, 3)), np.zeros((3, 3)), 2.0), ValueError,
     r"out_uncond: expected shape \(2, 3\) like out_cond, got \(3, 3\)"),
    (lambda: classifier_free_guidance(np.zeros((2, 3)), np.zeros((2, 3)), "2"), TypeError, "guidance_scale"),
    (lambda: _diffusion(data_shape=(0,)), ValueError, r"data_shape: expected positive ints, got \(0,\)"),
    (lambda: _diffusion(data_shape=(2, -1)), ValueError, r"data_shape: expected positive ints, got \(2, -1\)"),
    (lambda: _diffusion(data_shape="ab"), ValueError, r"data_shape: expected positive ints, got 'ab'"),
])
def test_schedules_guidance_and_constructor_checks(call, error, message):
    with pytest.raises(error, match=message):
        call()
