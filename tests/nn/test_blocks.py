import numpy as np
import pytest

from gradcheck import assert_gradients, numerical_grad, rel_error
from minidiff.nn import GroupNormSiLU
from minidiff.nn.blocks import ConvEmbed, ResBlock, UpsampleConv, downsample


def _check_d_emb(block, x, emb, seed=0):
    """d loss / d emb from backward (block.d_emb) against central differences."""
    R = np.random.default_rng(seed).standard_normal(block.forward(x, emb).shape)
    block.forward(x, emb)
    block.backward(R)
    analytic = block.d_emb.copy()
    numeric = numerical_grad(lambda: float(np.sum(block.forward(x, emb) * R)), emb)
    assert analytic.shape == emb.shape
    assert rel_error(analytic, numeric) <= 1e-6


@pytest.mark.parametrize("in_ch,out_ch,skip_kernel", [(4, 4, 3), (2, 4, 3), (2, 4, 1)])
def test_resblock_gradients_float64(in_ch, out_ch, skip_kernel):
    rng = np.random.default_rng(0)
    block = ResBlock(in_ch, out_ch, emb_dim=6, groups=2, skip_kernel=skip_kernel, rng=1, dtype=np.float64)
    x = rng.standard_normal((2, in_ch, 4, 3))
    emb = rng.standard_normal((2, 6))
    errors = assert_gradients(block, x, emb, tol=1e-6)
    assert ("skip.weight" in errors) == (in_ch != out_ch)
    if in_ch != out_ch:
        assert block.skip.params["weight"].shape == (out_ch, in_ch, skip_kernel, skip_kernel)
    assert "in_layers.emb_proj.weight" in errors
    _check_d_emb(block, x, emb)


def test_convembed_gradients_float64():
    rng = np.random.default_rng(2)
    block = ConvEmbed(3, 4, emb_dim=5, groups=2, rng=3, dtype=np.float64)
    x = rng.standard_normal((2, 3, 3, 3))
    emb = rng.standard_normal((2, 5))
    assert_gradients(block, x, emb, tol=1e-6)
    _check_d_emb(block, x, emb)


def test_embedding_is_broadcast_per_channel():
    """Changing emb shifts each output channel by one value before the activation."""
    block = ConvEmbed(2, 4, emb_dim=3, groups=1, rng=0, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 3))
    e1, e2 = np.zeros((1, 3)), np.ones((1, 3))
    block.forward(x, e1)
    pre1 = block.norm.preactivation()                      # h = GroupNorm(conv(x)) + e
    block.forward(x, e2)
    diff = block.norm.preactivation() - pre1                 # (1, 4, 3, 3)
    np.testing.assert_allclose(diff, diff[:, :, :1, :1] * np.ones_like(diff), atol=1e-12)
    assert np.abs(diff).max() > 0


def test_resblock_shapes_dtype_and_errors():
    block = ResBlock(4, 8, emb_dim=16, groups=4, rng=0)
    x = np.zeros((3, 4, 6, 5), np.float32)
    emb = np.zeros((3, 16), np.float32)
    y = block(x, emb)
    assert y.shape == (3, 8, 6, 5) and y.dtype == np.float32
    dx = block.backward(np.ones_like(y))
    assert dx.shape == x.shape and block.d_emb.shape == emb.shape and dx.dtype == np.float32
    with pytest.raises(ValueError, match="emb must be"):
        block(x, np.zeros((2, 16), np.float32))
    with pytest.raises(ValueError, match="emb must be"):
        block(x, np.zeros((3, 15), np.float32))
    with pytest.raises(ValueError, match="x must be"):
        block(np.zeros((3, 5, 6, 5), np.float32), emb)
    with pytest.raises(ValueError, match="skip_kernel"):
        ResBlock(4, 8, emb_dim=16, groups=4, skip_kernel=2)


def test_upsample_conv_and_downsample():
    rng = np.random.default_rng(4)
    up = UpsampleConv(3, 2, rng=0, dtype=np.float64)
    x = rng.standard_normal((2, 3, 2, 3))
    assert up(x).shape == (2, 2, 4, 6)
    assert_gradients(up, x, tol=1e-6)
    down = downsample(3, 5, rng=0, dtype=np.float64)
    x = rng.standard_normal((2, 3, 6, 4))
    assert down(x).shape == (2, 5, 3, 2)
    assert_gradients(down, x, tol=1e-6)


@pytest.mark.parametrize("skip_kernel", [3, 1])
def test_resblock_on_input_parts_float64(skip_kernel):
    """x given as a tuple of channel parts (the U-Net's skip concatenation) gives the
    block's output on the concatenation, and backward returns the gradient of each part,
    checked against central differences (a 3x3 skip runs with the first conv as one)."""
    rng = np.random.default_rng(6)
    block = ResBlock(5, 4, emb_dim=3, groups=2, skip_kernel=skip_kernel, rng=2, dtype=np.float64)
    a, b = rng.standard_normal((2, 2, 5, 4)), rng.standard_normal((2, 3, 5, 4))
    emb = rng.standard_normal((2, 3))
    y_cat = block(np.concatenate([a, b], axis=1), emb)
    y = block((a, b), emb)
    np.testing.assert_allclose(y, y_cat, rtol=1e-12, atol=1e-12)
    R = rng.standard_normal(y.shape)
    block.zero_grad()
    da, db = block.backward(R)
    assert block.shared == (skip_kernel == 3)
    assert da.shape == a.shape and db.shape == b.shape
    for part, analytic in ((a, da), (b, db)):
        numeric = numerical_grad(lambda: float(np.sum(block((a, b), emb) * R)), part)
        assert rel_error(analytic, numeric) <= 1e-6
    for name in ("in_layers.conv.weight", "in_layers.conv.bias", "skip.weight", "skip.bias"):
        layer_name, param = name.rsplit(".", 1)
        layer = dict(block.named_layers())[layer_name]
        numeric = numerical_grad(lambda: float(np.sum(block((a, b), emb) * R)), layer.params[param])
        assert rel_error(layer.grads[param], numeric) <= 1e-6, name
    with pytest.raises(ValueError, match="sum C_i = 5"):
        block((a, a), emb)


def test_blocks_keep_their_parameter_names():
    """Checkpoints from before the fusion still load: same names, same order."""
    block = ResBlock(2, 4, emb_dim=6, groups=2, rng=0)
    names = list(block.state_dict())
    assert names == ["in_layers.conv.weight", "in_layers.conv.bias", "in_layers.norm.weight",
                     "in_layers.norm.bias", "in_layers.emb_proj.weight", "in_layers.emb_proj.bias",
                     "out_conv.weight", "out_conv.bias", "out_norm.weight", "out_norm.bias",
                     "skip.weight", "skip.bias"]
    assert isinstance(block.out_norm, GroupNormSiLU) and isinstance(ConvEmbed(2, 4, 6, 2).norm, GroupNormSiLU)
