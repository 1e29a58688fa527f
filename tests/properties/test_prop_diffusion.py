"""Properties of GaussianDiffusion over drawn cases: any sample shape, float32 or float64, any
memory layout, batch sizes 0 to 4, any valid timesteps (an int or one per sample) and sampler
arguments (eta, steps, spacing, clipping, objective, variance). Each result equals the same call
on C-contiguous float64 inputs in a float64 diffusion, to the dtype's rounding; an empty batch is
a ValueError naming the input."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import DTYPES, arrays, close, sample_shapes
from minidiff.diffusion import SPACINGS, GaussianDiffusion
from minidiff.kernels import reference_mode


class LinearEps:
    """out = 0.7 x + 0.01 t, in x's dtype: a smooth model whose float32 run tracks its float64 run."""

    def forward(self, x, t, labels=None):
        return (0.7 * x + 0.01 * t.reshape((-1,) + (1,) * (x.ndim - 1))).astype(x.dtype)


OBJECTIVES = ("eps", "x0", "v")


@st.composite
def cases(draw, max_batch=4, objective="eps"):
    """(diffusion in dtype, the same in float64, x (layout, dtype), x as C float64, noise pair, B, dtype)."""
    T = draw(st.integers(2, 30))
    kw = dict(schedule=draw(st.sampled_from(["cosine", "sigmoid"])), objective=objective,
              variance=draw(st.sampled_from(["fixed_small", "fixed_large"])), clip_denoised=draw(st.booleans()))
    dtype = draw(DTYPES)
    B = draw(st.integers(0, max_batch))
    shape = (B,) + draw(sample_shapes())
    x, x64 = draw(arrays(shape, dtype, scale=1.5))
    noise, noise64 = draw(arrays(shape, dtype))
    d = GaussianDiffusion(LinearEps(), T, dtype=dtype, **kw)
    d64 = GaussianDiffusion(LinearEps(), T, dtype=np.float64, **kw)
    return d, d64, x, x64, noise, noise64, B, dtype


def with_objective(d, objective):
    """The same diffusion with another objective (the fused steps run for eps and an int t only)."""
    return GaussianDiffusion(d.model, betas=d._buffers64["betas"], objective=objective, variance=d.variance,
                             clip_denoised=d.clip_denoised, dtype=d.dtype)


def timesteps(draw, T, B, low=0):
    """An int in [low, T-1] and a (B,) int array of them: both paths of each step."""
    return (draw(st.integers(low, T - 1)),
            np.array(draw(st.lists(st.integers(low, T - 1), min_size=B, max_size=B)), dtype=np.int64))


def _check(results, want, dtype, factor, what):
    results = results if isinstance(results, tuple) else (results,)
    want = want if isinstance(want, tuple) else (want,)
    for k, (g, w) in enumerate(zip(results, want)):
        close(g, np.asarray(w), dtype, factor, f"{what} output {k}")


def _empty_refused(call):
    with pytest.raises(ValueError, match=r"empty batch"):
        call()


@given(st.data())
def test_forward_process_and_parameterisations(data):
    d, d64, x, x64, z, z64, B, dtype = data.draw(cases())
    t = data.draw(st.sampled_from(timesteps(data.draw, d.num_timesteps, B)))
    calls = {"q_sample": lambda d, x, z: d.q_sample(x, t, z),
             "q_posterior_mean_variance": lambda d, x, z: d.q_posterior_mean_variance(z, x, t)[0],
             "predict_start_from_noise": lambda d, x, z: d.predict_start_from_noise(x, t, z),
             "predict_noise_from_start": lambda d, x, z: d.predict_noise_from_start(x, t, z),
             "predict_start_from_v": lambda d, x, z: d.predict_start_from_v(x, t, z),
             "predict_v": lambda d, x, z: d.predict_v(x, t, z)}
    for name, call in calls.items():
        if B == 0:
            _empty_refused(lambda: call(d, x, z))
        else:
            _check(call(d, x, z), call(d64, x64, z64), dtype, 1, name)


@pytest.mark.parametrize("reference", [True, False])
@given(data=st.data())
def test_p_sample(data, reference):
    d, d64, x, x64, z, z64, B, dtype = data.draw(cases())
    with reference_mode(reference):
        if B == 0:
            return _empty_refused(lambda: d.p_sample(x, 1, noise=z))
        for objective in OBJECTIVES:
            do, do64 = with_objective(d, objective), with_objective(d64, objective)
            for t in timesteps(data.draw, d.num_timesteps, B):
                _check(do.p_sample(x, t, noise=z), do64.p_sample(x64, t, noise=z64), dtype, 1,
                       f"p_sample {objective} t={t}")


@pytest.mark.parametrize("reference", [True, False])
@given(data=st.data())
def test_ddim_sample(data, reference):
    d, d64, x, x64, z, z64, B, dtype = data.draw(cases())
    T = d.num_timesteps
    t = data.draw(st.integers(0, T - 1))
    t_next = data.draw(st.integers(-1, t - 1))
    eta = data.draw(st.floats(0, 1))
    with reference_mode(reference):
        if B == 0:
            return _empty_refused(lambda: d.ddim_sample(x, t, t_next, noise=z, eta=eta))
        for objective in OBJECTIVES:
            do, do64 = with_objective(d, objective), with_objective(d64, objective)
            for ts in ((t, t_next), (np.full(B, t), np.full(B, t_next))):
                _check(do.ddim_sample(x, *ts, noise=z, eta=eta), do64.ddim_sample(x64, *ts, noise=z64, eta=eta),
                       dtype, 1, f"ddim_sample {objective} t={t} t_next={t_next} eta={eta}")


@given(st.data())
def test_ddim_loops(data):
    d, d64, x, x64, _, _, B, dtype = data.draw(cases(max_batch=3))
    steps = data.draw(st.integers(1, d.num_timesteps))
    spacing = data.draw(st.sampled_from(SPACINGS))
    eta = data.draw(st.sampled_from([0.0, 0.5, 1.0]))
    if eta > 0 and dtype == np.float32:      # float32 noise is another random stream: compare float64 runs
        d, x = d64, x.astype(np.float64)
    run = dict(sampling_timesteps=steps, spacing=spacing, eta=eta, rng=5, progress=False)
    if B == 0:
        _empty_refused(lambda: d.ddim_sample_loop(None, x_T=x, **run))
        return _empty_refused(lambda: d.ddim_reverse_loop(x, steps, spacing, progress=False))
    factor = steps
    _check(d.ddim_sample_loop(None, x_T=x, **run), d64.ddim_sample_loop(None, x_T=x64, **run), x.dtype, factor,
           f"ddim_sample_loop steps={steps} {spacing} eta={eta}")
    _check(d.ddim_reverse_loop(x, steps, spacing, progress=False),
           d64.ddim_reverse_loop(x64, steps, spacing, progress=False), x.dtype, factor, "ddim_reverse_loop")
