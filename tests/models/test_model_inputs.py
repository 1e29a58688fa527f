"""The models (MLP, UNet, LeNet5) and softmax_cross_entropy: any memory layout of x and dy and a
batch of 1 give the C-contiguous result; an empty batch, a non-float32/64 x, timesteps or labels
out of range or of the wrong kind, and labels for an unconditional model are refused by name
before any work."""
import numpy as np
import pytest

from layouts import NON_C, as_layout, assert_same_results
from minidiff.models import MLP, LeNet5, UNet, softmax_cross_entropy


def _mlp():
    return MLP(2, 8, 10, seed=0, dtype=np.float64)


def _unet(num_classes=None):
    return UNet(1, 8, 10, channel_multipliers=(1, 2), groups=4, attention_heads=2, num_classes=num_classes,
                seed=0, dtype=np.float64)


MODELS = {
    "MLP": (_mlp, (2,), lambda B: (np.arange(B) % 10,)),
    "UNet": (lambda: _unet(3), (1, 4, 4), lambda B: (np.arange(B) % 10, np.arange(B) % 4)),
    "LeNet5": (lambda: LeNet5(dtype=np.float64), (1, 28, 28), lambda B: ()),
}


def _forward_backward(make, x, cond, seed=0):
    model = make()
    y = model.forward(x, *cond)
    dy = np.random.default_rng(seed).standard_normal(y.shape)
    dx = model.backward(dy)
    return y, dx, model.flat()[1].copy()                     # output, input gradient, every parameter gradient


@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_any_layout_any_batch(name, B):
    make, shape, cond = MODELS[name]
    x = np.random.default_rng(B).standard_normal((B,) + shape)
    want = _forward_backward(make, x, cond(B))
    for layout in NON_C:
        assert_same_results(_forward_backward(make, as_layout(x, layout), cond(B)), want, f"{name} x {layout}",
                            rtol=1e-10, atol=1e-12)
        if cond(B):
            assert_same_results(_forward_backward(make, x, tuple(as_layout(c, layout) for c in cond(B))), want,
                                f"{name} t/labels {layout}", rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_empty_batch_is_refused_by_name(name):
    make, shape, cond = MODELS[name]
    with pytest.raises(ValueError, match=rf"{name}: x must be a batch of B >= 1 samples, got an empty batch \(0, "):
        make().forward(np.zeros((0,) + shape), *cond(0))


@pytest.mark.parametrize("dtype", [np.float16, np.int64])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_other_dtypes_are_refused_by_name(name, dtype):
    make, shape, cond = MODELS[name]
    with pytest.raises(TypeError, match=rf"{name}: x must be float32 or float64, got {np.dtype(dtype)}"):
        make().forward(np.zeros((2,) + shape, dtype), *cond(2))


@pytest.mark.parametrize("t, error, message", [
    (np.array([1, 10]), ValueError, r"t must be in \[0, 9\], got values in \[1, 10\]"),
    (np.array([-1, 2]), ValueError, r"t must be in \[0, 9\]"),
    (np.array([1.0, 2.0]), ValueError, r"t must be an integer array of shape \(2,\), got float64"),
    (np.array([1, 2, 3]), ValueError, r"t must be an integer array of shape \(2,\), got int64 \(3,\)"),
])
def test_mlp_checks_t(t, error, message):
    """t out of range used to be a raw IndexError, a float t NumPy's indexing error."""
    with pytest.raises(error, match="MLP: " + message):
        _mlp().forward(np.zeros((2, 2)), t)


def test_lenet_predict_and_features_refuse_an_empty_batch():
    model = LeNet5()
    for call in (model.predict, model.features):
        with pytest.raises(ValueError, match=r"LeNet5: x must be a batch of B >= 1 samples"):
            call(np.zeros((0, 1, 28, 28), np.float32))


def test_softmax_cross_entropy_any_layout_and_empty_batch():
    rng = np.random.default_rng(0)
    z, labels = rng.standard_normal((4, 10)), np.array([1, 0, 9, 3])
    want = softmax_cross_entropy(z, labels)
    for layout in NON_C:
        got = softmax_cross_entropy(as_layout(z, layout), as_layout(labels, layout))
        assert got[0] == pytest.approx(want[0], rel=1e-14)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-14, atol=1e-16)
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: logits must be a batch of B >= 1 samples"):
        softmax_cross_entropy(np.zeros((0, 10)), np.zeros(0, np.int64))


@pytest.mark.parametrize("call, error, message", [
    (lambda: MLP(2, 3, 10), ValueError, r"MLP: d_hid must be even and >= 4 \(sinusoidal embedding\), got 3"),
    (lambda: MLP(2, 8, 10, seed=-1), ValueError, r"MLP: seed must be an integer >= 0, got -1"),
    (lambda: MLP(2, 8, 10, seed="x"), TypeError, r"MLP: seed must be an integer >= 0, got 'x'"),
    (lambda: UNet(1, 8, 10, seed="x"), TypeError, r"UNet: seed must be an integer >= 0 or a numpy Generator, got 'x'"),
    (lambda: UNet(1, 8, 10, seed=-3), ValueError, r"UNet: seed must be an integer >= 0 or a numpy Generator"),
    (lambda: UNet(1, 8, 10, channel_multipliers=("a",)), ValueError,
     r"UNet: channel_multipliers entry must be a positive integer, got 'a'"),
    (lambda: UNet(1, 8, 10, channel_multipliers=3), ValueError,
     r"UNet: channel_multipliers must be a sequence of positive integers, got 3"),
    (lambda: LeNet5(seed=-1), ValueError, r"LeNet5: seed must be an integer >= 0, got -1"),
])
def test_constructor_checks(call, error, message):
    with pytest.raises(error, match=message):
        call()
