"""The fused nearest-x2-upsampling + 3x3 conv CUDA kernels (kernels/upconv/cuda.py) against the
two steps they replace (x.repeat(2) on both axes, then the reference conv), under the CUDA simulator.

Run by tests/kernels/test_cuda_simulator.py in a process with NUMBA_ENABLE_CUDASIM=1
(see conv/conv_cuda_check.py). Tiny shapes: the simulator runs every thread in Python.
"""
import os

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("needs NUMBA_ENABLE_CUDASIM=1 (run tests/kernels/test_cuda_simulator.py)", allow_module_level=True)

from numba import config  # noqa: E402

from layouts import assert_any_layout  # noqa: E402
from minidiff.kernels.upconv import cuda as upconv_cuda  # noqa: E402
from minidiff.kernels.check import check_kernel  # noqa: E402
from minidiff.kernels.conv.reference import (conv2d_backward_reference,  # noqa: E402
                                             conv2d_forward_reference)

# (B, Cin, Cout, H, W, dtype, bias) of the small image: a 1x1 image (every tap but
# the centre on padding), one channel, non-square both ways, batch 2, 3 -> 3 channels on 4x4
CASES = [(1, 1, 1, 1, 1, np.float64, True), (1, 2, 3, 2, 3, np.float32, False),
         (2, 3, 2, 3, 2, np.float64, False), (2, 2, 1, 4, 3, np.float32, True),
         (1, 1, 2, 1, 4, np.float32, True), (2, 1, 3, 2, 2, np.float64, True),
         (2, 3, 3, 4, 4, np.float32, True), (1, 3, 1, 3, 4, np.float64, False)]


def up2(x):
    """Nearest x2 upsampling: (B, C, H, W) -> (B, C, 2H, 2W)."""
    return x.repeat(2, axis=2).repeat(2, axis=3)


def two_steps_forward(x, w, b):
    return conv2d_forward_reference(up2(x), w, b, 1, 1)


def two_steps_backward(dy, x, w, need_bias=True):
    dxu, dw, db = conv2d_backward_reference(dy, up2(x), w, 1, 1, need_bias)   # dxu (B, Cin, 2H, 2W)
    B, C, H2, W2 = dxu.shape
    dx = dxu.reshape(B, C, H2 // 2, 2, W2 // 2, 2).sum(axis=(3, 5))             # each 2x2 block
    return dx, dw, db


def case(rng, B, Cin, Cout, H, W, dtype, bias):
    x = rng.standard_normal((B, Cin, H, W)).astype(dtype)                       # (B, Cin, H, W)
    w = (rng.standard_normal((Cout, Cin, 3, 3)) / np.sqrt(9 * Cin)).astype(dtype)
    b = rng.standard_normal(Cout).astype(dtype) if bias else None               # (Cout,)
    dy = rng.standard_normal((B, Cout, 2 * H, 2 * W)).astype(dtype)             # (B, Cout, 2H, 2W)
    return x, w, b, dy


def test_simulator_is_on():
    assert config.ENABLE_CUDASIM and upconv_cuda.TPB == 16


@pytest.mark.parametrize("shape", CASES)
def test_upconv_cuda_matches_the_two_steps(shape):
    x, w, b, dy = case(np.random.default_rng(sum(shape[:5])), *shape)
    dtype = x.dtype
    y = check_kernel(upconv_cuda.upsample_conv3x3_forward_cuda, two_steps_forward, (x, w, b))
    assert y.dtype == dtype and y.shape == dy.shape
    need_bias = b is not None
    dx, dw, db = check_kernel(upconv_cuda.upsample_conv3x3_backward_cuda, two_steps_backward,
                              (dy, x, w), {"need_bias": need_bias})
    assert dx.dtype == dw.dtype == dtype and (db is None) == (not need_bias)
    assert db is None or db.dtype == dtype


def test_padding_is_zero_and_each_phase_reads_its_own_taps():
    """A one-hot x on a 1x1 image: y[.., 2u + a, 2v + e] is the sum of the 3x3 taps landing on it."""
    x, w = np.ones((1, 1, 1, 1)), np.arange(9.0).reshape(1, 1, 3, 3)
    y = upconv_cuda.upsample_conv3x3_forward_cuda(x, w, None)                   # (1, 1, 2, 2)
    want = [[w[0, 0, 1:, 1:].sum(), w[0, 0, 1:, :2].sum()],
            [w[0, 0, :2, 1:].sum(), w[0, 0, :2, :2].sum()]]
    np.testing.assert_array_equal(y[0, 0], want)


def test_upconv_cuda_errors():
    x, w, b, dy = case(np.random.default_rng(5), 1, 2, 3, 2, 2, np.float32, True)
    fwd, bwd = upconv_cuda.upsample_conv3x3_forward_cuda, upconv_cuda.upsample_conv3x3_backward_cuda
    with pytest.raises(ValueError, match="x:"):
        fwd(x[0], w, b)
    with pytest.raises(ValueError, match="w:"):
        fwd(x, w[:, :1], b)
    with pytest.raises(ValueError, match="w:"):
        fwd(x, w[..., :2], b)
    with pytest.raises(ValueError, match="bias:"):
        fwd(x, w, b[:2])
    with pytest.raises(ValueError, match="dy:"):
        bwd(dy[:, :, :-1], x, w)
    with pytest.raises(TypeError, match="float32 or float64"):
        fwd(x.astype(np.int32), w.astype(np.int32), None)
    with pytest.raises(TypeError, match="one dtype"):
        bwd(dy.astype(np.float64), x, w)


def test_upconv_cuda_any_layout():
    """x, w, b and dy in Fortran order, permuted, strided or reversed: the C result."""
    x, w, b, dy = case(np.random.default_rng(6), 1, 2, 2, 2, 3, np.float64, True)
    assert_any_layout(upconv_cuda.upsample_conv3x3_forward_cuda, [x, w, b], name="upsample_conv3x3_forward_cuda")
    assert_any_layout(upconv_cuda.upsample_conv3x3_backward_cuda, [dy, x, w], name="upsample_conv3x3_backward_cuda")
