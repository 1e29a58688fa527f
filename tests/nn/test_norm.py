"""GroupNorm: gradient checks, exact statistics, torch cross-check, errors."""
import numpy as np
import pytest
from gradcheck import assert_gradients

from minidiff.nn.norm import GroupNorm


def _random(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


def _random_affine(layer, seed):
    """Non-trivial weight/bias so their gradients (and dx through weight) are tested."""
    rng = np.random.default_rng(seed)
    layer.params["weight"][...] = rng.uniform(0.5, 1.5, layer.num_channels)
    layer.params["bias"][...] = rng.standard_normal(layer.num_channels)


@pytest.mark.parametrize("G, C", [(1, 4), (2, 4), (4, 4), (3, 6)])
def test_gradients(G, C):
    layer = GroupNorm(G, C, dtype=np.float64)
    _random_affine(layer, 5)
    assert_gradients(layer, _random((2, C, 3, 3), 1) * 2 + 0.5, tol=1e-6)


def test_gradients_without_affine_and_on_vectors():
    layer = GroupNorm(2, 4, affine=False, dtype=np.float64)
    assert layer.params == {}
    assert_gradients(layer, _random((3, 4, 2, 3), 1), tol=1e-6)
    layer = GroupNorm(2, 6, dtype=np.float64)
    _random_affine(layer, 5)
    assert_gradients(layer, _random((3, 6), 1), tol=1e-6)


def test_normalises_each_group():
    layer = GroupNorm(2, 6, eps=0.0, dtype=np.float64)
    x = _random((3, 6, 4, 4), 1) * 3 + 2
    y = layer.forward(x).reshape(3, 2, -1)                              # (B, G, n)
    np.testing.assert_allclose(y.mean(axis=2), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=2), 1, rtol=1e-12)
    assert layer.params["weight"].dtype == np.float64


def test_float32_stays_float32():
    layer = GroupNorm(4, 8)
    x = _random((2, 8, 5, 5), 1).astype(np.float32)
    y = layer.forward(x)
    dx = layer.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == layer.grads["weight"].dtype == np.float32
    np.testing.assert_allclose(layer.grads["bias"], np.full(8, 2 * 25.0))


def test_errors():
    with pytest.raises(ValueError, match="must divide"):
        GroupNorm(3, 8)
    with pytest.raises(ValueError, match="expected input"):
        GroupNorm(2, 8).forward(np.zeros((2, 4, 3, 3), np.float32))


@pytest.mark.parametrize("G, C", [(1, 4), (2, 6), (6, 6)])
def test_matches_torch(G, C):
    torch = pytest.importorskip("torch")
    layer = GroupNorm(G, C, dtype=np.float64)
    _random_affine(layer, 5)
    x = _random((2, C, 4, 3), 1)
    y = layer.forward(x)
    dy = _random(y.shape, 2)
    dx = layer.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(layer.params["weight"], requires_grad=True)
    bt = torch.tensor(layer.params["bias"], requires_grad=True)
    yt = torch.nn.functional.group_norm(xt, G, wt, bt, eps=1e-5)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(layer.grads["weight"], wt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.grads["bias"], bt.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_device_path_matches_numpy():
    """On the CuPy-like fake device the same code runs without host copies."""
    from fakecupy import assert_same_on_device, xp
    host = GroupNorm(2, 4, dtype=np.float64)
    _random_affine(host, 5)
    dev = GroupNorm(2, 4, dtype=np.float64)
    _random_affine(dev, 5)
    dev.to(xp)
    assert_same_on_device(host, dev, _random((2, 4, 3, 3), 1), _random((2, 4, 3, 3), 2))
