"""The 4x4 stride-2 Numba kernels (kernels/conv4x4s2_cpu.py) against the im2col reference."""
import numpy as np
import pytest

pytest.importorskip("numba")

from minidiff.kernels import conv4x4s2_cpu, conv_cpu, conv_reference
from minidiff.kernels.check import check_kernel, conv_backward_case, conv_case

DTYPES = [np.float32, np.float64]
# (B, Cin, Cout, H, W): batch 1, odd and non-square sizes, Cout not a multiple of 4, one channel
SHAPES = [(1, 1, 1, 2, 2), (2, 3, 5, 8, 8), (1, 2, 3, 7, 7), (2, 4, 1, 6, 9),
          (3, 1, 6, 5, 3), (1, 5, 4, 28, 28), (2, 2, 7, 14, 13)]


def _forward(x, w, b, stride, padding):
    return conv4x4s2_cpu.conv4x4s2_forward_cpu(x, w, b)


def _backward(dy, x, w, stride, padding):
    return conv4x4s2_cpu.conv4x4s2_backward_cpu(dy, x, w)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_reference(shape, dtype):
    rng = np.random.default_rng(sum(shape))
    y = check_kernel(_forward, conv_reference.conv2d_forward_reference,
                     conv_case(rng, *shape, 4, 2, 1, dtype=dtype))
    assert y.dtype == dtype and y.flags.c_contiguous


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_backward_matches_reference(shape, dtype):
    rng = np.random.default_rng(100 + sum(shape))
    dx, dw, db = check_kernel(_backward, conv_reference.conv2d_backward_reference,
                              conv_backward_case(rng, *shape, 4, 2, 1, dtype=dtype))
    assert dx.dtype == dw.dtype == db.dtype == dtype


def test_space_to_depth_and_back_are_inverse_on_the_image():
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 6))
    Ho, Wo = conv4x4s2_cpu.output_size(7, 6)
    q = conv4x4s2_cpu.space_to_depth(x, Ho, Wo, np.full((2, 12, (Ho + 1) * (Wo + 1)), np.nan))
    assert not np.isnan(q).any()
    assert np.count_nonzero(q) == x.size                 # every pixel once, zeros elsewhere
    np.testing.assert_array_equal(conv4x4s2_cpu.depth_to_space(q, Wo + 1, np.empty_like(x)), x)


def test_phase_weights_pick_tap_2i_plus_a():
    w = np.random.default_rng(1).standard_normal((3, 2, 4, 4))
    w2 = conv4x4s2_cpu.phase_weights(w)
    for c, a, e, i, j in [(0, 0, 0, 0, 0), (1, 1, 0, 1, 1), (1, 0, 1, 1, 0), (0, 1, 1, 0, 1)]:
        np.testing.assert_array_equal(w2[:, 4 * c + 2 * a + e, i, j], w[:, c, 2 * i + a, 2 * j + e])


def test_conv2d_gradients_through_the_phase_kernels(monkeypatch):
    """float64 central differences of a downsampling Conv2d that runs conv4x4s2_cpu."""
    from gradcheck import assert_gradients
    from minidiff.nn import Conv2d
    used = []
    for name in ("conv4x4s2_forward_cpu", "conv4x4s2_backward_cpu"):
        real = getattr(conv_cpu, name)
        monkeypatch.setattr(conv_cpu, name, lambda *a, _real=real, _name=name: used.append(_name) or _real(*a))
    layer = Conv2d(3, 5, 4, stride=2, padding=1, rng=0, dtype=np.float64)
    assert_gradients(layer, np.random.default_rng(1).standard_normal((2, 3, 7, 8)), tol=1e-6)
    assert {"conv4x4s2_forward_cpu", "conv4x4s2_backward_cpu"} <= set(used)
