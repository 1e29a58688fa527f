"""GaussianDiffusion's sampling steps and loops give the same samples whatever the memory
layout of x_t / x_T and the noise (Fortran order, permuted, strided, reversed views), on the
reference and the Numba CPU path, for a batch of 1 and more.

The fault this guards: a Fortran-ordered x_t gave values near 1e35, inf or NaN, because the
fused step returned outputs it had never written (kernels/sampling/reference.py)."""
import numpy as np
import pytest

from layouts import NON_C, as_layout, assert_any_layout
from minidiff.diffusion import GaussianDiffusion
from minidiff.kernels import reference_mode
from minidiff.models import UNet


class LinearEps:
    """eps_hat = 0.7 x + 0.01 t: a stand-in model that reads x in whatever layout it comes."""

    def forward(self, x, t, labels=None):
        return 0.7 * x + 0.01 * t.reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype)


FAMILIES = [True, False]                                              # reference path, Numba CPU


def _diffusion(dtype=np.float64):
    return GaussianDiffusion(LinearEps(), 20, schedule="cosine", dtype=dtype)


@pytest.mark.parametrize("reference", FAMILIES)
@pytest.mark.parametrize("shape", [(3, 2, 4, 5), (1, 1, 3, 3)])
def test_p_sample_any_layout(reference, shape):
    d, rng = _diffusion(), np.random.default_rng(0)
    x, z = 1.5 * rng.standard_normal(shape), rng.standard_normal(shape)
    with reference_mode(reference):
        for t in (19, 0):
            assert_any_layout(lambda x, z: d.p_sample(x, t, noise=z), [x, z], name=f"p_sample t={t}")
        assert_any_layout(lambda x, z: d.p_sample(x, np.arange(shape[0]) % 20, noise=z), [x, z],
                          name="p_sample, t an array")


@pytest.mark.parametrize("reference", FAMILIES)
@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_ddim_sample_any_layout(reference, eta):
    d, rng = _diffusion(), np.random.default_rng(1)
    x, z = 1.5 * rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((2, 3, 4, 4))
    with reference_mode(reference):
        assert_any_layout(lambda x, z: d.ddim_sample(x, 12, 3, noise=z, eta=eta), [x, z], name="ddim_sample")
        assert_any_layout(lambda x: d.ddim_sample(x, np.array([12, 7]), np.array([3, -1]), eta=0.0), [x],
                          name="ddim_sample, t arrays")


@pytest.mark.parametrize("reference", FAMILIES)
def test_ddim_sample_loop_and_inversion_any_layout(reference):
    d, rng = _diffusion(), np.random.default_rng(2)
    x_T = rng.standard_normal((2, 1, 4, 4))
    with reference_mode(reference):
        assert_any_layout(lambda x: d.ddim_sample_loop(None, 5, eta=0.5, rng=3, x_T=x, progress=False), [x_T],
                          name="ddim_sample_loop(x_T=...)")
        assert_any_layout(lambda x: d.ddim_reverse_loop(x, 5, progress=False), [x_T], name="ddim_reverse_loop")


@pytest.mark.parametrize("layout", NON_C)
def test_unet_samples_any_layout(layout):
    """The issue's case: a U-Net's x_t in another layout, one DDPM and one DDIM step, float32 on
    the CPU kernels: the samples of the C-contiguous x_t, finite."""
    model = UNet(1, 8, 10, channel_multipliers=(1, 2), groups=4, attention_heads=2, seed=0)
    d = GaussianDiffusion(model, 10, schedule="cosine", data_shape=(1, 4, 4))
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 1, 4, 4)).astype(np.float32)
    z = rng.standard_normal((2, 1, 4, 4)).astype(np.float32)
    for step in (lambda x: d.p_sample(x, 6, noise=z), lambda x: d.ddim_sample(x, 6, 2),
                 lambda x: d.ddim_sample_loop(None, 3, x_T=x, progress=False)):
        want, got = step(x), step(as_layout(x, layout))
        for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
            assert np.isfinite(g).all()
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
