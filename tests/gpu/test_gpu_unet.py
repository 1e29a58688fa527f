"""The anchor U-Net on CuPy against the same on NumPy: a train step, and guided DDPM / DDIM sampling.

Same weights (one seed), same data, same t and noise: minidiff.backend.randn draws
on the host and copies, so a seeded run is the same run on either device. The
host side runs minidiff's plain NumPy path (kernels.reference_mode: no Numba CPU
kernels to compile on the GPU machine), the GPU side the Numba CUDA kernels and
cuBLAS: the sums run in other orders, so float64 agrees to rounding and float32
to its own, looser, tolerance.
"""
import numpy as np
import pytest

from cuda_gate import require_cuda

cp = require_cuda()
pytestmark = pytest.mark.gpu

from minidiff import kernels  # noqa: E402
from minidiff.backend import to_host  # noqa: E402
from minidiff.diffusion import GaussianDiffusion  # noqa: E402
from minidiff.models import UNet  # noqa: E402
from minidiff.optim import Adam  # noqa: E402


def _model(dtype, T, device):
    """The anchor U-Net, label-conditioned (10 digits), its diffusion, both on `device`."""
    model = UNet(1, 16, T, channel_multipliers=(1, 2, 3), num_classes=10, seed=0, dtype=dtype)
    diffusion = GaussianDiffusion(model, T, schedule="cosine", data_shape=(1, 28, 28), min_snr_gamma=5.0,
                                  dtype=dtype)
    if device == "cuda":
        model.to("cuda")
        diffusion.to("cuda")
    return model, diffusion


def _train_step(dtype, device):
    """One train step at batch 64 -> (loss, model output gradient, parameter gradient, parameters after Adam)."""
    model, diffusion = _model(dtype, 100, device)
    opt = Adam(model, lr=1e-3)                                       # its state on the model's device
    rng = np.random.default_rng(0)
    x0 = rng.uniform(-1, 1, (64, 1, 28, 28)).astype(dtype)           # (64, 1, 28, 28)
    labels = rng.integers(1, 11, 64)                                  # (64,) in 1..10
    if device == "cuda":
        x0, labels = cp.asarray(x0), cp.asarray(labels)
    loss, d_out = diffusion.p_losses(x0, labels=labels, rng=np.random.default_rng(1))
    model.zero_grad()
    model.backward(d_out)
    theta, grad = model.flat()
    grad = to_host(grad).copy()
    opt.step()
    return float(to_host(loss)), to_host(d_out), grad, to_host(theta).copy()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_unet_train_step_on_cupy_matches_numpy(dtype):
    with kernels.reference_mode():
        host = _train_step(dtype, "cpu")
    dev = _train_step(dtype, "cuda")
    f64 = dtype == np.float64
    np.testing.assert_allclose(dev[0], host[0], rtol=1e-10 if f64 else 1e-5)          # the loss
    np.testing.assert_allclose(dev[1], host[1], rtol=1e-9 if f64 else 1e-3,
                               atol=(1e-12 if f64 else 1e-5) * np.abs(host[1]).max())  # d loss / d output
    g_scale = np.abs(host[2]).max()
    np.testing.assert_allclose(dev[2], host[2], rtol=1e-7 if f64 else 1e-2,
                               atol=(1e-10 if f64 else 1e-4) * g_scale)                 # parameter gradients
    if f64:   # Adam's first step is lr * g / (|g| + eps): in float32 a gradient at rounding level may flip sign
        np.testing.assert_allclose(dev[3], host[3], rtol=1e-9, atol=1e-11)


def _samples(dtype, device):
    """Guided DDPM (50 steps) and DDIM (10 steps, eta 0.5) of 16 digits, the labels 1..10 and 1..6."""
    model, diffusion = _model(dtype, 50, device)
    labels = np.arange(16) % 10 + 1                                   # (16,)
    if device == "cuda":
        labels = cp.asarray(labels)
    ddpm = diffusion.p_sample_loop((16, 1, 28, 28), labels=labels, guidance_scale=2.0, guidance_interval=(5, 40),
                                   rng=2, progress=False)
    ddim = diffusion.ddim_sample_loop((16, 1, 28, 28), sampling_timesteps=10, eta=0.5, spacing="trailing",
                                      labels=labels, guidance_scale=2.0, rng=3, progress=False)
    assert type(ddpm).__module__.startswith("cupy" if device == "cuda" else "numpy")
    return to_host(ddpm), to_host(ddim)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_guided_sampling_on_cupy_matches_numpy(dtype):
    with kernels.reference_mode():
        host = _samples(dtype, "cpu")
    dev = _samples(dtype, "cuda")
    for name, h, d in zip(("ddpm", "ddim"), host, dev):
        assert d.shape == (16, 1, 28, 28) and d.dtype == dtype
        if dtype == np.float64:
            np.testing.assert_allclose(d, h, rtol=1e-7, atol=1e-8, err_msg=name)
        else:
            np.testing.assert_allclose(d, h, rtol=1e-3, atol=2e-3, err_msg=name)
            assert np.abs(d - h).mean() < 1e-4, name
