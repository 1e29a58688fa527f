"""The layers on image lanes (each operation's lanes.py: conv/, upconv/, groupnorm/, resblock/), reached through the face
when a layer is given an OnLines: each against the plain references, forward and backward;
OnLines arithmetic and the layers' checks on lanes."""
import numpy as np
import pytest

pytest.importorskip("numba")

from minidiff.kernels import OnLines, to_array
from minidiff.kernels.conv.reference import conv2d_backward_reference, conv2d_forward_reference
from minidiff.kernels.groupnorm.reference import groupnorm_silu_backward_reference, groupnorm_silu_forward_reference
from minidiff.kernels.groupnorm import lanes as gl
from minidiff.kernels.lines import copies as ol
from minidiff.nn import Conv2d, GroupNormSiLU, ResBlock, UpsampleConv, no_grad
from lanes_cases import close as _close, DTYPES, rand as _rand


# --- layers -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("conv", [(3, 5, 3, 1, 1), (4, 6, 4, 2, 1), (3, 4, 1, 1, 0), (2, 3, 3, 2, 1)])
def test_conv2d_on_lines_matches_the_reference(conv, dtype):
    """3x3 s1 p1 and 4x4 s2 p1 on the lines, forward and backward; a 1x1 and a 3x3 stride-2
    conv via NCHW (the face takes them off the lanes and back). Every conv frees its input in
    backward and keeps nothing under no_grad."""
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
    _close(to_array(Y), want, dtype, 10)
    np.testing.assert_array_equal(Y.line, ol.image_to_lines(to_array(Y)).line)   # zeros off the pixels
    dX = layer.backward(ol.image_to_lines(dy))
    assert isinstance(dX, OnLines) and dX.shape == x.shape
    np.testing.assert_array_equal(dX.line, ol.image_to_lines(to_array(dX)).line)
    _close(to_array(dX), dx_ref, dtype, 10)
    _close(layer.grads["weight"], dw_ref, dtype, 100)
    _close(layer.grads["bias"], db_ref, dtype, 100)
    with pytest.raises(RuntimeError, match="nothing kept"):         # the backward freed the kept input
        layer.backward(ol.image_to_lines(dy))
    with no_grad():
        _close(to_array(layer.forward(ol.image_to_lines(x))), want, dtype, 10)
    with pytest.raises(RuntimeError, match="nothing kept"):         # under no_grad: kept nothing
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
    _close(to_array(Y), want, dtype, 10)
    np.testing.assert_array_equal(Y.line, ol.image_to_lines(to_array(Y)).line)
    dX = layer.backward(ol.image_to_lines(dy))
    np.testing.assert_array_equal(dX.line, ol.image_to_lines(to_array(dX)).line)
    _close(to_array(dX), dx_ref, dtype, 10)
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
    Z, mean, rstd = gl.groupnorm_silu_forward_on_lines(X, weight, bias, shift, G, 1e-5, ol.image_to_lines(r))
    np.testing.assert_array_equal(Z.line, ol.image_to_lines(to_array(Z)).line)
    _close(to_array(Z), want, dtype, 10)
    _close(mean, mean_ref, dtype, 10)
    _close(rstd, rstd_ref, dtype, 10)
    dX, dweight, dbias, dshift = gl.groupnorm_silu_backward_on_lines(ol.image_to_lines(dz), X, mean, rstd,
                                                                      weight, bias, shift, G)
    np.testing.assert_array_equal(dX.line, ol.image_to_lines(to_array(dX)).line)
    for got, ref in zip((to_array(dX), dweight, dbias, dshift), grads_ref):
        assert got.dtype == dtype
        _close(got, ref, dtype, 100)


# (in, out, skip_kernel, parts, parts on lines): identity skip, a 3x3 skip conv sharing the
# input given in two parts (one of them NCHW: the face puts it on lanes too), a 1x1 skip conv,
# an identity skip in two parts
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block", [(16, 16, 3, None, None),
                                   (24, 16, 3, (16, 8), (True, False)),
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
    _close(to_array(Y), want, dtype, 10)
    np.testing.assert_array_equal(Y.line, ol.image_to_lines(to_array(Y)).line)
    with pytest.raises(RuntimeError, match="no_grad"):
        layer.backward(ol.image_to_lines(dy))
    Y = layer.forward(x_lines, emb)                                # with grad: layer by layer on lines
    _close(to_array(Y), want, dtype, 10)
    dX = layer.backward(ol.image_to_lines(dy))
    dX = dX if parts is None else np.concatenate([to_array(d) for d in dX], axis=1)
    _close(dX if parts else to_array(dX), dx_ref if parts is None else np.concatenate(dx_ref, axis=1), dtype, 10)
    _close(layer.d_emb, d_emb_ref, dtype, 100)
    for n, _, g in layer.named_parameters():
        _close(g, grads_ref[n], dtype, 100)


def test_on_lines_arithmetic_and_errors():
    rng = np.random.default_rng(9)
    a, b = _rand(rng, (16, 5, 4, 4), np.float32), _rand(rng, (16, 5, 4, 4), np.float32)
    A = ol.image_to_lines(a)
    A += ol.image_to_lines(b)
    np.testing.assert_allclose(to_array(A), a + b, rtol=1e-6)
    with pytest.raises(TypeError, match="OnLines"):
        A += b
    parts = ol.split_lines(A, [2, 3])
    assert [p.shape for p in parts] == [(16, 2, 4, 4), (16, 3, 4, 4)]
    np.testing.assert_allclose(to_array(ol.concat_lines(parts)), a + b, rtol=1e-6)
    with pytest.raises(ValueError, match="channels"):
        with no_grad():
            Conv2d(4, 4, 3, padding=1).forward(A)
    norm = GroupNormSiLU(1, 5)                    # on lines, the same checks as on NCHW
    with pytest.raises(ValueError, match="expected input"):
        GroupNormSiLU(1, 4).forward(A)
    with pytest.raises(ValueError, match="shift must be"):
        norm.forward(A, np.zeros((16, 4), np.float32))
