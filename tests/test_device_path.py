"""End-to-end runs through the CuPy-like backend (tests/fakecupy.py).

Any implicit device -> host conversion, float() of a device scalar or a host
array mixed into device arithmetic raises there, so these runs prove the GPU
code path keeps its data on the device; the results must equal the NumPy run.
"""
import numpy as np
import pytest

from fakecupy import DeviceArray, xp
from minidiff.backend import to_host
from minidiff.data.toy2d import make_spiral
from minidiff.diffusion import GaussianDiffusion
from minidiff.models import MLP, UNet
from minidiff.optim import EMA, Adam
from minidiff.train import train


def _spiral_run(device):
    model = MLP(d_hid=16, num_timesteps=20, seed=0)
    diffusion = GaussianDiffusion(model, 20, schedule="cosine", data_shape=(2,))
    if device is not None:
        model.to(device)
        diffusion.to(device)
    opt = Adam(model, lr=1e-3)
    ema = EMA(model, decay=0.9)
    x = make_spiral(256, rng=0)
    hist = train(diffusion, x, val_data=make_spiral(64, rng=1), epochs=2, batch_size=32, optimizer=opt,
                 ema=ema, grad_clip=1.0, seed=0, progress=False)
    ddim = diffusion.ddim_sample_loop((50, 2), sampling_timesteps=5, eta=0.5, rng=3, progress=False)
    ddpm = diffusion.p_sample_loop((50, 2), rng=4, progress=False)
    return model, hist, ddim, ddpm


def test_spiral_training_and_sampling_stay_on_device():
    model_h, hist_h, ddim_h, ddpm_h = _spiral_run(None)
    model_d, hist_d, ddim_d, ddpm_d = _spiral_run(xp)
    assert isinstance(ddim_d, DeviceArray) and isinstance(ddpm_d, DeviceArray)
    assert isinstance(model_d.flat()[0], DeviceArray)
    np.testing.assert_allclose(hist_d["batch_loss"], hist_h["batch_loss"], rtol=1e-5)
    np.testing.assert_allclose(to_host(model_d.flat()[0]), model_h.flat()[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_host(ddim_d), ddim_h, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_host(ddpm_d), ddpm_h, rtol=1e-4, atol=1e-5)


def _unet_run(device):
    model = UNet(1, 8, 10, channel_multipliers=(1, 2), groups=4, attention_heads=2, num_classes=3, seed=0)
    diffusion = GaussianDiffusion(model, 10, schedule="cosine", data_shape=(1, 8, 8))
    if device is not None:
        model.to(device)
        diffusion.to(device)
    opt = Adam(model, lr=1e-3)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(12, 1, 8, 8)).astype(np.float32)
    labels = rng.integers(1, 4, size=12)
    hist = train(diffusion, x, labels=labels, prob_uncond=0.2, epochs=1, batch_size=6, optimizer=opt,
                 seed=0, progress=False)
    sample_labels = np.array([1, 2, 3, 1])
    if device is not None:
        sample_labels = device.asarray(sample_labels)
    ddim = diffusion.ddim_sample_loop((4, 1, 8, 8), sampling_timesteps=4, labels=sample_labels,
                                      guidance_scale=2.0, rng=1, progress=False)
    ddpm = diffusion.p_sample_loop((4, 1, 8, 8), labels=sample_labels, guidance_scale=2.0, rng=2, progress=False)
    return model, hist, ddim, ddpm


def test_unet_training_step_and_guided_sampling_stay_on_device():
    model_h, hist_h, ddim_h, ddpm_h = _unet_run(None)
    model_d, hist_d, ddim_d, ddpm_d = _unet_run(xp)
    assert isinstance(ddim_d, DeviceArray) and ddim_d.shape == (4, 1, 8, 8)
    np.testing.assert_allclose(hist_d["batch_loss"], hist_h["batch_loss"], rtol=1e-4)
    np.testing.assert_allclose(to_host(model_d.flat()[0]), model_h.flat()[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_host(ddim_d), ddim_h, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(to_host(ddpm_d), ddpm_h, rtol=1e-3, atol=1e-4)


def test_host_array_given_to_device_model_is_refused():
    model = MLP(d_hid=8, num_timesteps=10).to(xp)
    diffusion = GaussianDiffusion(model, 10, schedule="cosine").to(xp)
    with pytest.raises((TypeError, ValueError)):
        diffusion.q_sample(np.zeros((4, 2), np.float32), 3, xp.asarray(np.zeros((4, 2), np.float32)))
