"""A ResBlock under no_grad() as one kernel call (the face's resblock_forward): the fused
conv -> GroupNorm+SiLU -> conv on the lines (kernels/resblock/cpu.py) against the plain
references, the reference path, and nn.ResBlock's no_grad forward. (GroupNorm+SiLU from a
conv's grid onto lines: tests/kernels/groupnorm/test_groupnorm_cpu_lines.py.)"""
import numpy as np
import pytest

pytest.importorskip("numba")

from minidiff.kernels import reference_mode, resblock_forward
from minidiff.kernels.conv.reference import conv2d_forward_reference
from minidiff.kernels.groupnorm.reference import groupnorm_silu_forward_reference
from minidiff.kernels.resblock.cpu import conv3x3_norm_conv3x3_forward_cpu
from minidiff.nn import ResBlock, no_grad
from lanes_cases import DTYPES, rand as _rand, TOL


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


def test_resblock_forward_gives_the_block_on_the_kernels_and_on_the_reference_path():
    """The face's resblock_forward (which replaced conv3x3_norm_conv3x3_forward, None on the
    reference path) gives the whole block's output on both paths: the layers' maths in turn."""
    rng = np.random.default_rng(0)
    xs, ws, bs, (nw, nb), shift, w2, b2 = _operands(rng, 16, (16,), 16, 0, 16, 5, 5, np.float32)
    norm_in, norm_out = (nw, nb, 8, 1e-5), (None, None, 8, 1e-5)
    x = np.concatenate(xs, axis=1)
    h, _, _ = groupnorm_silu_forward_reference(_conv(x, ws[0], bs[0]), nw, nb, shift, 8, 1e-5)
    want, _, _ = groupnorm_silu_forward_reference(_conv(h, w2, b2), None, None, None, 8, 1e-5, residual=x)
    y = resblock_forward(xs, ws, bs, norm_in, shift, w2, b2, norm_out)
    assert y is not None
    np.testing.assert_allclose(y, want, rtol=TOL[np.float32] * 10, atol=TOL[np.float32] * 10)
    with reference_mode():
        y_ref = resblock_forward(xs, ws, bs, norm_in, shift, w2, b2, norm_out)
    assert y_ref is not None
    np.testing.assert_allclose(y_ref, want, rtol=TOL[np.float32] * 10, atol=TOL[np.float32] * 10)


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


def test_resblock_on_the_reference_path_keeps_nothing_under_no_grad():
    """On the reference path too, the no_grad() forward is the whole block in one call
    (kernels.resblock_forward's reference): the same numbers, nothing kept, so backward raises
    until a forward with grad has run."""
    rng = np.random.default_rng(1)
    layer = ResBlock(4, 16, 12, groups=4, rng=rng, dtype=np.float64)
    x, emb = rng.standard_normal((16, 4, 4, 4)), rng.standard_normal((16, 12))
    with reference_mode():
        y = layer.forward(x, emb)
        with no_grad():
            np.testing.assert_array_equal(layer.forward(x, emb), y)
        with pytest.raises(RuntimeError, match="no_grad"):
            layer.backward(np.ones_like(y))
        layer.forward(x, emb)                                      # a forward with grad: backward works again
        assert layer.backward(np.ones_like(y)).shape == x.shape
