"""Activations on image lanes from layer to layer (kernels/on_lines.py, on_lines_cpu.py): each
copy against the lanes copies of lines.py, each layer against the plain references, and the
U-Net's no_grad forward on OnLines against its forward with grad."""
import numpy as np
import pytest

pytest.importorskip("numba")

from minidiff.kernels import OnLines, lines_flow, reference_mode
from minidiff.kernels import on_lines_cpu as ol
from minidiff.kernels import on_lines_grad_cpu as olg
from minidiff.kernels.conv4x4s2_cpu import depth_to_space_lanes, space_to_depth_lanes
from minidiff.kernels.conv_reference import conv2d_backward_reference, conv2d_forward_reference
from minidiff.kernels.groupnorm_lines_cpu import groupnorm_silu_to_lines
from minidiff.kernels.groupnorm_reference import groupnorm_silu_backward_reference, groupnorm_silu_forward_reference
from minidiff.kernels.lines import lane_lines, lines, to_lanes
from minidiff.kernels.upconv_cpu import phase_lines_lanes, phases_to_image_lanes
from minidiff.models.unet import UNet
from minidiff.nn import Conv2d, GroupNormSiLU, MultiheadAttention, ResBlock, UpsampleConv, no_grad

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 2e-5, np.float64: 1e-12}
SIZES = [(16, 3, 5, 3), (32, 5, 7, 6), (16, 2, 1, 1), (16, 4, 4, 4)]    # (B, C, H, W): odd, one pixel


def _rand(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def _nan_lines(C, g, dtype):
    return np.full((C, g.L), np.nan, dtype)                        # every value must be written


def _close(got, want, dtype, factor=1):
    np.testing.assert_allclose(got, want, rtol=TOL[dtype] * factor, atol=TOL[dtype] * factor)


# --- copies -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
def test_image_to_lines_and_back(size, dtype):
    B, C, H, W = size
    x = _rand(np.random.default_rng(sum(size)), size, dtype)
    X = ol.image_to_lines(x)
    g = lane_lines(B, H, W)
    assert isinstance(X, OnLines) and X.shape == size and X.g == g and X.line.dtype == dtype
    np.testing.assert_array_equal(X.line, to_lanes(x, g.R, _nan_lines(C, g, dtype)))
    np.testing.assert_array_equal(X.to_array(), x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
def test_zero_off_pixels_keeps_exactly_the_pixels(size, dtype):
    B, C, H, W = size
    g = lane_lines(B, H, W)
    line = _rand(np.random.default_rng(sum(size) + 1), (C, g.L), dtype)      # junk everywhere
    x = ol.lines_to_image(OnLines(line, g, size))                           # the pixels
    got = ol.zero_off_pixels(line.copy(), g.R, H, W, g.nseg)
    np.testing.assert_array_equal(got, ol.image_to_lines(x).line)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [(16, 3, 6, 4), (32, 2, 7, 5), (16, 2, 2, 2)])
def test_phase_lanes_from_lines_match_space_to_depth(size, dtype):
    B, C, H, W = size
    x = _rand(np.random.default_rng(sum(size) + 2), size, dtype)
    Ho, Wo = (H - 2) // 2 + 1, (W - 2) // 2 + 1
    g = lane_lines(B, Ho, Wo)
    got = ol.phase_lanes_from_lines(ol.image_to_lines(x).line, H, W, g.nseg, Ho, Wo,
                                    np.full((4 * C, g.L), np.nan, dtype))
    np.testing.assert_array_equal(got, space_to_depth_lanes(x, Ho, g.R, np.full((4 * C, g.L), np.nan, dtype)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [(16, 3, 6, 4), (32, 2, 7, 5), (16, 2, 2, 2)])
def test_lines_from_phases_match_depth_to_space(size, dtype):
    B, C, H, W = size
    rng = np.random.default_rng(sum(size) + 5)
    Ho, Wo = (H - 2) // 2 + 1, (W - 2) // 2 + 1
    g = lane_lines(B, Ho, Wo)
    dq = _rand(rng, (4 * C, g.P), dtype)
    got = olg.lines_from_phases(dq, H, W, g.nseg, Ho, Wo, _nan_lines(C, lane_lines(B, H, W), dtype))
    want = depth_to_space_lanes(dq, Ho, g.R, np.empty(size, dtype))
    np.testing.assert_array_equal(got, ol.image_to_lines(want).line)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [(16, 3, 3, 2), (32, 2, 4, 5), (16, 2, 1, 1)])
def test_phase_lines_from_lines_match_phase_lines_lanes(size, dtype):
    B, C, H, W = size
    d = _rand(np.random.default_rng(sum(size) + 6), (B, C, 2 * H, 2 * W), dtype)
    g = lane_lines(B, H, W)
    got = olg.phase_lines_from_lines(ol.image_to_lines(d).line, H, W, g.nseg, np.full((4 * C, g.L), np.nan, dtype))
    np.testing.assert_array_equal(got, phase_lines_lanes(d, g.R, np.full((4 * C, g.L), np.nan, dtype)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [(16, 3, 3, 2), (32, 2, 4, 5), (16, 2, 1, 1)])
def test_phase_grids_to_lanes_interleave_as_phases_to_image(size, dtype):
    B, C, H, W = size
    rng = np.random.default_rng(sum(size) + 3)
    g, g2 = lane_lines(B, H, W), lane_lines(B, 2 * H, 2 * W)
    grids, bias = _rand(rng, (4, C, g.P), dtype), _rand(rng, C, dtype)
    line = ol.phase_grids_to_lanes(grids, g.R, H, W, g.nseg, bias, _nan_lines(C, g2, dtype))
    y = phases_to_image_lanes(grids, g.R, bias, np.empty((B, C, 2 * H, 2 * W), dtype))
    np.testing.assert_array_equal(line, to_lanes(y, g2.R, _nan_lines(C, g2, dtype)))


def test_stack_lines_concatenates_the_channels():
    rng = np.random.default_rng(4)
    a, b = _rand(rng, (16, 3, 4, 5), np.float32), _rand(rng, (16, 2, 4, 5), np.float32)
    got = ol.stack_lines([ol.image_to_lines(a), ol.image_to_lines(b)])
    np.testing.assert_array_equal(got, ol.image_to_lines(np.concatenate([a, b], axis=1)).line)


def test_a_residual_needs_image_lanes():
    g = lines(3, 4, 4, 8)
    assert g.V == 1
    grid = np.zeros((8, g.P), np.float32)
    with pytest.raises(ValueError, match="needs image lanes"):
        groupnorm_silu_to_lines(grid, g, 4, 4, np.zeros(8, np.float32), np.ones(8, np.float32),
                                np.zeros(8, np.float32), np.zeros((3, 8), np.float32), 2, 1e-5,
                                np.empty((8, g.L), np.float32), residual=(grid, np.zeros(8, np.float32), 0))


# --- layers -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("conv", [(3, 5, 3, 1, 1), (4, 6, 4, 2, 1), (3, 4, 1, 1, 0), (2, 3, 3, 2, 1)])
def test_conv2d_on_lines_matches_the_reference(conv, dtype):
    """3x3 s1 p1 and 4x4 s2 p1 on the lines, forward and backward; a 1x1 and a 3x3 stride-2
    conv via NCHW."""
    cin, cout, k, s, p = conv
    rng = np.random.default_rng(cin + cout + k)
    layer = Conv2d(cin, cout, k, stride=s, padding=p, rng=rng, dtype=dtype)
    x = _rand(rng, (16, cin, 6, 8), dtype)
    w, b = layer.params["weight"], layer.params["bias"]
    want = conv2d_forward_reference(x, w, b, (s, s), (p, p))
    dy = _rand(rng, want.shape, dtype)
    dx_ref, dw_ref, db_ref = conv2d_backward_reference(dy, x, w, (s, s), (p, p))
    Y = layer.forward(ol.image_to_lines(x))                        # with grad
    assert isinstance(Y, OnLines) and Y.shape == want.shape
    _close(Y.to_array(), want, dtype, 10)
    np.testing.assert_array_equal(Y.line, ol.image_to_lines(Y.to_array()).line)   # zeros off the pixels
    dX = layer.backward(ol.image_to_lines(dy))
    assert isinstance(dX, OnLines) and dX.shape == x.shape
    np.testing.assert_array_equal(dX.line, ol.image_to_lines(dX.to_array()).line)
    _close(dX.to_array(), dx_ref, dtype, 10)
    _close(layer.grads["weight"], dw_ref, dtype, 100)
    _close(layer.grads["bias"], db_ref, dtype, 100)
    if k in (3, 4) and s == k - 2:                                  # the backward freed the kept input
        with pytest.raises(RuntimeError, match="nothing kept"):
            layer.backward(ol.image_to_lines(dy))
    with no_grad():
        _close(layer.forward(ol.image_to_lines(x)).to_array(), want, dtype, 10)
    if k in (3, 4) and s == k - 2:                                  # ran on the lines: kept nothing
        with pytest.raises(RuntimeError, match="nothing kept"):
            layer.backward(ol.image_to_lines(dy))


@pytest.mark.parametrize("dtype", DTYPES)
def test_upsample_conv_on_lines_matches_the_two_steps(dtype):
    rng = np.random.default_rng(5)
    layer = UpsampleConv(5, 3, rng=rng, dtype=dtype)
    x = _rand(rng, (32, 5, 3, 4), dtype)
    want = layer.conv.forward(layer.up.forward(x))
    dy = _rand(rng, want.shape, dtype)
    dx_ref = layer.up.backward(layer.conv.backward(dy))
    dw_ref, db_ref = layer.conv.grads["weight"].copy(), layer.conv.grads["bias"].copy()
    layer.zero_grad()
    Y = layer.forward(ol.image_to_lines(x))
    assert isinstance(Y, OnLines) and Y.shape == (32, 3, 6, 8)
    _close(Y.to_array(), want, dtype, 10)
    np.testing.assert_array_equal(Y.line, ol.image_to_lines(Y.to_array()).line)
    dX = layer.backward(ol.image_to_lines(dy))
    np.testing.assert_array_equal(dX.line, ol.image_to_lines(dX.to_array()).line)
    _close(dX.to_array(), dx_ref, dtype, 10)
    _close(layer.conv.grads["weight"], dw_ref, dtype, 100)
    _close(layer.conv.grads["bias"], db_ref, dtype, 100)
    with no_grad():
        layer.forward(ol.image_to_lines(x))
    with pytest.raises(RuntimeError, match="nothing kept"):
        layer.backward(ol.image_to_lines(dy))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [(16, 8, 5, 3, 4), (32, 6, 7, 7, 3), (16, 4, 1, 1, 2)])
def test_groupnorm_silu_on_lines_matches_the_reference(size, dtype):
    """Forward with shift and residual, backward with every gradient, odd sizes and one pixel."""
    B, C, H, W, G = size
    rng = np.random.default_rng(sum(size))
    x, r, dz = (_rand(rng, (B, C, H, W), dtype, 2.0) for _ in range(3))
    weight, bias, shift = _rand(rng, C, dtype) + 1, _rand(rng, C, dtype), _rand(rng, (B, C), dtype)
    want, mean_ref, rstd_ref = groupnorm_silu_forward_reference(x, weight, bias, shift, G, 1e-5, residual=r)
    grads_ref = groupnorm_silu_backward_reference(dz, x, mean_ref, rstd_ref, weight, bias, shift, G)
    X = ol.image_to_lines(x)
    Z, mean, rstd = olg.groupnorm_silu_forward_on_lines(X, weight, bias, shift, G, 1e-5, ol.image_to_lines(r))
    np.testing.assert_array_equal(Z.line, ol.image_to_lines(Z.to_array()).line)
    _close(Z.to_array(), want, dtype, 10)
    _close(mean, mean_ref, dtype, 10)
    _close(rstd, rstd_ref, dtype, 10)
    dX, dweight, dbias, dshift = olg.groupnorm_silu_backward_on_lines(ol.image_to_lines(dz), X, mean, rstd,
                                                                      weight, bias, shift, G)
    np.testing.assert_array_equal(dX.line, ol.image_to_lines(dX.to_array()).line)
    for got, ref in zip((dX.to_array(), dweight, dbias, dshift), grads_ref):
        assert got.dtype == dtype
        _close(got, ref, dtype, 100)


# (in, out, skip_kernel, parts, parts on lines): identity skip, a 3x3 skip conv sharing the
# input given in two parts (one of them NCHW), a 1x1 skip conv, an identity skip in two parts
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block", [(16, 16, 3, None, None), (24, 16, 3, (16, 8), (True, False)),
                                   (16, 32, 1, None, None), (8, 8, 3, (5, 3), (True, True))])
def test_resblock_on_lines_matches_forward_and_backward(block, dtype):
    cin, cout, k, parts, on = block
    rng = np.random.default_rng(cin + cout + k + 7)
    layer = ResBlock(cin, cout, 12, groups=4, skip_kernel=k, rng=rng, dtype=dtype)
    for _, p, _ in layer.named_parameters():                      # non-trivial GroupNorm affines
        p += _rand(rng, p.shape, dtype, 0.1)
    x = _rand(rng, (16, cin, 5, 6), dtype)
    emb = _rand(rng, (16, 12), dtype)
    if parts is None:
        x_in, x_lines = x, ol.image_to_lines(x)
    else:
        x_in = tuple(np.split(x, np.cumsum(parts)[:-1], axis=1))
        x_lines = tuple(ol.image_to_lines(p) if o else p for p, o in zip(x_in, on))
    want = layer.forward(x_in, emb)
    dy = _rand(rng, want.shape, dtype)
    dx_ref = layer.backward(dy)
    d_emb_ref = layer.d_emb.copy()
    grads_ref = {n: g.copy() for n, _, g in layer.named_parameters()}
    layer.zero_grad()
    with no_grad():                                                # the fused no_grad block
        Y = layer.forward(x_lines, emb)
    assert isinstance(Y, OnLines) and Y.shape == want.shape and Y.line.dtype == dtype
    _close(Y.to_array(), want, dtype, 10)
    np.testing.assert_array_equal(Y.line, ol.image_to_lines(Y.to_array()).line)
    with pytest.raises(RuntimeError, match="no_grad"):
        layer.backward(ol.image_to_lines(dy))
    Y = layer.forward(x_lines, emb)                                # with grad: layer by layer on lines
    _close(Y.to_array(), want, dtype, 10)
    dX = layer.backward(ol.image_to_lines(dy))
    dX = dX if parts is None else np.concatenate([d.to_array() for d in dX], axis=1)
    _close(dX if parts else dX.to_array(), dx_ref if parts is None else np.concatenate(dx_ref, axis=1), dtype, 10)
    _close(layer.d_emb, d_emb_ref, dtype, 100)
    for n, _, g in layer.named_parameters():
        _close(g, grads_ref[n], dtype, 100)


def test_attention_on_lines_matches_forward_and_backward():
    rng = np.random.default_rng(8)
    layer = MultiheadAttention(8, heads=2, rng=rng, dtype=np.float64)
    x = _rand(rng, (16, 8, 3, 3), np.float64)
    dy = _rand(rng, x.shape, np.float64)
    want = layer.forward(x)
    dx_ref = layer.backward(dy)
    with no_grad():
        Y = layer.forward(ol.image_to_lines(x))
    assert isinstance(Y, OnLines)
    _close(Y.to_array(), want, np.float64)
    layer.forward(ol.image_to_lines(x))
    _close(layer.backward(ol.image_to_lines(dy)).to_array(), dx_ref, np.float64)


def test_on_lines_arithmetic_and_errors():
    rng = np.random.default_rng(9)
    a, b = _rand(rng, (16, 5, 4, 4), np.float32), _rand(rng, (16, 5, 4, 4), np.float32)
    A = ol.image_to_lines(a)
    A += ol.image_to_lines(b)
    np.testing.assert_allclose(A.to_array(), a + b, rtol=1e-6)
    with pytest.raises(TypeError, match="OnLines"):
        A += b
    parts = olg.split_lines(A, [2, 3])
    assert [p.shape for p in parts] == [(16, 2, 4, 4), (16, 3, 4, 4)]
    np.testing.assert_allclose(olg.concat_lines(parts).to_array(), a + b, rtol=1e-6)
    with pytest.raises(ValueError, match="channels"):
        with no_grad():
            Conv2d(4, 4, 3, padding=1).forward(A)
    norm = GroupNormSiLU(1, 5)                    # on lines, the same checks as on NCHW
    with pytest.raises(ValueError, match="expected input"):
        GroupNormSiLU(1, 4).forward(A)
    with pytest.raises(ValueError, match="shift must be"):
        norm.forward(A, np.zeros((16, 4), np.float32))


# --- the U-Net ----------------------------------------------------------------------------
def _grads(model):
    return {n: g.copy() for n, _, g in model.named_parameters()}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", [dict(channel_multipliers=(1, 2, 3)),
                                    dict(channel_multipliers=(1, 2), num_blocks_per_level=2, num_classes=3)])
def test_unet_on_lines_matches_the_layers_forward_and_backward(config, dtype, monkeypatch):
    """The train step (forward, backward, every parameter's gradient) and the no_grad forward
    on lines against the NCHW layers (lines_flow switched off)."""
    model = UNet(1, 16, 50, dtype=dtype, **config)
    rng = np.random.default_rng(10)
    x, d_out = _rand(rng, (16, 1, 12, 12), dtype), _rand(rng, (16, 1, 12, 12), dtype)
    t = rng.integers(0, 50, 16)
    labels = None if model.num_classes is None else rng.integers(0, 4, 16)
    with monkeypatch.context() as m:
        m.setattr(UNet, "_on_lines", lambda self, x: False)
        want = model.forward(x, t, labels)
        dx_ref = model.backward(d_out)
        grads_ref = _grads(model)
        assert not model.ran_on_lines
    model.zero_grad()
    got = model.forward(x, t, labels)
    assert model.ran_on_lines and type(got) is np.ndarray and got.dtype == dtype
    _close(got, want, dtype, 10)
    dx = model.backward(d_out)
    assert type(dx) is np.ndarray
    _close(dx, dx_ref, dtype, 100)
    for n, g in _grads(model).items():
        scale = max(np.abs(grads_ref[n]).max(), 1e-3)
        np.testing.assert_allclose(g / scale, grads_ref[n] / scale, atol=TOL[dtype] * 100, err_msg=n)
    with no_grad():
        _close(model.forward(x, t, labels), want, dtype, 10)
    assert model.ran_on_lines
    with pytest.raises(RuntimeError):
        model.backward(d_out)


def test_unet_on_lines_only_where_it_can():
    model = UNet(1, 16, 50, channel_multipliers=(1, 2))
    x = np.zeros((16, 1, 8, 8), np.float32)
    assert model._on_lines(x) and lines_flow(x)
    assert not model._on_lines(np.zeros((3, 1, 8, 8), np.float32))   # not whole lane groups
    assert not model._on_lines(x.astype(np.float64))                # not the model's dtype
    with reference_mode():
        assert not model._on_lines(x) and not lines_flow(x)


def test_unet_train_step_on_lines_matches_central_differences():
    """An independent check of the lines path: along random directions v of the parameters and
    of x, (L(p + h v) - L(p - h v)) / 2h against <dL/dp, v>, float64, L = sum(forward * R)."""
    model = UNet(1, 16, 50, channel_multipliers=(1, 2), dtype=np.float64)
    rng = np.random.default_rng(12)
    x, R = rng.standard_normal((16, 1, 8, 8)), rng.standard_normal((16, 1, 8, 8))
    t = rng.integers(0, 50, 16)
    params = [p for _, p, _ in model.named_parameters()]
    model.zero_grad()
    model.forward(x, t)
    assert model.ran_on_lines
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
