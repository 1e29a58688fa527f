"""The fused nearest-x2-upsampling + 3x3 conv kernel (kernels/upconv/cpu.py, phases.py) against
the two steps it replaces: Upsample, then the im2col reference convolution; the face's
upsample_conv3x3_* on both paths (the reference: kernels/upconv/reference.py), through nn.UpsampleConv."""
import numpy as np
import pytest

pytest.importorskip("numba")

from minidiff import kernels
from minidiff.kernels import ops
from minidiff.kernels.check import check_kernel
from minidiff.kernels.conv import cpu_3x3 as conv3x3_cpu
from minidiff.kernels.conv import reference as conv_reference
from minidiff.kernels.lines import geometry as lines
from minidiff.kernels.upconv import cpu as upconv_cpu
from minidiff.kernels.upconv import phases as upconv_phases
from minidiff.nn import Upsample, UpsampleConv

DTYPES = [np.float32, np.float64]
# (B, Cin, Cout, H, W) of the small image: batch 1, one channel, 1x1 and odd non-square
# images, Cout not a multiple of 4 (spare grid rows), a batch longer than one CHUNK, and
# batches of 16 and 32 (on image lanes with the `layout` fixture's 'lanes')
SHAPES = [(1, 1, 1, 1, 1), (2, 3, 5, 4, 3), (1, 4, 6, 7, 7), (3, 2, 3, 5, 9), (2, 5, 4, 14, 13),
          (15, 2, 3, 12, 11), (16, 3, 5, 4, 3), (32, 2, 3, 7, 6)]


def two_steps_forward(x, w, b):
    return conv_reference.conv2d_forward_reference(Upsample(2).forward(x), w, b, 1, 1)


def two_steps_backward(dy, x, w):
    dxu, dw, db = conv_reference.conv2d_backward_reference(dy, Upsample(2).forward(x), w, 1, 1)
    return Upsample(2).backward(dxu), dw, db


def case(rng, B, Cin, Cout, H, W, dtype):
    x = rng.standard_normal((B, Cin, H, W)).astype(dtype)
    w = (rng.standard_normal((Cout, Cin, 3, 3)) / np.sqrt(9 * Cin)).astype(dtype)
    b = rng.standard_normal(Cout).astype(dtype)
    dy = rng.standard_normal((B, Cout, 2 * H, 2 * W)).astype(dtype)
    return x, w, b, dy


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_and_backward_match_the_two_steps(shape, dtype, layout):
    x, w, b, dy = case(np.random.default_rng(sum(shape)), *shape, dtype)
    y = check_kernel(upconv_cpu.upsample_conv3x3_forward_cpu, two_steps_forward, (x, w, b))
    dx, dw, db = check_kernel(upconv_cpu.upsample_conv3x3_backward_cpu, two_steps_backward, (dy, x, w))
    assert y.dtype == dx.dtype == dw.dtype == db.dtype == dtype
    assert upconv_cpu.upsample_conv3x3_backward_cpu(dy, x, w, need_bias=False)[2] is None


def test_the_long_batch_spans_several_chunks():
    B, _, _, H, W = SHAPES[5]
    P = lines.line_geometry(B, H, W)[1]
    assert P > 2 * conv3x3_cpu.CHUNK and P % conv3x3_cpu.CHUNK


def test_phase_weights_are_the_taps_each_phase_reads():
    """Output row 2u reads x[u - 1] with w0 and x[u] with w1 + w2; row 2u + 1 reads x[u] with
    w0 + w1 and x[u + 1] with w2 (per axis): checked on a one-hot w for every tap (i, j)."""
    taps_of_phase = {0: [[0], [1, 2]], 1: [[0, 1], [2]]}       # phase a: 3x3 taps on its 2 taps
    for i in range(3):
        for j in range(3):
            w = np.zeros((1, 1, 3, 3))
            w[0, 0, i, j] = 1.0
            W = upconv_phases.phase_weights(w)                        # (4, 1, 1, 2, 2)
            for ae, (a, e) in enumerate(upconv_phases.PHASES):
                want = np.array([[float(i in taps_of_phase[a][t] and j in taps_of_phase[e][s])
                                  for s in range(2)] for t in range(2)])
                np.testing.assert_array_equal(W[ae, 0, 0], want)


def test_phase_weights_grad_is_the_adjoint():
    rng = np.random.default_rng(3)
    w, dW = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal((4, 4, 3, 2, 2))
    lhs = np.vdot(upconv_phases.phase_weights(w), dW)
    rhs = np.vdot(w, upconv_phases.phase_weights_grad(dW))
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)


def test_phase_lines_hold_each_pixel_once_and_phases_to_image_interleaves_them_back():
    B, C, H, W = 3, 2, 4, 5
    d = np.random.default_rng(4).standard_normal((B, C, 2 * H, 2 * W)) + 10.0   # no zeros
    R, P, L = lines.line_geometry(B, H, W)
    dl = upconv_cpu.phase_lines(d, R, np.full((4 * C, L), np.nan))
    assert np.count_nonzero(dl) == d.size                 # every other entry is exactly 0
    grids = dl[:, R + 1:R + 1 + P].reshape(4, C, P)        # the grid points of each phase line
    y = upconv_cpu.phases_to_image(grids, R, np.zeros(C), np.empty_like(d))
    np.testing.assert_array_equal(y, d)


def test_phase_lanes_hold_each_pixel_once_and_phases_to_image_lanes_interleaves_them_back():
    B, C, H, W, V = 32, 2, 4, 5, lines.LANES
    d = np.random.default_rng(4).standard_normal((B, C, 2 * H, 2 * W)) + 10.0   # no zeros
    R, P = W + 1, B * (H + 1) * (W + 1)
    L = P + (2 * R + 2) * V
    dl = upconv_cpu.phase_lines_lanes(d, R, np.full((4 * C, L), np.nan))
    assert np.count_nonzero(dl) == d.size                 # every other entry is exactly 0
    points = dl[:, (R + 1) * V:(R + 1) * V + P].reshape(2, 2, C, B // V, H + 1, R, V)
    want = d.reshape(B // V, V, C, H, 2, W, 2).transpose(4, 6, 2, 0, 3, 5, 1)    # (a, e, c, g, u, v, lane)
    np.testing.assert_array_equal(points[:, :, :, :, :H, :W], want)
    grids = dl[:, (R + 1) * V:(R + 1) * V + P].reshape(4, C, P)
    y = upconv_cpu.phases_to_image_lanes(grids, R, np.arange(C, dtype=d.dtype), np.empty_like(d))
    np.testing.assert_array_equal(y, d + np.arange(C)[:, None, None])


def test_bad_shapes_raise():
    x, w, b, dy = case(np.random.default_rng(5), 2, 3, 4, 5, 5, np.float32)
    with pytest.raises(ValueError, match="w"):
        upconv_cpu.upsample_conv3x3_forward_cpu(x, w[:, :2], b)
    with pytest.raises(ValueError, match="dy"):
        upconv_cpu.upsample_conv3x3_backward_cpu(dy[:, :, :-1], x, w)


def test_upsample_conv_layer_uses_the_kernel_and_its_gradients_hold(monkeypatch):
    """float64 central differences of UpsampleConv with the fused kernel doing the work."""
    from gradcheck import assert_gradients
    used = []
    for name in ("upsample_conv3x3_forward_cpu", "upsample_conv3x3_backward_cpu"):
        real = getattr(upconv_cpu, name)
        monkeypatch.setattr(upconv_cpu, name, lambda *a, _r=real, _n=name: used.append(_n) or _r(*a))
    layer = UpsampleConv(3, 4, rng=0, dtype=np.float64)
    assert_gradients(layer, np.random.default_rng(1).standard_normal((2, 3, 4, 5)), tol=1e-6)
    assert set(used) == {"upsample_conv3x3_forward_cpu", "upsample_conv3x3_backward_cpu"}


def test_upsample_conv_gradients_on_image_lanes(monkeypatch):
    """The same on one group of 16 images on lanes (lines/geometry.py)."""
    from gradcheck import assert_gradients
    monkeypatch.setattr(lines, "LANES_MIN_CHANNELS", 2)
    used = []
    real = lines.lines
    monkeypatch.setattr(upconv_cpu, "lines", lambda *a: used.append(real(*a).V) or real(*a))
    layer = UpsampleConv(2, 3, rng=0, dtype=np.float64)
    assert_gradients(layer, np.random.default_rng(1).standard_normal((16, 2, 3, 4)), tol=1e-6,
                     max_input_entries=60)
    assert set(used) == {16}


def test_upsample_conv_layer_on_the_reference_path_runs_the_two_steps(monkeypatch):
    """On the reference path the face runs kernels/upconv/reference.py (upsampling, then the conv):
    the same numbers as the fused kernel."""
    layer = UpsampleConv(3, 4, rng=0, dtype=np.float64)
    x, dy = np.random.default_rng(2).standard_normal((2, 3, 4, 5)), np.random.default_rng(3).standard_normal((2, 4, 8, 10))
    y_fused, dx_fused = layer.forward(x), layer.backward(dy)
    g_fused = {k: v.copy() for k, v in layer.conv.grads.items()}
    layer.zero_grad()
    used = []
    for name in ("upsample_conv3x3_forward_reference", "upsample_conv3x3_backward_reference"):
        real = getattr(ops, name)
        monkeypatch.setattr(ops, name, lambda *a, _r=real, _n=name: used.append(_n) or _r(*a))
    with kernels.reference_mode():
        np.testing.assert_allclose(kernels.upsample_conv3x3_forward(x, layer.conv.params["weight"], None),
                                   two_steps_forward(x, layer.conv.params["weight"], None), rtol=1e-12, atol=1e-12)
        y_ref, dx_ref = layer.forward(x), layer.backward(dy)
    assert used == ["upsample_conv3x3_forward_reference"] * 2 + ["upsample_conv3x3_backward_reference"]
    np.testing.assert_allclose(y_fused, y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx_fused, dx_ref, rtol=1e-12, atol=1e-12)
    for k in g_fused:
        np.testing.assert_allclose(g_fused[k], layer.conv.grads[k], rtol=1e-12, atol=1e-12)


def test_switching_to_the_reference_between_forward_and_backward_still_gives_the_gradient():
    layer = UpsampleConv(2, 3, rng=0, dtype=np.float64)
    x, dy = np.random.default_rng(6).standard_normal((1, 2, 3, 3)), np.random.default_rng(7).standard_normal((1, 3, 6, 6))
    layer.forward(x)
    with kernels.reference_mode():
        dx = layer.backward(dy)
    np.testing.assert_allclose(dx, two_steps_backward(dy, x, layer.conv.params["weight"])[0], rtol=1e-12)
