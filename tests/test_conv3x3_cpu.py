"""The direct 3x3 Numba kernels (kernels/conv3x3_cpu.py) against the im2col reference."""
import numpy as np
import pytest

pytest.importorskip("numba")

from minidiff.kernels import conv3x3_cpu, conv_cpu, conv_reference
from minidiff.kernels.check import check_kernel, conv_backward_case, conv_case

DTYPES = [np.float32, np.float64]
# (B, Cin, Cout, H, W): batch 1, odd and non-square planes, odd Cout, one channel in or out,
# planes whose grid needs the ALIGN tail and ones longer than several ALIGN blocks
SHAPES = [(1, 1, 1, 1, 1), (2, 3, 5, 7, 7), (1, 4, 1, 5, 9), (3, 1, 4, 11, 6),
          (2, 6, 7, 14, 13), (1, 5, 2, 28, 28), (2, 2, 3, 2, 30)]


def _forward(x, w, b, stride, padding):
    return conv3x3_cpu.conv3x3_forward_cpu(x, w, b)


def _backward(dy, x, w, stride, padding):
    return conv3x3_cpu.conv3x3_backward_cpu(dy, x, w)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_direct_forward_matches_reference(shape, dtype):
    rng = np.random.default_rng(sum(shape))
    y = check_kernel(_forward, conv_reference.conv2d_forward_reference,
                     conv_case(rng, *shape, 3, 1, 1, dtype=dtype))
    assert y.dtype == dtype and y.flags.c_contiguous


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_direct_backward_matches_reference(shape, dtype):
    rng = np.random.default_rng(100 + sum(shape))
    dx, dw, db = check_kernel(_backward, conv_reference.conv2d_backward_reference,
                              conv_backward_case(rng, *shape, 3, 1, 1, dtype=dtype))
    assert dx.dtype == dw.dtype == db.dtype == dtype


def test_direct_backward_without_bias_grad():
    rng = np.random.default_rng(5)
    dy, x, w, _, _ = conv_backward_case(rng, 2, 3, 4, 6, 6, 3, 1, 1)
    assert conv3x3_cpu.conv3x3_backward_cpu(dy, x, w, need_bias=False)[2] is None


def test_dispatch_sends_only_3x3_same_convs_to_the_direct_kernels(monkeypatch):
    calls = []
    real = conv3x3_cpu.conv3x3_forward_cpu
    monkeypatch.setattr(conv_cpu, "conv3x3_forward_cpu", lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(6)
    for k, s, p, direct in [(3, 1, 1, True), (3, 2, 1, False), (3, 1, 0, False), (4, 2, 1, False), (4, 1, 1, False)]:
        calls.clear()
        x, w, b, _, _ = conv_case(rng, 2, 3, 4, 8, 8, k, s, p)
        check_kernel(conv_cpu.conv2d_forward_cpu, conv_reference.conv2d_forward_reference,
                     (x, w, b, s, p))
        assert bool(calls) == direct, (k, s, p)


def test_grid_geometry_covers_every_tap():
    for H, W in [(1, 1), (7, 7), (28, 28), (5, 40)]:
        Wp, P, Lp = conv3x3_cpu.grid_geometry(H, W)
        assert Wp == W + 2 and P % conv3x3_cpu.ALIGN == 0 and P >= H * Wp
        assert Lp >= P - 1 + 2 * Wp + 2 + 1          # the last tap of the last grid point
        assert Lp >= (H + 2) * Wp                    # the whole padded plane


def test_pad_planes_zeroes_the_border_and_tail():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5) + 1
    Wp, P, Lp = conv3x3_cpu.grid_geometry(4, 5)
    xp = conv3x3_cpu.pad_planes(x, Wp, np.full((2, 3, Lp), np.nan, np.float32))
    plane = xp[:, :, :6 * Wp].reshape(2, 3, 6, Wp)
    np.testing.assert_array_equal(plane[:, :, 1:5, 1:6], x)
    assert np.count_nonzero(xp) == x.size                # everything else is exactly 0


def test_conv2d_gradients_through_the_direct_kernels(monkeypatch):
    """float64 central differences of a Conv2d layer whose forward and backward run conv3x3_cpu."""
    from gradcheck import assert_gradients
    from minidiff.nn import Conv2d
    used = []
    for name in ("conv3x3_forward_cpu", "conv3x3_backward_cpu"):
        real = getattr(conv_cpu, name)
        monkeypatch.setattr(conv_cpu, name, lambda *a, _real=real, _name=name: used.append(_name) or _real(*a))
    layer = Conv2d(3, 5, 3, padding=1, rng=0, dtype=np.float64)
    assert_gradients(layer, np.random.default_rng(1).standard_normal((2, 3, 6, 7)), tol=1e-6)
    assert {"conv3x3_forward_cpu", "conv3x3_backward_cpu"} <= set(used)
