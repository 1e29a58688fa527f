"""tools/roofline.py (the numbers of docs/kernels.md, "The CUDA kernels on paper"): it sees every kernel
call of the anchor U-Net's forward, and its bounds are the ones it states."""
import importlib.util
import os

import pytest

from minidiff.bench import ANCHOR
from minidiff.models import UNet
from minidiff.nn import GroupNormSiLU, MultiheadAttention, UpsampleConv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def roofline():
    spec = importlib.util.spec_from_file_location("roofline", os.path.join(ROOT, "tools", "roofline.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_it_counts_every_kernel_call_of_the_forward(roofline):
    calls, params = roofline.anchor_calls()
    layers = [layer for _, layer in UNet(**ANCHOR).named_layers()]
    ops = [op for op, _ in calls]
    assert params == UNet(**ANCHOR).num_params()
    assert ops.count("groupnorm_silu_forward") == sum(isinstance(x, GroupNormSiLU) for x in layers)
    assert ops.count("upsample_conv3x3_forward") == sum(isinstance(x, UpsampleConv) for x in layers)
    assert ops.count("attention_forward") == sum(isinstance(x, MultiheadAttention) for x in layers)
    assert ("conv2d_forward", (80, 7, 7, 48, 80, 3, 3, 1)) in calls        # a shared pair: two convs on CUDA


def test_the_bounds_are_the_larger_of_compute_memory_and_launch(roofline):
    r = roofline
    assert r.t(r.TILED * 1e-3, 0, r.TILED) == pytest.approx(1e-3)             # compute-bound
    assert r.t(0, r.HBM * 2e-3, r.FP32) == pytest.approx(2e-3)                # memory-bound
    assert r.t(1.0, 1.0, r.FP32) == r.LAUNCH_S                                 # a tiny kernel
    fwd, _, lib, _ = r.conv(64, 16, 16, 3, 1, 28)                               # 16 -> 16 at 28x28
    gemm = 2 * 16 * 144 * 64 * 784
    assert fwd > gemm / r.TILED and lib == pytest.approx(gemm / r.FP32)
