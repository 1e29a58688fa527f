"""The no_grad() shortcut of nn.ResBlock: GroupNorm+SiLU from a conv's grid onto the next conv's
lines (kernels/groupnorm_lines_cpu.py) and the fused conv -> GroupNorm+SiLU -> conv
(kernels/conv_norm_conv_cpu.py), each against the plain references."""
import numpy as np
import pytest

pytest.importorskip("numba")

from minidiff.kernels import conv3x3_norm_conv3x3_forward, reference_mode
from minidiff.kernels.conv_norm_conv_cpu import conv3x3_norm_conv3x3_forward_cpu
from minidiff.kernels.conv_reference import conv2d_forward_reference
from minidiff.kernels.groupnorm_lines_cpu import groupnorm_silu_to_lines
from minidiff.kernels.groupnorm_reference import groupnorm_silu_forward_reference
from minidiff.kernels.lines import from_lines, lines, to_lines
from minidiff.nn import ResBlock, grad_enabled, no_grad

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 2e-5, np.float64: 1e-12}


def _rand(rng, shape, dtype, scale=1.0, offset=0.0):
    return (rng.standard_normal(shape) * scale + offset).astype(dtype)


# (B, C, H, W, groups): image lanes (B = 16, 32) at odd and non-square sizes and one
# pixel (groupnorm_silu_lanes), and one image per point (B = 3, 1, 2: groupnorm_silu_line)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(16, 16, 5, 3, 8), (32, 16, 7, 6, 4), (16, 6, 1, 1, 2),
                                   (3, 8, 5, 4, 4), (1, 4, 2, 9, 1), (2, 6, 1, 1, 3)])
def test_groupnorm_on_lines_matches_reference(shape, dtype, monkeypatch):
    import minidiff.kernels.lines as lines_mod
    monkeypatch.setattr(lines_mod, "LANES_MIN_CHANNELS", 1)        # lanes whenever B allows
    B, C, H, W, G = shape
    rng = np.random.default_rng(sum(shape))
    g = lines(B, H, W, C)
    assert g.V == (16 if B % 16 == 0 else 1)
    grid = _rand(rng, (C, g.P), dtype, 2.0, 0.5)                   # junk points included
    conv_bias, weight, bias = (_rand(rng, C, dtype) for _ in range(3))
    shift = _rand(rng, (B, C), dtype)
    x = from_lines(grid, g, conv_bias, np.empty((B, C, H, W), dtype))        # the conv's output
    y, mean_ref, rstd_ref = groupnorm_silu_forward_reference(x, weight, bias, shift, G, 1e-5)
    expected = to_lines(np.ascontiguousarray(y), g, np.empty((C, g.L), dtype))
    xl = np.full((C, g.L), np.nan, dtype)                          # every value must be written
    xl, mean, rstd = groupnorm_silu_to_lines(grid, g, H, W, conv_bias, weight, bias, shift, G, 1e-5, xl)
    assert not np.isnan(xl).any()
    np.testing.assert_allclose(xl, expected, rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_allclose(mean, mean_ref, rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_allclose(rstd, rstd_ref, rtol=TOL[dtype], atol=TOL[dtype])


def _conv(x, w, b):
    return conv2d_forward_reference(x, w, b, (1, 1), (1, 1))


def _operands(rng, B, parts, C1, C_skip, C2, H, W, dtype):
    xs = [_rand(rng, (B, c, H, W), dtype) for c in parts]
    Cin = sum(parts)
    ws = [_rand(rng, (C1, Cin, 3, 3), dtype, 0.3)] + ([_rand(rng, (C_skip, Cin, 3, 3), dtype, 0.3)] if C_skip else [])
    bs = [_rand(rng, w.shape[0], dtype) for w in ws]
    norm = (_rand(rng, C1, dtype, 0.5, 1.0), _rand(rng, C1, dtype))
    shift = _rand(rng, (B, C1), dtype)
    w2, b2 = _rand(rng, (C2, C1, 3, 3), dtype, 0.3), _rand(rng, C2, dtype)
    return xs, ws, bs, norm, shift, w2, b2


# (B, parts of Cin, C1, skip channels, C2, H, W): one part without a skip conv (an identity
# ResBlock), two parts with a 3x3 skip (a U-Net up block), odd sizes; on image lanes
# (B = 16, 32) and one image per point (B = 3, and 16 with too few channels for lanes),
# and a first conv (4 -> 16 + 16) that alone would not take the second's lanes
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [(16, (16,), 16, 0, 16, 7, 7), (32, (16, 8), 16, 16, 24, 5, 6),
                                  (16, (24,), 32, 32, 32, 3, 4), (3, (5, 3), 8, 8, 6, 6, 5),
                                  (16, (8,), 8, 0, 8, 4, 4), (16, (4,), 16, 16, 16, 5, 5)])
def test_conv_norm_conv_matches_the_layers(case, dtype):
    B, parts, C1, C_skip, C2, H, W = case
    rng = np.random.default_rng(B + C1 + H)
    xs, ws, bs, (nw, nb), shift, w2, b2 = _operands(rng, B, parts, C1, C_skip, C2, H, W, dtype)
    outs = conv3x3_norm_conv3x3_forward_cpu(xs, ws, bs, nw, nb, shift, 8, 1e-5, w2, b2)
    x = np.concatenate(xs, axis=1)
    h, _, _ = groupnorm_silu_forward_reference(_conv(x, ws[0], bs[0]), nw, nb, shift, 8, 1e-5)
    expected = [_conv(h, w2, b2)] + [_conv(x, w, b) for w, b in zip(ws[1:], bs[1:])]
    assert len(outs) == len(expected)
    for out, ref in zip(outs, expected):
        assert out.dtype == dtype and out.shape == ref.shape
        np.testing.assert_allclose(out, ref, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)


def test_conv_norm_conv_is_none_on_the_reference_path():
    rng = np.random.default_rng(0)
    xs, ws, bs, (nw, nb), shift, w2, b2 = _operands(rng, 16, (16,), 16, 0, 16, 5, 5, np.float32)
    assert conv3x3_norm_conv3x3_forward(xs, ws, bs, nw, nb, shift, 8, 1e-5, w2, b2) is not None
    with reference_mode():
        assert conv3x3_norm_conv3x3_forward(xs, ws, bs, nw, nb, shift, 8, 1e-5, w2, b2) is None


def test_no_grad_restores_the_mode():
    assert grad_enabled()
    with no_grad():
        assert not grad_enabled()
        with no_grad():
            assert not grad_enabled()
        assert not grad_enabled()
    assert grad_enabled()
    with pytest.raises(KeyError):
        with no_grad():
            raise KeyError("inside")
    assert grad_enabled()


# (in, out, skip_kernel, parts): identity skip, a 3x3 skip conv sharing the input
# (with the input in two parts, as in the U-Net's up blocks), a 1x1 skip conv
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [16, 3])
@pytest.mark.parametrize("block", [(16, 16, 3, None), (24, 16, 3, (16, 8)), (16, 32, 1, None)])
def test_resblock_no_grad_forward_matches_forward(block, batch, dtype):
    cin, cout, k, parts = block
    rng = np.random.default_rng(cin + cout + k)
    layer = ResBlock(cin, cout, 12, groups=4, skip_kernel=k, rng=rng, dtype=dtype)
    for _, p, _ in layer.named_parameters():                      # non-trivial GroupNorm affines
        p += _rand(rng, p.shape, dtype, 0.1)
    x = _rand(rng, (batch, cin, 6, 5), dtype)
    x_in = x if parts is None else tuple(np.split(x, np.cumsum(parts)[:-1], axis=1))
    emb = _rand(rng, (batch, 12), dtype)
    y = layer.forward(x_in, emb)
    with no_grad():
        y_fast = layer.forward(x_in, emb)
    assert y_fast.dtype == dtype
    np.testing.assert_allclose(y_fast, y, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)
    with pytest.raises(RuntimeError, match="no_grad"):
        layer.backward(np.ones_like(y))
    layer.forward(x_in, emb)                                       # a forward with grad: backward works again
    dx = layer.backward(np.ones_like(y))
    assert (dx if parts is None else dx[0]).dtype == dtype


def test_resblock_without_kernel_keeps_backward_under_no_grad():
    """Where no kernel takes the shortcut (the reference path), no_grad() changes nothing:
    backward still works."""
    rng = np.random.default_rng(1)
    layer = ResBlock(4, 16, 12, groups=4, rng=rng, dtype=np.float64)
    x, emb = rng.standard_normal((16, 4, 4, 4)), rng.standard_normal((16, 12))
    with reference_mode():
        y = layer.forward(x, emb)
        with no_grad():
            np.testing.assert_array_equal(layer.forward(x, emb), y)
        assert layer.backward(np.ones_like(y)).shape == x.shape
