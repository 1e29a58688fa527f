"""A checkpoint written while training on the GPU, loaded on the CPU: the same weights, optimiser,
EMA and RNG state, and a CPU model that computes what the GPU model computes."""
import numpy as np
import pytest

from cuda_gate import require_cuda

cp = require_cuda()
pytestmark = pytest.mark.gpu

from minidiff import kernels  # noqa: E402
from minidiff.backend import to_host  # noqa: E402
from minidiff.checkpoint import load_checkpoint  # noqa: E402
from minidiff.diffusion import GaussianDiffusion  # noqa: E402
from minidiff.models import UNet  # noqa: E402
from minidiff.optim import EMA, Adam  # noqa: E402
from minidiff.train import train  # noqa: E402


def test_checkpoint_saved_from_the_gpu_loads_on_the_cpu(tmp_path):
    model = UNet(1, 16, 100, channel_multipliers=(1, 2, 3), num_classes=10, seed=0).to("cuda")
    diffusion = GaussianDiffusion(model, 100, schedule="cosine", data_shape=(1, 28, 28)).to("cuda")
    opt, ema = Adam(model, lr=1e-3), EMA(model, decay=0.9)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (64, 1, 28, 28)).astype(np.float32)         # host data: train copies it once
    labels = rng.integers(1, 11, 64)
    path = tmp_path / "gpu.h5"
    history = train(diffusion, x, labels=labels, prob_uncond=0.2, epochs=2, batch_size=32, optimizer=opt,
                    ema=ema, checkpoint_path=str(path), seed=0, progress=False)
    theta, _ = model.flat()
    assert type(theta).__module__.startswith("cupy")

    ck = load_checkpoint(path)                                          # rebuilt from class + config, on the CPU
    cpu_theta, _ = ck.model.flat()
    assert type(cpu_theta) is np.ndarray and ck.model_class == "UNet"
    np.testing.assert_array_equal(cpu_theta, to_host(theta))           # a copy: bit for bit
    for name, a in opt.state_dict()["state"].items():
        np.testing.assert_array_equal(ck.optimizer.state_dict()["state"][name], to_host(a), err_msg=name)
    assert ck.optimizer.step_count == opt.step_count == 4
    np.testing.assert_array_equal(ck.ema.shadow, to_host(ema.shadow))
    assert ck.ema.num_updates == ema.num_updates
    np.testing.assert_allclose(ck.history["train_loss"], history["train_loss"])
    assert ck.rng is not None

    xt = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
    t, lab = np.arange(8) * 12, np.arange(8) % 10 + 1
    y_gpu = to_host(model.forward(cp.asarray(xt), cp.asarray(t), cp.asarray(lab)))
    with kernels.reference_mode():                                     # plain NumPy: no CPU kernels to compile
        y_cpu = ck.model.forward(xt, t, lab)
    np.testing.assert_allclose(y_cpu, y_gpu, rtol=1e-3, atol=1e-4 * np.abs(y_cpu).max())
