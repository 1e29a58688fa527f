"""The convolution references against a naive-loop oracle: kernels/conv/reference.py (im2col +
GEMM, any shape) and, through the face on the reference path, kernels/conv/reference_3x3.py
(3x3 stride 1 padding 1 on padded lines)."""
import numpy as np
import pytest

from minidiff import kernels
from minidiff.kernels.conv.reference import col2im, conv2d_backward_reference, conv2d_forward_reference, im2col
from minidiff.kernels.conv.reference_3x3 import line_taps, to_line
from conv_cases import BIG_C_CASES, CASES


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def naive_conv2d(x, w, b, stride, padding):
    """Direct loops: y[n,o,oh,ow] = b[o] + sum_{c,i,j} w[o,c,i,j] x_pad[n,c,sh*oh+i,sw*ow+j]."""
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    B, C = x.shape[:2]
    Co, _, kh, kw = w.shape
    Ho, Wo = (xpad.shape[2] - kh) // sh + 1, (xpad.shape[3] - kw) // sw + 1
    y = np.zeros((B, Co, Ho, Wo))
    for n in range(B):
        for o in range(Co):
            for oh in range(Ho):
                for ow in range(Wo):
                    for c in range(C):
                        for i in range(kh):
                            for j in range(kw):
                                y[n, o, oh, ow] += w[o, c, i, j] * xpad[n, c, sh * oh + i, sw * ow + j]
    if b is not None:
        y += b[None, :, None, None]
    return y


def naive_conv2d_backward(dy, x, w, stride, padding):
    """The same loops, each term's derivative scattered into dx and dw."""
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxpad, dw = np.zeros_like(xpad), np.zeros_like(w)
    B, C = x.shape[:2]
    Co, _, kh, kw = w.shape
    _, _, Ho, Wo = dy.shape
    for n in range(B):
        for o in range(Co):
            for oh in range(Ho):
                for ow in range(Wo):
                    for c in range(C):
                        for i in range(kh):
                            for j in range(kw):
                                g = dy[n, o, oh, ow]
                                dw[o, c, i, j] += g * xpad[n, c, sh * oh + i, sw * ow + j]
                                dxpad[n, c, sh * oh + i, sw * ow + j] += g * w[o, c, i, j]
    dx = dxpad[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]]
    return dx, dw, dy.sum(axis=(0, 2, 3))


LINE_CASES = [                           # 3x3 same: reference_3x3.py's padded lines (face)
    (1, 1, 2, 3, 3, 3, 1, 1),           # batch 1, one channel, the smallest
    (3, 2, 1, 7, 4, 3, 1, 1),           # odd, non-square, one output channel
    (2, 11, 5, 1, 6, 3, 1, 1),          # a single row
]


def _random(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


def face_forward_reference(x, w, b, stride, padding):
    """The face on the reference path: reference_3x3.py for 3x3 s1 p1, else reference.py."""
    with kernels.reference_mode():
        return kernels.conv2d_forward(x, w, b, stride, padding)


def face_backward_reference(dy, x, w, stride, padding):
    with kernels.reference_mode():
        return kernels.conv2d_backward(dy, x, w, stride, padding)


# reference -> (forward, backward)
REFERENCES = {"im2col": (conv2d_forward_reference, conv2d_backward_reference),
              "face": (face_forward_reference, face_backward_reference)}


@pytest.mark.parametrize("reference", REFERENCES)
@pytest.mark.parametrize("B, Cin, Cout, H, W, k, s, p", CASES + BIG_C_CASES + LINE_CASES)
def test_reference_matches_naive_loops(B, Cin, Cout, H, W, k, s, p, reference):
    forward, backward = REFERENCES[reference]
    kh, kw = _pair(k)
    x, w, b = _random((B, Cin, H, W), 1), _random((Cout, Cin, kh, kw), 2), _random((Cout,), 3)
    y = forward(x, w, b, s, p)
    np.testing.assert_allclose(y, naive_conv2d(x, w, b, s, p), rtol=1e-12, atol=1e-12)
    dy = _random(y.shape, 4)
    for got, want in zip(backward(dy, x, w, s, p),
                         naive_conv2d_backward(dy, x, w, s, p)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_im2col_gemm_is_the_convolution_and_col2im_its_adjoint():
    x, w = _random((2, 3, 6, 5), 1), _random((4, 3, 3, 2), 2)
    cols = im2col(x, 3, 2, (2, 1), 1)                                   # (C*kh*kw, B*Ho*Wo)
    y = conv2d_forward_reference(x, w, None, (2, 1), 1)
    assert cols.shape == (3 * 3 * 2, y.shape[0] * y.shape[2] * y.shape[3])
    gemm = (w.reshape(4, -1) @ cols).reshape(4, 2, *y.shape[2:]).transpose(1, 0, 2, 3)
    np.testing.assert_allclose(gemm, y, rtol=1e-12, atol=1e-12)
    c = _random(cols.shape, 3)                                          # <im2col x, c> = <x, col2im c>
    lhs = np.sum(cols * c)
    rhs = np.sum(x * col2im(c, x.shape, 3, 2, (2, 1), 1))
    assert abs(lhs - rhs) <= 1e-10 * abs(lhs)


def test_line_taps_are_the_im2col_rows_at_the_real_grid_points():
    B, C, H, W = 2, 3, 4, 5
    x = _random((B, C, H, W), 1)
    xl, R, P = to_line(x)
    assert (R, P, xl.shape) == (W + 1, B * (H + 1) * (W + 1), (C, P + 2 * R + 2))
    assert np.count_nonzero(xl) == x.size and np.isclose(xl.sum(), x.sum())
    taps = line_taps(xl, R, P).reshape(3, 3, C, B, H + 1, R)[..., :H, :W]    # (i, j, c, b, h, w)
    cols = im2col(x, 3, 3, 1, 1).reshape(C, 3, 3, B, H, W)                   # (c, i, j, b, h, w)
    np.testing.assert_array_equal(taps, cols.transpose(1, 2, 0, 3, 4, 5))


def test_reference_rejects_bad_channels():
    with pytest.raises(ValueError, match="channels"):
        conv2d_forward_reference(np.zeros((1, 2, 5, 5)), np.zeros((4, 3, 3, 3)), None, 1, 0)
