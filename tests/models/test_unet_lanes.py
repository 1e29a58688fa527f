"""The U-Net on image lanes (minidiff/models/unet.py chooses the layout; kernels/lines/ runs it):
the train step and the no_grad forward against the layers on NCHW arrays, where it takes
lanes, the attention off and back on lanes, and central differences."""
import numpy as np
import pytest

pytest.importorskip("numba")

from minidiff.kernels import OnLines, lanes_fit, reference_mode, to_array
from minidiff.kernels.lines import copies as ol
from minidiff.models.unet import UNet
from minidiff.nn import MultiheadAttention, no_grad
from lanes_cases import close as _close, DTYPES, rand as _rand, TOL


def _grads(model):
    return {n: g.copy() for n, _, g in model.named_parameters()}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", [dict(channel_multipliers=(1, 2, 3)),
                                    dict(channel_multipliers=(1, 2), num_blocks_per_level=2, num_classes=3)])
def test_unet_on_lanes_matches_the_layers_forward_and_backward(config, dtype, monkeypatch):
    """The train step (forward, backward, every parameter's gradient) and the no_grad forward
    on lanes against the NCHW layers (UNet._use_lanes switched off)."""
    model = UNet(1, 16, 50, dtype=dtype, **config)
    rng = np.random.default_rng(10)
    x, d_out = _rand(rng, (16, 1, 12, 12), dtype), _rand(rng, (16, 1, 12, 12), dtype)
    t = rng.integers(0, 50, 16)
    labels = None if model.num_classes is None else rng.integers(0, 4, 16)
    with monkeypatch.context() as m:
        m.setattr(UNet, "_use_lanes", lambda self, x: False)
        want = model.forward(x, t, labels)
        dx_ref = model.backward(d_out)
        grads_ref = _grads(model)
        assert not model.on_lanes
    model.zero_grad()
    got = model.forward(x, t, labels)
    assert model.on_lanes and type(got) is np.ndarray and got.dtype == dtype
    _close(got, want, dtype, 10)
    dx = model.backward(d_out)
    assert type(dx) is np.ndarray
    _close(dx, dx_ref, dtype, 100)
    for n, g in _grads(model).items():
        scale = max(np.abs(grads_ref[n]).max(), 1e-3)
        np.testing.assert_allclose(g / scale, grads_ref[n] / scale, atol=TOL[dtype] * 100, err_msg=n)
    with no_grad():
        _close(model.forward(x, t, labels), want, dtype, 10)
    assert model.on_lanes
    with pytest.raises(RuntimeError):
        model.backward(d_out)


def test_unet_on_lanes_only_where_it_can():
    model = UNet(1, 16, 50, channel_multipliers=(1, 2))
    x = np.zeros((16, 1, 8, 8), np.float32)
    assert model._use_lanes(x) and lanes_fit(x)
    assert not model._use_lanes(np.zeros((3, 1, 8, 8), np.float32))   # not whole lane groups
    assert not model._use_lanes(x.astype(np.float64))                # not the model's dtype
    with reference_mode():
        assert not model._use_lanes(x) and not lanes_fit(x)


def test_attention_off_and_back_on_lanes_matches_forward_and_backward():
    """The attention has no lanes kernel: the U-Net takes its activation off the lanes for it and
    puts the result back on (UNet._off_lanes), in the no_grad forward, the forward and the backward."""
    rng = np.random.default_rng(8)
    layer = MultiheadAttention(8, heads=2, rng=rng, dtype=np.float64)
    model = UNet(1, 16, 50, channel_multipliers=(1, 2), dtype=np.float64)
    model.on_lanes = True                                          # as a forward on lanes sets it
    x = _rand(rng, (16, 8, 3, 3), np.float64)
    dy = _rand(rng, x.shape, np.float64)
    want = layer.forward(x)
    dx_ref = layer.backward(dy)
    with no_grad():
        Y = model._off_lanes(layer.forward, ol.image_to_lines(x))
    assert isinstance(Y, OnLines)
    _close(to_array(Y), want, np.float64)
    model._off_lanes(layer.forward, ol.image_to_lines(x))
    _close(to_array(model._off_lanes(layer.backward, ol.image_to_lines(dy))), dx_ref, np.float64)


def test_unet_train_step_on_lanes_matches_central_differences():
    """An independent check of the lines path: along random directions v of the parameters and
    of x, (L(p + h v) - L(p - h v)) / 2h against <dL/dp, v>, float64, L = sum(forward * R)."""
    model = UNet(1, 16, 50, channel_multipliers=(1, 2), dtype=np.float64)
    rng = np.random.default_rng(12)
    x, R = rng.standard_normal((16, 1, 8, 8)), rng.standard_normal((16, 1, 8, 8))
    t = rng.integers(0, 50, 16)
    params = [p for _, p, _ in model.named_parameters()]
    model.zero_grad()
    model.forward(x, t)
    assert model.on_lanes
    dx = model.backward(R)
    grads = [g.copy() for _, _, g in model.named_parameters()]
    for trial in range(3):
        vs = [rng.standard_normal(p.shape) for p in params]
        vx = rng.standard_normal(x.shape)
        norm = np.sqrt(sum(float(np.sum(v * v)) for v in vs) + float(np.sum(vx * vx)))
        vs, vx = [v / norm for v in vs], vx / norm                  # a unit direction
        h = 1e-4

        def loss(sign):
            for p, v in zip(params, vs):
                p += sign * h * v
            out = float(np.sum(model.forward(x + sign * h * vx, t) * R))
            for p, v in zip(params, vs):
                p -= sign * h * v
            return out

        numeric = (loss(1) - loss(-1)) / (2 * h)
        analytic = sum(float(np.sum(g * v)) for g, v in zip(grads, vs)) + float(np.sum(dx * vx))
        assert abs(numeric - analytic) <= 1e-6 * max(abs(analytic), 1.0), (trial, numeric, analytic)
