"""Activations on image lanes from layer to layer (kernels/on_lines.py, on_lines_cpu.py): each
copy against the lanes copies of lines.py, each layer against the plain references, and the
U-Net's no_grad forward on OnLines against its forward with grad."""
import numpy as np
import pytest

pytest.importorskip("numba")

from minidiff.kernels import OnLines, lines_flow, reference_mode
from minidiff.kernels import on_lines_cpu as ol
from minidiff.kernels.conv4x4s2_cpu import space_to_depth_lanes
from minidiff.kernels.conv_reference import conv2d_forward_reference
from minidiff.kernels.groupnorm_lines_cpu import groupnorm_silu_to_lines
from minidiff.kernels.lines import lane_lines, lines, to_lanes
from minidiff.kernels.upconv_cpu import phases_to_image_lanes
from minidiff.models.unet import UNet
from minidiff.nn import Conv2d, MultiheadAttention, ResBlock, UpsampleConv, no_grad

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
def test_grid_to_lanes_is_the_lines_of_the_grid_plus_bias(size, dtype):
    B, C, H, W = size
    rng = np.random.default_rng(sum(size) + 1)
    g = lane_lines(B, H, W)
    grid, bias = _rand(rng, (C + 1, g.P), dtype), _rand(rng, C, dtype)   # a spare row, junk included
    line = ol.grid_to_lanes(grid, g.R, H, W, g.nseg, bias, _nan_lines(C, g, dtype))
    x = ol.lines_to_image(OnLines(np.pad(grid[:C], ((0, 0), ((g.R + 1) * g.V, 0))), g, size))
    np.testing.assert_allclose(line, to_lanes(x + bias[:, None, None], g.R, _nan_lines(C, g, dtype)),
                               rtol=1e-6 if dtype == np.float32 else 1e-15)


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
    with pytest.raises(ValueError, match="residual needs image lanes"):
        groupnorm_silu_to_lines(grid, g, 4, 4, np.zeros(8, np.float32), np.ones(8, np.float32),
                                np.zeros(8, np.float32), np.zeros((3, 8), np.float32), 2, 1e-5,
                                np.empty((8, g.L), np.float32), residual=(grid, np.zeros(8, np.float32), 0))


# --- layers -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("conv", [(3, 5, 3, 1, 1), (4, 6, 4, 2, 1), (3, 4, 1, 1, 0), (2, 3, 3, 2, 1)])
def test_conv2d_on_lines_matches_the_reference(conv, dtype):
    """3x3 s1 p1 and 4x4 s2 p1 on the lines; a 1x1 and a 3x3 stride-2 conv via NCHW."""
    cin, cout, k, s, p = conv
    rng = np.random.default_rng(cin + cout + k)
    layer = Conv2d(cin, cout, k, stride=s, padding=p, rng=rng, dtype=dtype)
    x = _rand(rng, (16, cin, 6, 8), dtype)
    want = conv2d_forward_reference(x, layer.params["weight"], layer.params["bias"], (s, s), (p, p))
    with no_grad():
        Y = layer.forward(ol.image_to_lines(x))
    assert isinstance(Y, OnLines) and Y.shape == want.shape
    _close(Y.to_array(), want, dtype, 10)
    np.testing.assert_array_equal(Y.line, ol.image_to_lines(Y.to_array()).line)   # zeros off the pixels
    with pytest.raises(RuntimeError, match="kept nothing"):
        layer.backward(np.ones(want.shape, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_upsample_conv_on_lines_matches_the_two_steps(dtype):
    rng = np.random.default_rng(5)
    layer = UpsampleConv(5, 3, rng=rng, dtype=dtype)
    x = _rand(rng, (32, 5, 3, 4), dtype)
    want = layer.conv.forward(layer.up.forward(x))
    with no_grad():
        Y = layer.forward(ol.image_to_lines(x))
    assert isinstance(Y, OnLines) and Y.shape == (32, 3, 6, 8)
    _close(Y.to_array(), want, dtype, 10)
    np.testing.assert_array_equal(Y.line, ol.image_to_lines(Y.to_array()).line)
    with pytest.raises(RuntimeError, match="kept nothing"):
        layer.backward(np.ones(want.shape, dtype))


# (in, out, skip_kernel, parts, parts on lines): identity skip, a 3x3 skip conv sharing the
# input given in two parts (one of them NCHW), a 1x1 skip conv
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block", [(16, 16, 3, None, None), (24, 16, 3, (16, 8), (True, False)),
                                   (16, 32, 1, None, None), (8, 8, 3, (5, 3), (True, True))])
def test_resblock_on_lines_matches_forward(block, dtype):
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
    with no_grad():
        Y = layer.forward(x_lines, emb)
    assert isinstance(Y, OnLines) and Y.shape == want.shape and Y.line.dtype == dtype
    _close(Y.to_array(), want, dtype, 10)
    np.testing.assert_array_equal(Y.line, ol.image_to_lines(Y.to_array()).line)
    with pytest.raises(RuntimeError, match="no_grad"):
        layer.backward(np.ones_like(want))


def test_attention_on_lines_matches_forward():
    rng = np.random.default_rng(8)
    layer = MultiheadAttention(8, heads=2, rng=rng, dtype=np.float64)
    x = _rand(rng, (16, 8, 3, 3), np.float64)
    want = layer.forward(x)
    with no_grad():
        Y = layer.forward(ol.image_to_lines(x))
    assert isinstance(Y, OnLines)
    _close(Y.to_array(), want, np.float64)


def test_on_lines_inputs_need_no_grad():
    rng = np.random.default_rng(9)
    X = ol.image_to_lines(_rand(rng, (16, 4, 4, 4), np.float32))
    for layer, args in ((Conv2d(4, 4, 3, padding=1), ()), (UpsampleConv(4, 4), ()),
                        (ResBlock(4, 4, 6, groups=2), (np.zeros((16, 6), np.float32),))):
        with pytest.raises(RuntimeError, match="no_grad"):
            layer.forward(X, *args)
    with pytest.raises(ValueError, match="channels"):
        with no_grad():
            Conv2d(5, 4, 3, padding=1).forward(X)


# --- the U-Net ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", [dict(channel_multipliers=(1, 2, 3)),
                                    dict(channel_multipliers=(1, 2), num_blocks_per_level=2, num_classes=3)])
def test_unet_no_grad_forward_on_lines_matches_forward(config, dtype):
    model = UNet(1, 16, 50, dtype=dtype, **config)
    rng = np.random.default_rng(10)
    x = _rand(rng, (16, 1, 12, 12), dtype)
    t = rng.integers(0, 50, 16)
    labels = None if model.num_classes is None else rng.integers(0, 4, 16)
    want = model.forward(x, t, labels)
    with no_grad():
        assert model._on_lines(x)
        got = model.forward(x, t, labels)
    assert type(got) is np.ndarray and got.dtype == dtype
    _close(got, want, dtype, 10)
    with pytest.raises(RuntimeError):
        model.backward(np.ones_like(want))


def test_unet_on_lines_only_where_it_can():
    model = UNet(1, 16, 50, channel_multipliers=(1, 2))
    x = np.zeros((16, 1, 8, 8), np.float32)
    assert not model._on_lines(x)                                  # with grad
    with no_grad():
        assert model._on_lines(x) and lines_flow(x)
        assert not model._on_lines(np.zeros((3, 1, 8, 8), np.float32))   # not whole lane groups
        assert not model._on_lines(x.astype(np.float64))                # not the model's dtype
        with reference_mode():
            assert not model._on_lines(x)
