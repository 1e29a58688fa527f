import json

import numpy as np
import pytest

from gradcheck import check_gradients
from minidiff.models.unet import UNet


def _assert_small(errors, tol=1e-6):
    worst = max(errors, key=errors.get)
    assert errors[worst] <= tol, f"{worst}: rel error {errors[worst]:.2e}"


def _tiny(**kw):
    args = dict(channel_multipliers=(1, 2), groups=2, attention_heads=2, seed=1, dtype=np.float64)
    args.update(kw)
    return UNet(1, 4, 10, **args)


def test_unet_gradients_unconditional():
    model = _tiny()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 8, 8))
    t = np.array([3, 7])
    errors = check_gradients(model, x, t, max_entries=4)
    assert "middle_attention.to_qkv.weight" in errors and "time_embed.layers.1.weight" in errors
    _assert_small(errors)


def test_unet_gradients_conditional_two_blocks_per_level():
    model = _tiny(num_classes=3, num_blocks_per_level=2)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 1, 8, 8))
    t, labels = np.array([0, 9]), np.array([2, 0])
    errors = check_gradients(model, x, t, labels, max_entries=3, seed=2)
    assert "label_embed.weight" in errors
    _assert_small(errors)
    # the label rows used (2 and 0) get gradient, the others none
    g = model.label_embed.grads["weight"]
    assert np.abs(g[[0, 2]]).max() > 0 and np.abs(g[[1, 3]]).max() == 0


def test_anchor_parameter_count_and_mnist_shapes():
    model = UNet(1, 16, 100, channel_multipliers=(1, 2, 3))
    n = model.num_params()
    print(f"UNet(1, 16, 100, channel_multipliers=(1, 2, 3)): {n:,} parameters")
    assert 300_000 <= n <= 700_000
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    y = model(x, np.array([0, 99]))
    assert y.shape == (2, 1, 28, 28)
    assert model.backward(np.ones_like(y)).shape == x.shape
    assert model.num_timesteps == 100


def test_unet_keeps_float32():
    """float32 params and input -> float32 output, input gradient and grads (no silent upcast)."""
    model = UNet(1, 8, 10, channel_multipliers=(1, 2), groups=4, num_classes=2)
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    y = model(x, np.array([0, 9]), np.array([1, 2]))
    assert y.dtype == np.float32
    assert model.backward(np.ones_like(y)).dtype == np.float32
    assert all(g.dtype == np.float32 for _, _, g in model.named_parameters())


def test_unet_rgb_and_other_sizes():
    model = UNet(3, 8, 20, channel_multipliers=(1, 2), groups=4, num_classes=5, seed=3)
    for H, W in [(8, 8), (6, 10)]:
        x = np.zeros((2, 3, H, W), np.float32)
        y = model(x, np.array([1, 2]), np.array([5, 0]))
        assert y.shape == (2, 3, H, W)
        assert model.backward(np.ones_like(y)).shape == x.shape
    with pytest.raises(ValueError, match="multiples of 2"):
        model(np.zeros((1, 3, 7, 8), np.float32), np.array([0]))


def test_size_rule_for_three_levels():
    model = UNet(1, 8, 10, channel_multipliers=(1, 2, 2), groups=4)
    with pytest.raises(ValueError, match="multiples of 4"):
        model(np.zeros((1, 1, 14, 14), np.float32), np.array([0]))
    assert model(np.zeros((1, 1, 12, 16), np.float32), np.array([0])).shape == (1, 1, 12, 16)


def test_config_is_json_and_rebuilds_the_same_model():
    model = _tiny(num_classes=4, middle_attention=False)
    cfg = json.loads(json.dumps(model.config))
    assert cfg["num_classes"] == 4 and cfg["channel_multipliers"] == [1, 2]
    assert model.middle_attention is None
    again = UNet(**cfg, dtype=np.float64)
    assert again.num_params() == model.num_params()
    for (n1, p1, _), (n2, p2, _) in zip(model.named_parameters(), again.named_parameters()):
        assert n1 == n2
        np.testing.assert_array_equal(p1, p2)


def test_labels_change_output_and_none_means_unconditioned():
    model = _tiny(num_classes=3)
    x = np.random.default_rng(5).standard_normal((2, 1, 8, 8))
    t = np.array([4, 4])
    y_none = model(x, t)
    y_zero = model(x, t, np.array([0, 0]))
    y_cls = model(x, t, np.array([1, 3]))
    np.testing.assert_array_equal(y_none, y_zero)
    assert np.abs(y_cls - y_zero).max() > 1e-6
    y_t = model(x, np.array([4, 5]), np.array([0, 0]))
    assert np.abs(y_t[1] - y_zero[1]).max() > 1e-6


def test_backward_accumulates_into_grads():
    model = _tiny()
    x = np.random.default_rng(6).standard_normal((1, 1, 8, 8))
    t = np.array([2])
    model.zero_grad()
    y = model(x, t)
    model.backward(np.ones_like(y))
    once = {n: g.copy() for n, _, g in model.named_parameters()}
    model(x, t)
    model.backward(np.ones_like(y))
    for n, _, g in model.named_parameters():
        np.testing.assert_allclose(g, 2 * once[n], rtol=1e-12, atol=1e-14)


def test_input_errors():
    model = _tiny(num_classes=3)
    plain = _tiny()
    x = np.zeros((2, 1, 8, 8))
    t = np.array([0, 1])
    with pytest.raises(ValueError, match="x must be"):
        model(np.zeros((2, 3, 8, 8)), t)
    with pytest.raises(ValueError, match="x must be"):
        model(np.zeros((2, 8, 8)), t)
    with pytest.raises(ValueError, match="t must be"):
        model(x, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="t must be"):
        model(x, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="t must be in"):
        model(x, np.array([0, 10]))
    with pytest.raises(ValueError, match=r"labels \(0 = unconditioned\) must be in"):
        model(x, t, np.array([0, 4]))
    with pytest.raises(ValueError, match=r"labels \(0 = unconditioned\) must be in"):
        model(x, t, np.array([-1, 1]))
    with pytest.raises(ValueError, match="labels .* must be an integer array of shape"):
        model(x, t, np.array([1]))
    with pytest.raises(ValueError, match="unconditional"):
        plain(x, t, np.array([0, 1]))


def test_constructor_errors():
    with pytest.raises(ValueError, match="groups"):
        UNet(1, 12, 10, groups=8)
    with pytest.raises(ValueError, match="attention_heads"):
        UNet(1, 8, 10, channel_multipliers=(1, 3), groups=4, attention_heads=16)
    with pytest.raises(ValueError, match="channel_multipliers"):
        UNet(1, 8, 10, channel_multipliers=())
    with pytest.raises(ValueError, match="num_classes"):
        UNet(1, 8, 10, num_classes=0)
    with pytest.raises(ValueError, match="model_channels"):
        UNet(1, 3, 10, groups=1)


def test_unet_runs_on_the_device_backend():
    """Same numbers through the CuPy-like test backend; t and labels may be host or device arrays."""
    from fakecupy import xp
    from minidiff.backend import to_host
    model = _tiny(num_classes=3)
    rng = np.random.default_rng(7)
    x, dy = rng.standard_normal((2, 1, 8, 8)), rng.standard_normal((2, 1, 8, 8))
    t, labels = np.array([1, 2]), np.array([3, 0])
    y = model(x, t, labels)
    dx = model.backward(dy)
    g = model.label_embed.grads["weight"].copy()
    model.zero_grad()
    model.to(xp)
    yd = model(xp.asarray(x), t, xp.asarray(labels))
    dxd = model.backward(xp.asarray(dy))
    np.testing.assert_allclose(to_host(yd), y, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(to_host(dxd), dx, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(to_host(model.label_embed.grads["weight"]), g, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="t must be"):
        model(xp.asarray(x), xp.asarray(np.array([1, 2, 3])))
