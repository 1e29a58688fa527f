"""The reverse loops use the fused kernels (minidiff.kernels.ddpm_step /
ddim_step) for an int t; the generic per-sample path (array t) is the
independent check: both must give the same step."""
import numpy as np
import pytest

from minidiff.diffusion import GaussianDiffusion
from minidiff.kernels import reference_mode


class LinearEps:
    """eps_hat = a x + b t: a smooth stand-in model."""

    def forward(self, x, t, labels=None):
        return 0.7 * x + 0.01 * t.reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype)


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("reference", [True, False])
def test_fused_ddpm_step_equals_generic_path(variance, clip, reference):
    d = GaussianDiffusion(LinearEps(), 30, schedule="cosine", variance=variance, dtype=np.float64)
    rng = np.random.default_rng(0)
    x, z = rng.standard_normal((5, 3, 4)) * 1.5, rng.standard_normal((5, 3, 4))
    for t in (29, 11, 0):
        with reference_mode(reference):
            fused = d.p_sample(x, t, noise=z, clip_denoised=clip)                  # int t: fused
        generic = d.p_sample(x, np.full(5, t), noise=z, clip_denoised=clip)        # array t
        for a, b in zip(fused, generic):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("eta", [0.0, 0.6])
@pytest.mark.parametrize("clip", [True, False])
def test_fused_ddim_step_equals_generic_path(eta, clip):
    d = GaussianDiffusion(LinearEps(), 30, schedule="cosine", dtype=np.float64)
    rng = np.random.default_rng(1)
    x, z = rng.standard_normal((4, 6)) * 1.5, rng.standard_normal((4, 6))
    for t, t_next in ((29, 20), (5, 0), (3, -1)):
        fused = d.ddim_sample(x, t, t_next, noise=z, eta=eta, clip_denoised=clip)
        generic = d.ddim_sample(x, np.full(4, t), np.full(4, t_next), noise=z, eta=eta, clip_denoised=clip)
        for a, b in zip(fused, generic):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_loops_keep_float32():
    d = GaussianDiffusion(LinearEps(), 10, schedule="cosine")
    assert d.p_sample_loop((3, 2), rng=0, progress=False).dtype == np.float32
    assert d.ddim_sample_loop((3, 2), sampling_timesteps=4, eta=0.5, rng=0, progress=False).dtype == np.float32
