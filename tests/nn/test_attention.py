"""The MultiheadAttention layer: gradients, a naive-loop oracle, torch, errors, the device path."""
import numpy as np
import pytest

from gradcheck import assert_gradients
from minidiff.nn.attention import MultiheadAttention


def _layer(C=4, heads=2, seed=0):
    return MultiheadAttention(C, heads=heads, rng=seed, dtype=np.float64)


def test_attention_gradients_float64():
    rng = np.random.default_rng(1)
    layer = _layer(4, 2)
    x = rng.standard_normal((2, 4, 3, 3))
    errors = assert_gradients(layer, x, tol=1e-6)
    assert set(errors) == {"input", "to_qkv.weight", "to_out.weight", "to_out.bias"}


def test_attention_gradients_one_head_non_square():
    rng = np.random.default_rng(2)
    layer = _layer(3, 1, seed=3)
    x = rng.standard_normal((1, 3, 2, 4))
    assert_gradients(layer, x, tol=1e-6)


def test_attention_shape_dtype_and_residual():
    layer = MultiheadAttention(8, heads=4, rng=0)
    x = np.random.default_rng(0).standard_normal((3, 8, 5, 6)).astype(np.float32)
    y = layer(x)
    assert y.shape == x.shape and y.dtype == np.float32
    # zero output projection: the layer is the identity (the residual path)
    layer.to_out.params["weight"][...] = 0
    layer.to_out.params["bias"][...] = 0
    np.testing.assert_array_equal(layer(x), x)


def test_attention_matches_naive_loop():
    """Per-batch, per-head loop with explicit softmax as an independent reference."""
    rng = np.random.default_rng(4)
    C, heads = 6, 3
    d = C // heads
    layer = _layer(C, heads, seed=5)
    x = rng.standard_normal((2, C, 2, 3))
    y = layer(x)
    Wqkv = layer.to_qkv.params["weight"]
    Wo, bo = layer.to_out.params["weight"], layer.to_out.params["bias"]
    ref = np.empty_like(x)
    for b in range(2):
        tok = x[b].reshape(C, -1).T                          # (N, C)
        q, k, v = np.split(tok @ Wqkv.T, 3, axis=1)
        outs = []
        for h in range(heads):
            sl = slice(h * d, (h + 1) * d)
            s = q[:, sl] @ k[:, sl].T / np.sqrt(d)
            p = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
            outs.append(p @ v[:, sl])
        o = np.concatenate(outs, axis=1) @ Wo.T + bo          # (N, C)
        ref[b] = x[b] + o.T.reshape(C, 2, 3)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


def test_attention_errors():
    with pytest.raises(ValueError, match="heads"):
        MultiheadAttention(6, heads=4)
    layer = MultiheadAttention(4, heads=2)
    with pytest.raises(ValueError, match="x must be"):
        layer(np.zeros((1, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match="x must be"):
        layer(np.zeros((4, 2, 2), np.float32))


def test_attention_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(6)
    B, C, H, W, heads = 2, 8, 3, 4, 2
    layer = _layer(C, heads, seed=7)
    x = rng.standard_normal((B, C, H, W))
    dy = rng.standard_normal((B, C, H, W))
    y = layer(x)
    dx = layer.backward(dy)

    tx = torch.tensor(x, requires_grad=True)
    Wqkv = torch.tensor(layer.to_qkv.params["weight"], requires_grad=True)
    Wo = torch.tensor(layer.to_out.params["weight"], requires_grad=True)
    bo = torch.tensor(layer.to_out.params["bias"], requires_grad=True)
    tok = tx.reshape(B, C, H * W).transpose(1, 2)                         # (B, N, C)
    q, k, v = (a.reshape(B, H * W, heads, C // heads).transpose(1, 2)
               for a in (tok @ Wqkv.T).chunk(3, dim=-1))
    o = F.scaled_dot_product_attention(q, k, v)                           # (B, h, N, d)
    o = o.transpose(1, 2).reshape(B, H * W, C) @ Wo.T + bo
    ty = tx + o.transpose(1, 2).reshape(B, C, H, W)
    ty.backward(torch.tensor(dy))

    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.to_qkv.grads["weight"], Wqkv.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.to_out.grads["weight"], Wo.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.to_out.grads["bias"], bo.grad.numpy(), rtol=1e-10, atol=1e-10)


def test_attention_runs_on_the_device_backend():
    """Same numbers through the CuPy-like test backend, with no implicit host copies."""
    from fakecupy import xp
    from minidiff.backend import to_host
    layer = _layer(4, 2, seed=8)
    rng = np.random.default_rng(9)
    x, dy = rng.standard_normal((2, 4, 3, 2)), rng.standard_normal((2, 4, 3, 2))
    y, dx = layer(x), layer.backward(dy)
    g = layer.to_qkv.grads["weight"].copy()
    layer.to(xp)
    yd = layer(xp.asarray(x))
    dxd = layer.backward(xp.asarray(dy))
    assert type(yd).__name__ == "DeviceArray"
    np.testing.assert_allclose(to_host(yd), y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(to_host(dxd), dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(to_host(layer.to_qkv.grads["weight"]), g, rtol=1e-12, atol=1e-12)
