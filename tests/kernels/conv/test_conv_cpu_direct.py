"""The direct Numba conv kernels against the im2col reference: kernels/conv/cpu_3x3.py (3x3
stride 1 padding 1) and kernels/conv/cpu_4x4s2.py (4x4 stride 2 padding 1, the U-Net's
downsampling), and the face sending those shapes to them."""
import numpy as np
import pytest

pytest.importorskip("numba")

import minidiff.kernels as K
from minidiff.kernels.check import check_kernel, conv_backward_case, conv_case
from minidiff.kernels.conv import cpu_3x3 as conv3x3_cpu
from minidiff.kernels.conv import cpu_4x4s2 as conv4x4s2_cpu
from minidiff.kernels.conv import reference as conv_reference
from minidiff.kernels.lines import geometry as lines

DTYPES = [np.float32, np.float64]
# kernel name -> (k, stride, padding, forward, backward); MODULES: the file of each
KERNELS = {
    "3x3": (3, 1, 1, conv3x3_cpu.conv3x3_forward_cpu, conv3x3_cpu.conv3x3_backward_cpu),
    "4x4s2": (4, 2, 1, conv4x4s2_cpu.conv4x4s2_forward_cpu, conv4x4s2_cpu.conv4x4s2_backward_cpu),
}
MODULES = {"3x3": conv3x3_cpu, "4x4s2": conv4x4s2_cpu}
# (B, Cin, Cout, H, W): batch 1, odd and non-square planes, Cout not a multiple of the channel
# block, one channel in or out, planes needing the ALIGN tail and ones longer than several
# blocks; batches of 16 and 32 can put 3x3 convs on image lanes (lines/geometry.py: 16 images per point)
SHAPES = [(1, 1, 1, 2, 2), (2, 3, 5, 7, 7), (1, 4, 1, 5, 9), (3, 1, 6, 11, 6),
          (2, 6, 7, 14, 13), (1, 5, 2, 28, 28), (2, 2, 3, 2, 30),
          (16, 2, 3, 2, 3), (16, 3, 1, 5, 9), (32, 2, 3, 7, 6)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kernel", KERNELS)
def test_forward_matches_reference(kernel, shape, dtype, layout):
    k, s, p, forward, _ = KERNELS[kernel]
    rng = np.random.default_rng(sum(shape))
    y = check_kernel(lambda x, w, b, *_: forward(x, w, b), conv_reference.conv2d_forward_reference,
                     conv_case(rng, *shape, k, s, p, dtype=dtype))
    assert y.dtype == dtype and y.flags.c_contiguous


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kernel", KERNELS)
def test_backward_matches_reference(kernel, shape, dtype, layout):
    k, s, p, _, backward = KERNELS[kernel]
    rng = np.random.default_rng(100 + sum(shape))
    dx, dw, db = check_kernel(lambda dy, x, w, *_: backward(dy, x, w), conv_reference.conv2d_backward_reference,
                              conv_backward_case(rng, *shape, k, s, p, dtype=dtype))
    assert dx.dtype == dw.dtype == db.dtype == dtype


@pytest.mark.parametrize("kernel", KERNELS)
def test_backward_without_bias_grad(kernel):
    k, s, p, _, backward = KERNELS[kernel]
    dy, x, w, _, _ = conv_backward_case(np.random.default_rng(5), 2, 3, 4, 6, 6, k, s, p)
    assert backward(dy, x, w, need_bias=False)[2] is None


@pytest.mark.parametrize("kernel", KERNELS)
def test_conv2d_gradients_through_the_direct_kernels(kernel, monkeypatch):
    """float64 central differences of a Conv2d layer whose forward and backward run the kernel."""
    from gradcheck import assert_gradients
    from minidiff.nn import Conv2d
    k, s, p, forward, backward = KERNELS[kernel]
    used = []
    for fn in (forward, backward):
        monkeypatch.setattr(MODULES[kernel], fn.__name__, lambda *a, _fn=fn: used.append(_fn.__name__) or _fn(*a))
    layer = Conv2d(3, 5, k, stride=s, padding=p, rng=0, dtype=np.float64)
    assert_gradients(layer, np.random.default_rng(1).standard_normal((2, 3, 7, 8)), tol=1e-6)
    assert {forward.__name__, backward.__name__} <= set(used)


def test_dispatch_sends_each_shape_to_its_kernel(monkeypatch):
    """The face (kernels/ops.py) picks the direct kernel by shape; other shapes go to conv/cpu.py."""
    calls = []
    for module, name in ((conv3x3_cpu, "conv3x3_forward_cpu"), (conv4x4s2_cpu, "conv4x4s2_forward_cpu")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _r=real, _n=name: calls.append(_n) or _r(*a))
    rng = np.random.default_rng(6)
    for k, s, p, want in [(3, 1, 1, "conv3x3_forward_cpu"), (3, 2, 1, None), (3, 1, 0, None),
                          (4, 2, 1, "conv4x4s2_forward_cpu"), (4, 1, 1, None), (4, 2, 0, None)]:
        calls.clear()
        x, w, b, _, _ = conv_case(rng, 2, 3, 4, 8, 8, k, s, p)
        check_kernel(K.conv2d_forward, conv_reference.conv2d_forward_reference, (x, w, b, s, p))
        assert calls == ([want] if want else []), (k, s, p)
        assert K.conv_shape(w, s, p) == {"conv3x3_forward_cpu": "3x3", "conv4x4s2_forward_cpu": "4x4s2",
                                         None: "general"}[want]


@pytest.mark.parametrize("kernel", KERNELS)
def test_line_kernels_split_into_chunks_match_reference(kernel):
    """A batch long enough for several CHUNKs (and a ragged last one), odd Cout."""
    k, s, p, forward, backward = KERNELS[kernel]
    B, H, W = (5, 20, 23) if kernel == "3x3" else (11, 26, 31)
    Ho, Wo = (H, W) if kernel == "3x3" else conv4x4s2_cpu.output_size(H, W)
    P = lines.line_geometry(B, Ho, Wo)[1]
    assert P > 2 * conv3x3_cpu.CHUNK and P % conv3x3_cpu.CHUNK
    rng = np.random.default_rng(7)
    check_kernel(lambda x, w, b, *_: forward(x, w, b),
                 conv_reference.conv2d_forward_reference, conv_case(rng, B, 4, 3, H, W, k, s, p))
    check_kernel(lambda dy, x, w, *_: backward(dy, x, w),
                 conv_reference.conv2d_backward_reference, conv_backward_case(rng, B, 4, 3, H, W, k, s, p))


@pytest.mark.parametrize("H, W", [(7, 6), (8, 9), (2, 2)])
def test_space_to_depth_line_holds_each_pixel_once_and_depth_to_space_inverts_it(H, W):
    B, C = 3, 2
    x = np.random.default_rng(0).standard_normal((B, C, H, W))
    Ho, Wo = conv4x4s2_cpu.output_size(H, W)
    R, P, L = lines.line_geometry(B, Ho, Wo)
    q = conv4x4s2_cpu.space_to_depth_line(x, Ho, R, np.full((4 * C, L), np.nan))
    assert not np.isnan(q).any()
    assert np.count_nonzero(q) == x.size                 # every pixel once, zeros elsewhere
    planes = q[:, :B * (Ho + 1) * R].reshape(C, 2, 2, B, Ho + 1, R)    # (c, a, e, b, u, v)
    xpad = np.pad(x, ((0, 0), (0, 0), (1, 2), (1, 2)))                  # room for the last phase row
    for a in range(2):
        for e in range(2):
            want = xpad[:, :, a:a + 2 * Ho + 1:2, e:e + 2 * Wo + 1:2]  # (b, c, Ho+1, Wo+1)
            np.testing.assert_array_equal(planes[:, a, e], want.transpose(1, 0, 2, 3))
    dx = conv4x4s2_cpu.depth_to_space_line(q, Ho, R, np.empty_like(x))
    np.testing.assert_array_equal(dx, x)


@pytest.mark.parametrize("H, W", [(7, 6), (8, 9), (2, 2)])
def test_space_to_depth_lanes_hold_each_pixel_once_and_depth_to_space_inverts_it(H, W):
    B, C, V = 32, 2, lines.LANES
    x = np.random.default_rng(0).standard_normal((B, C, H, W)) + 10.0          # no zeros
    Ho, Wo = conv4x4s2_cpu.output_size(H, W)
    R, L = Wo + 1, B * (Ho + 1) * (Wo + 1) + 3 * V                              # and a tail
    q = conv4x4s2_cpu.space_to_depth_lanes(x, Ho, R, np.full((4 * C, L), np.nan))
    assert not np.isnan(q).any()
    assert np.count_nonzero(q) == x.size                 # every pixel once, zeros elsewhere
    points = q[:, :B * (Ho + 1) * R].reshape(C, 2, 2, B // V, Ho + 1, R, V)      # (c, a, e, g, u, v, lane)
    xpad = np.pad(x, ((0, 0), (0, 0), (1, 2), (1, 2)))
    for a in range(2):
        for e in range(2):
            want = xpad[:, :, a:a + 2 * Ho + 1:2, e:e + 2 * Wo + 1:2]           # (b, c, Ho+1, Wo+1)
            want = want.reshape(B // V, V, C, Ho + 1, R).transpose(2, 0, 3, 4, 1)
            np.testing.assert_array_equal(points[:, a, e], want)
    dx = conv4x4s2_cpu.depth_to_space_lanes(q, Ho, R, np.empty_like(x))
    np.testing.assert_array_equal(dx, x)


def test_phase_weights_pick_tap_2i_plus_a():
    w = np.random.default_rng(1).standard_normal((3, 2, 4, 4))
    w2 = conv4x4s2_cpu.phase_weights(w)
    for c, a, e, i, j in [(0, 0, 0, 0, 0), (1, 1, 0, 1, 1), (1, 0, 1, 1, 0), (0, 1, 1, 0, 1)]:
        np.testing.assert_array_equal(w2[:, 4 * c + 2 * a + e, i, j], w[:, c, 2 * i + a, 2 * j + e])


@pytest.mark.parametrize("C, per_pass, rows", [(1, 2, 2), (16, 2, 16), (3, 4, 4), (5, 4, 8), (8, 4, 8)])
def test_grid_rows_round_up_to_whole_passes(C, per_pass, rows):
    assert conv3x3_cpu.grid_rows(C, per_pass) == rows


def test_line_kernels_refuse_a_grid_without_its_spare_rows():
    """With odd Cout the last pass writes a spare row; a grid of exactly Cout rows
    would be written past its end, so the kernels raise instead."""
    B, H, W, Cin = 2, 5, 6, 3
    R, P, L = lines.line_geometry(B, H, W)
    xl = np.zeros((Cin, L), np.float32)
    with pytest.raises(ValueError, match="grid_rows"):
        conv3x3_cpu.conv3x3_line(xl, np.zeros((3, Cin, 3, 3), np.float32), np.zeros(3, np.float32), R, 1, 1, P, P,
                                 conv3x3_cpu.CHUNK, np.empty((3, P), np.float32), 0)
    with pytest.raises(ValueError, match="grid_rows"):
        conv4x4s2_cpu.conv2x2_line(xl, conv4x4s2_cpu.line_shifts(len(xl)), np.zeros((5, Cin, 2, 2), np.float32),
                                   np.zeros(5, np.float32), R, 1, 1, P, P, conv3x3_cpu.CHUNK,
                                   np.empty((5, P), np.float32), 0)


def test_lane_kernels_split_a_group_into_chunks_match_reference(monkeypatch):
    """A group's stretch longer than several CHUNKs (and a ragged last one), odd Cout, on lanes."""
    B, H, W = 16, 20, 23
    monkeypatch.setattr(lines, "LANES_MIN_CHANNELS", 1)
    g = lines.lines(B, H, W, 3)
    assert g.V == 16 and g.seg > 2 * conv3x3_cpu.CHUNK and g.seg % conv3x3_cpu.CHUNK
    rng = np.random.default_rng(8)
    check_kernel(lambda x, w, b, *_: conv3x3_cpu.conv3x3_forward_cpu(x, w, b),
                 conv_reference.conv2d_forward_reference, conv_case(rng, B, 4, 3, H, W, 3, 1, 1))
    check_kernel(lambda dy, x, w, *_: conv3x3_cpu.conv3x3_backward_cpu(dy, x, w),
                 conv_reference.conv2d_backward_reference, conv_backward_case(rng, B, 4, 3, H, W, 3, 1, 1))


@pytest.mark.parametrize("kernel", KERNELS)
def test_conv2d_gradients_on_image_lanes(kernel, monkeypatch):
    """float64 central differences of a Conv2d layer on one group of 16 images on lanes."""
    from gradcheck import assert_gradients
    from minidiff.nn import Conv2d
    k, s, p, _, _ = KERNELS[kernel]
    module = conv3x3_cpu if kernel == "3x3" else conv4x4s2_cpu
    monkeypatch.setattr(lines, "LANES_MIN_CHANNELS", 2)
    used = []
    real = lines.lines
    monkeypatch.setattr(module, "lines", lambda *a: used.append(real(*a).V) or real(*a))
    layer = Conv2d(2, 3, k, stride=s, padding=p, rng=0, dtype=np.float64)
    assert_gradients(layer, np.random.default_rng(2).standard_normal((16, 2, 6, 5)), tol=1e-6,
                     max_input_entries=60)
    assert set(used) == {16}
