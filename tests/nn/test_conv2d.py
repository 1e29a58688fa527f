"""The Conv2d layer: gradient checks, torch, errors, the device path (its arithmetic is the
kernels' face, minidiff.kernels.conv2d_*; the references are tested in tests/kernels/conv/)."""
import numpy as np
import pytest
from gradcheck import assert_gradients

from minidiff.nn.conv import Conv2d
from conv_cases import BIG_C_CASES, CASES


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _random(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("B, Cin, Cout, H, W, k, s, p", CASES)
def test_conv2d_gradients(B, Cin, Cout, H, W, k, s, p):
    layer = Conv2d(Cin, Cout, k, stride=s, padding=p, rng=0, dtype=np.float64)
    assert_gradients(layer, _random((B, Cin, H, W), 1), tol=1e-6)


def test_conv2d_gradients_without_bias():
    layer = Conv2d(2, 3, 3, padding=1, bias=False, rng=0, dtype=np.float64)
    assert set(layer.params) == {"weight"}
    assert_gradients(layer, _random((2, 2, 4, 5), 1), tol=1e-6)


def test_backward_adds_into_grads_and_float32_stays_float32():
    layer = Conv2d(3, 4, 3, padding=1, rng=0)
    x = _random((2, 3, 6, 6), 1).astype(np.float32)
    y = layer.forward(x)
    assert y.dtype == np.float32 and y.shape == (2, 4, 6, 6)
    dy = np.ones_like(y)
    dx = layer.backward(dy)
    assert dx.dtype == np.float32 and dx.shape == x.shape
    g1 = layer.grads["weight"].copy()
    with pytest.raises(RuntimeError, match="nothing kept"):         # the input went with the backward
        layer.backward(dy)
    layer.forward(x)
    layer.backward(dy)
    np.testing.assert_allclose(layer.grads["weight"], 2 * g1, rtol=1e-6)
    np.testing.assert_allclose(layer.grads["bias"], 2 * np.full(4, 2 * 36.0), rtol=1e-6)


def test_init_is_pytorch_uniform():
    layer = Conv2d(4, 6, (3, 2), rng=0)
    assert layer.params["weight"].shape == (6, 4, 3, 2) and layer.params["bias"].shape == (6,)
    bound = 1 / np.sqrt(4 * 3 * 2)
    assert np.abs(layer.params["weight"]).max() <= bound
    assert np.abs(layer.params["weight"]).max() > 0.8 * bound
    assert "4 => 6" in repr(layer) and "(3, 2)" in repr(layer)
    assert "stride=(2, 2)" in repr(Conv2d(1, 1, 4, stride=2, padding=1))


def test_errors():
    layer = Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match="channels"):
        layer.forward(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(ValueError, match="B, C, H, W"):
        layer.forward(np.zeros((3, 5, 5), np.float32))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        layer.forward(np.zeros((1, 3, 2, 5), np.float32))
    with pytest.raises(ValueError, match="stride"):
        Conv2d(3, 4, 3, stride=0)


@pytest.mark.parametrize("B, Cin, Cout, H, W, k, s, p", CASES + BIG_C_CASES)
def test_matches_torch(B, Cin, Cout, H, W, k, s, p):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    layer = Conv2d(Cin, Cout, k, stride=s, padding=p, rng=0, dtype=np.float64)
    x = _random((B, Cin, H, W), 1)
    y = layer.forward(x)
    dy = _random(y.shape, 2)
    dx = layer.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(layer.params["weight"], requires_grad=True)
    bt = torch.tensor(layer.params["bias"], requires_grad=True)
    yt = F.conv2d(xt, wt, bt, stride=_pair(s), padding=_pair(p))
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.grads["weight"], wt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.grads["bias"], bt.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("Cin", [2, 9])                 # both forward paths (cols / per offset)
def test_device_path_matches_numpy(Cin):
    """On the CuPy-like fake device the same code runs without host copies."""
    from fakecupy import assert_same_on_device, xp
    host = Conv2d(Cin, 3, 4, stride=2, padding=1, rng=0, dtype=np.float64)
    dev = Conv2d(Cin, 3, 4, stride=2, padding=1, rng=0, dtype=np.float64).to(xp)
    assert_same_on_device(host, dev, _random((2, Cin, 7, 7), 1), _random((2, 3, 3, 3), 2))
