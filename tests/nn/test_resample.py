"""Upsample, AvgPool2d, MaxPool2d, Flatten: gradient checks, exact values, torch."""
import numpy as np
import pytest
from gradcheck import assert_gradients

from minidiff.nn.resample import AvgPool2d, Flatten, MaxPool2d, Upsample


def _random(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


def _distinct(shape, seed):
    """Random values with no ties within 1e-3, so max pooling is differentiable under h = 1e-6."""
    return np.random.default_rng(seed).permutation(np.prod(shape)).reshape(shape) * 1e-2 + 0.1


@pytest.mark.parametrize("layer, shape", [
    (Upsample(), (2, 3, 3, 4)),
    (Upsample(scale_factor=3), (1, 2, 2, 3)),
    (AvgPool2d(2), (2, 3, 4, 6)),
    (AvgPool2d(2), (2, 2, 5, 5)),                 # odd size: floor, last row/col unused
    (AvgPool2d((3, 2), stride=(1, 2)), (2, 2, 5, 6)),   # overlapping windows
    (MaxPool2d(2), (2, 3, 4, 6)),
    (MaxPool2d(2), (2, 2, 5, 5)),
    (MaxPool2d(3, stride=1), (1, 2, 5, 5)),
    (Flatten(), (3, 2, 3, 2)),
], ids=lambda v: repr(v) if not isinstance(v, tuple) else str(v))
def test_gradients(layer, shape):
    x = _distinct(shape, 1) if isinstance(layer, MaxPool2d) else _random(shape, 1)
    errors = assert_gradients(layer, x, tol=1e-6)
    assert list(errors) == ["input"]


def test_exact_values():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(AvgPool2d(2).forward(x)[0, 0], [[2.5, 4.5], [10.5, 12.5]])
    np.testing.assert_array_equal(MaxPool2d(2).forward(x)[0, 0], [[5, 7], [13, 15]])
    up = Upsample()
    y = up.forward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    np.testing.assert_array_equal(y[0, 0], [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    np.testing.assert_array_equal(up.backward(np.ones_like(y))[0, 0], np.full((2, 2), 4.0))
    flat = Flatten()
    assert flat.forward(np.zeros((5, 2, 3, 4))).shape == (5, 24)
    assert flat.backward(np.zeros((5, 24))).shape == (5, 2, 3, 4)


def test_max_pool_routes_gradient_to_the_first_max_on_ties():
    pool = MaxPool2d(2)
    x = np.ones((1, 1, 2, 2), np.float32)
    y = pool.forward(x)
    dx = pool.backward(np.full_like(y, 3.0))
    assert dx.dtype == np.float32
    np.testing.assert_array_equal(dx[0, 0], [[3, 0], [0, 0]])


def test_errors():
    with pytest.raises(ValueError, match="nearest"):
        Upsample(mode="bilinear")
    with pytest.raises(ValueError, match="scale_factor"):
        Upsample(scale_factor=1.5)
    with pytest.raises(ValueError, match="B, C, H, W"):
        MaxPool2d(2).forward(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        AvgPool2d(3).forward(np.zeros((1, 1, 2, 5)))
    with pytest.raises(ValueError, match="kernel_size"):
        AvgPool2d(0)


@pytest.mark.parametrize("kernel, stride, shape", [
    (2, None, (2, 3, 6, 4)), (2, None, (2, 2, 7, 5)), ((3, 2), (2, 1), (1, 2, 7, 6)), (3, 1, (1, 2, 5, 5))])
def test_pools_match_torch(kernel, stride, shape):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = _random(shape, 1)
    for layer, fn in [(AvgPool2d(kernel, stride), F.avg_pool2d), (MaxPool2d(kernel, stride), F.max_pool2d)]:
        y = layer.forward(x)
        dy = _random(y.shape, 2)
        dx = layer.backward(dy)
        xt = torch.tensor(x, requires_grad=True)
        yt = fn(xt, kernel, stride)
        yt.backward(torch.tensor(dy))
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_upsample_matches_torch():
    torch = pytest.importorskip("torch")
    x = _random((2, 3, 3, 5), 1)
    up = Upsample()
    y = up.forward(x)
    dy = _random(y.shape, 2)
    dx = up.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.interpolate(xt, scale_factor=2, mode="nearest")
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=0, atol=0)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("make", [Upsample, lambda: AvgPool2d(2), lambda: MaxPool2d(2), Flatten])
def test_device_path_matches_numpy(make):
    """On the CuPy-like fake device the same code runs without host copies."""
    from fakecupy import assert_same_on_device
    host, dev = make(), make()
    x = _random((2, 3, 4, 6), 1)
    assert_same_on_device(host, dev, x, _random(host.forward(x).shape, 2), tol=0)
