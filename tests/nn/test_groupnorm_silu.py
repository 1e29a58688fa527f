"""The fused GroupNormSiLU layer: errors, float64 gradient checks (kernel and reference paths),
and equality with GroupNorm then SiLU. (Its kernels: tests/kernels/groupnorm/.)"""
import numpy as np
import pytest
from gradcheck import assert_gradients

from minidiff import kernels
from minidiff.nn import GroupNorm, GroupNormSiLU, Layer, SiLU

DTYPES = [np.float32, np.float64]


def test_layer_errors():
    with pytest.raises(ValueError, match="must divide"):
        GroupNormSiLU(4, 6)
    layer = GroupNormSiLU(2, 4)
    with pytest.raises(ValueError, match="expected input"):
        layer.forward(np.zeros((2, 6, 3, 3), np.float32))
    with pytest.raises(ValueError, match="shift must be"):
        layer.forward(np.zeros((2, 4, 3, 3), np.float32), np.zeros((2, 3), np.float32))


# --- the layer ------------------------------------------------------------------------
class ShiftedGroupNormSiLU(Layer):
    """GroupNormSiLU with its shift (B, C) held as a parameter, so gradcheck covers d_shift."""

    def __init__(self, G, C, B):
        super().__init__()
        self.gn = GroupNormSiLU(G, C, dtype=np.float64)
        self.add_param("shift", np.random.default_rng(8).standard_normal((B, C)))

    def forward(self, x):
        return self.gn.forward(x, self.params["shift"])

    def backward(self, dy):
        dx = self.gn.backward(dy)
        self.grads["shift"] += self.gn.d_shift
        return dx


def _random_affine(layer, seed):
    rng = np.random.default_rng(seed)
    layer.params["weight"][...] = rng.uniform(0.5, 1.5, layer.num_channels)
    layer.params["bias"][...] = rng.standard_normal(layer.num_channels)


@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("G, C", [(1, 4), (2, 4), (4, 4), (3, 6)])
def test_groupnorm_silu_gradients(G, C, reference):
    x = np.random.default_rng(9).standard_normal((2, C, 3, 3)) * 2 + 0.5
    layer = GroupNormSiLU(G, C, dtype=np.float64)
    _random_affine(layer, 10)
    with kernels.reference_mode(reference):
        errors = assert_gradients(layer, x, tol=1e-6)
        assert layer.d_shift is None and set(errors) == {"input", "weight", "bias"}
        shifted = ShiftedGroupNormSiLU(G, C, B=2)
        _random_affine(shifted.gn, 11)
        errors = assert_gradients(shifted, x, tol=1e-6)
    assert set(errors) == {"input", "shift", "gn.weight", "gn.bias"}


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_layer_equals_groupnorm_then_silu(dtype):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((3, 8, 5, 4)).astype(dtype)
    sh = rng.standard_normal((3, 8)).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    fused, gn, act = GroupNormSiLU(4, 8, dtype=dtype), GroupNorm(4, 8, dtype=dtype), SiLU()
    _random_affine(fused, 13)
    _random_affine(gn, 13)
    y = fused.forward(x, sh)
    want = act.forward(gn.forward(x) + sh[:, :, None, None])
    dx = fused.backward(dy)
    dh = act.backward(dy)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    assert y.dtype == dx.dtype == fused.d_shift.dtype == fused.grads["weight"].dtype == dtype
    np.testing.assert_allclose(y, want, **tol)
    np.testing.assert_allclose(dx, gn.backward(dh), **tol)
    np.testing.assert_allclose(fused.d_shift, dh.sum(axis=(2, 3)), **tol)
    np.testing.assert_allclose(fused.grads["weight"], gn.grads["weight"], **tol)
    np.testing.assert_allclose(fused.grads["bias"], gn.grads["bias"], **tol)
