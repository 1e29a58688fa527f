"""The benchmark's cases: each a minidiff callable, its PyTorch mirror (or None) and its FLOPs.

    mlp_train_step           MLP(2, 32, T=40) train step, batch 32
    unet_train_step          the anchor U-Net's train step, batch 32, 28x28
    unet_forward             its forward at batch 64 under no_grad
    ddim_sample_64           DDIM, 20 steps, eta 0, 64 digits
    conv_fwd_bwd_*           one Conv2d forward + backward, the anchor U-Net's conv shapes

unet_forward and ddim_sample_64 run under no_grad on both sides: torch.no_grad()
and minidiff.nn.no_grad() (which the sampling loops use on their own; its
ResBlocks then keep their middle activation on the conv lines). `bt` is the
namespace of torch_mirror.load() or None. Data are random: the timings do not
depend on the values. The U-Net builders take device="cuda" too (gpu.py, for
--device cuda): the torch mirror copies the weights on the host, then model,
diffusion and data move to the GPU, and torch's copy to its CUDA device.
"""
from dataclasses import dataclass, field

import numpy as np

from ..backend import to_device
from ..diffusion import GaussianDiffusion
from ..models import MLP, UNet
from ..nn import Conv2d, no_grad
from ..optim import Adam
from .flops import conv_flops, flops_per_sample

ANCHOR = dict(in_channels=1, model_channels=16, num_timesteps=100, channel_multipliers=(1, 2, 3))


@dataclass
class Case:
    """One benchmark: a minidiff callable, its torch mirror (or None) and its FLOPs."""
    name: str
    minidiff: object
    torch: object = None
    flop: float = None
    note: str = ""
    max_repeats: int = None        # a cap for the slow cases
    extra: dict = field(default_factory=dict)


def _on(device, movables, *arrays):
    """Move the models / diffusions in `movables` to `device` and copy the arrays there ('cpu': all stay)."""
    if device == "cpu":
        return arrays
    for m in movables:
        m.to(device)
    return tuple(to_device(a, device) for a in arrays)


def _train_case(name, model, T, x0, bt, note, device="cpu"):
    diffusion = GaussianDiffusion(model, T)
    torch_step = None if bt is None else bt.train_step(bt.from_minidiff(model, device), diffusion, x0, device=device)
    flop = 3 * x0.shape[0] * flops_per_sample(model, x0.shape[1:])  # forward + input and weight grads
    x0, = _on(device, (model, diffusion), x0)
    opt, rng = Adam(model, lr=1e-3), np.random.default_rng(0)

    def step():
        loss, d_out = diffusion.p_losses(x0, rng=rng)
        model.zero_grad()
        model.backward(d_out)
        opt.step()
        return loss

    return Case(name, step, torch_step, flop, note, extra={"model": model})


def mlp_train_step(bt, batch=32):
    x0 = np.random.default_rng(1).standard_normal((batch, 2)).astype(np.float32)
    return _train_case("mlp_train_step", MLP(in_dim=2, d_hid=32, num_timesteps=40, num_layers=3),
                       40, x0, bt, f"MLP(2, 32, T=40) train step, batch {batch}")


def unet_train_step(bt, batch=32, device="cpu"):
    x0 = np.random.default_rng(1).uniform(-1, 1, (batch, 1, 28, 28)).astype(np.float32)
    return _train_case("unet_train_step", UNet(**ANCHOR), 100, x0, bt,
                       f"anchor UNet train step, batch {batch}, 28x28", device)


def unet_forward(bt, batch=64, device="cpu", name="unet_forward"):
    model = UNet(**ANCHOR)
    x = np.random.default_rng(1).standard_normal((batch, 1, 28, 28)).astype(np.float32)
    t = np.random.default_rng(2).integers(0, 100, batch)
    flop = batch * flops_per_sample(model, x.shape[1:])
    torch_step = None if bt is None else bt.forward_step(bt.from_minidiff(model, device), x, t, device=device)
    x, t = _on(device, (model,), x, t)

    def forward():
        with no_grad():
            return model.forward(x, t)

    return Case(name, forward, torch_step, flop, f"anchor UNet forward, batch {batch}, no_grad")


def ddim_sample_64(bt, batch=64, steps=20, device="cpu"):
    model = UNet(**ANCHOR)
    diffusion = GaussianDiffusion(model, 100)
    shape = (batch, 1, 28, 28)
    flop = steps * batch * flops_per_sample(model, shape[1:])
    torch_step = None
    if bt is not None:
        tmodel = bt.from_minidiff(model, device)
        ts, ts_next = diffusion._ddim_schedule(steps, "linspace")
        torch_step = lambda: bt.ddim_sample_loop(tmodel, diffusion, shape, ts, ts_next, device=device)
    _on(device, (model, diffusion))

    def sample():
        return diffusion.ddim_sample_loop(shape, sampling_timesteps=steps, eta=0.0,
                                          rng=np.random.default_rng(0), progress=False)

    return Case("ddim_sample_64", sample, torch_step, flop,
                f"DDIM {steps} steps, eta 0, {batch} digits, anchor UNet", max_repeats=3)


def dpmpp_2m_sample_64(bt, batch=64, steps=10, device="cpu"):
    """DPM-Solver++(2M), `steps` model calls, for `batch` digits with the anchor U-Net; no torch
    mirror (torch=None): the sampler's point is the number of model calls, against DDIM's 20."""
    model = UNet(**ANCHOR)
    diffusion = GaussianDiffusion(model, 100)
    shape = (batch, 1, 28, 28)
    flop = steps * batch * flops_per_sample(model, shape[1:])
    _on(device, (model, diffusion))

    def sample():
        return diffusion.sample(shape, sampler="dpmpp_2m", steps=steps, rng=np.random.default_rng(0), progress=False)

    return Case("dpmpp_2m_sample_64", sample, None, flop,
                f"DPM-Solver++(2M) {steps} steps, {batch} digits, anchor UNet (no torch mirror)", max_repeats=3)


def conv_case(cin, cout, k, stride, padding, size):
    """A case builder: Conv2d(cin, cout, k, stride, padding) forward + backward at size x size."""
    s = f"s{stride}" if stride != 1 else ""
    name = f"conv_fwd_bwd_{cin}to{cout}_k{k}{s}_{size}"

    def build(bt, batch=32):
        conv = Conv2d(cin, cout, k, stride=stride, padding=padding, rng=0)
        rng = np.random.default_rng(1)
        x = rng.standard_normal((batch, cin, size, size)).astype(np.float32)
        out = (size + 2 * padding - k) // stride + 1
        dy = rng.standard_normal((batch, cout, out, out)).astype(np.float32)

        def step():
            conv.forward(x)
            return conv.backward(dy)

        flop = 3 * conv_flops(x.shape, cout, conv.kernel_size, conv.stride, conv.padding)
        torch_step = None if bt is None else bt.conv_step(conv, x, dy)
        return Case(name, step, torch_step, flop,
                    f"Conv2d {cin}->{cout} {k}x{k} s{stride} p{padding} at {size}x{size}, batch {batch}, fwd+bwd")
    build.__name__ = name
    return build


# Conv shapes of the anchor U-Net, heaviest first (share of its conv FLOPs):
# 32->16 @28 (28%: up level 0 and the upsample conv), 48->32 @14 (21%),
# 16->16 @28 (14%), 48->48 @7 (13%), the 4x4 stride-2 downsample 16->16 @28 (2%).
_BUILDERS = [mlp_train_step, unet_train_step, unet_forward, ddim_sample_64,
             conv_case(16, 16, 3, 1, 1, 28), conv_case(32, 16, 3, 1, 1, 28),
             conv_case(48, 32, 3, 1, 1, 14), conv_case(48, 48, 3, 1, 1, 7),
             conv_case(16, 16, 4, 2, 1, 28)]
CASES = {b.__name__: b for b in _BUILDERS}


def build_case(name, bt=None, **kw):
    """The Case `name` (see CASES); bt is torch_mirror.load()'s namespace or None; kw e.g. batch=2."""
    if name not in CASES:
        raise ValueError(f"case: expected one of {list(CASES)}, got {name!r}")
    return CASES[name](bt, **kw)
