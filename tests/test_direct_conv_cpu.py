"""The direct Numba conv kernels against the im2col reference: conv3x3_cpu.py (3x3 stride 1
padding 1) and conv4x4s2_cpu.py (4x4 stride 2 padding 1, the U-Net's downsampling)."""
import numpy as np
import pytest

pytest.importorskip("numba")

from minidiff.kernels import conv3x3_cpu, conv4x4s2_cpu, conv_cpu, conv_reference, lines
from minidiff.kernels.check import check_kernel, conv_backward_case, conv_case

DTYPES = [np.float32, np.float64]
# kernel name -> (k, stride, padding, forward, backward)
KERNELS = {
    "3x3": (3, 1, 1, conv3x3_cpu.conv3x3_forward_cpu, conv3x3_cpu.conv3x3_backward_cpu),
    "4x4s2": (4, 2, 1, conv4x4s2_cpu.conv4x4s2_forward_cpu, conv4x4s2_cpu.conv4x4s2_backward_cpu),
}
# (B, Cin, Cout, H, W): batch 1, odd and non-square planes, Cout not a multiple of the channel
# block, one channel in or out, planes needing the ALIGN tail and ones longer than several
# blocks; batches of 16 and 32 can put 3x3 convs on image lanes (lines.py: 16 images per point)
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
        monkeypatch.setattr(conv_cpu, fn.__name__, lambda *a, _fn=fn: used.append(_fn.__name__) or _fn(*a))
    layer = Conv2d(3, 5, k, stride=s, padding=p, rng=0, dtype=np.float64)
    assert_gradients(layer, np.random.default_rng(1).standard_normal((2, 3, 7, 8)), tol=1e-6)
    assert {forward.__name__, backward.__name__} <= set(used)


def test_dispatch_sends_each_shape_to_its_kernel(monkeypatch):
    calls = []
    for name in ("conv3x3_forward_cpu", "conv4x4s2_forward_cpu"):
        real = getattr(conv_cpu, name)
        monkeypatch.setattr(conv_cpu, name, lambda *a, _r=real, _n=name: calls.append(_n) or _r(*a))
    rng = np.random.default_rng(6)
    for k, s, p, want in [(3, 1, 1, "conv3x3_forward_cpu"), (3, 2, 1, None), (3, 1, 0, None),
                          (4, 2, 1, "conv4x4s2_forward_cpu"), (4, 1, 1, None), (4, 2, 0, None)]:
        calls.clear()
        x, w, b, _, _ = conv_case(rng, 2, 3, 4, 8, 8, k, s, p)
        check_kernel(conv_cpu.conv2d_forward_cpu, conv_reference.conv2d_forward_reference, (x, w, b, s, p))
        assert calls == ([want] if want else []), (k, s, p)


def test_line_geometry_covers_every_tap():
    for B, H, W in [(1, 1, 1), (3, 7, 7), (32, 28, 28), (2, 5, 40)]:
        R, P, L = lines.line_geometry(B, H, W)
        assert R == W + 1 and P % lines.ALIGN == 0 and P >= B * (H + 1) * R
        assert L >= P - 1 + 2 * R + 2 + 1            # the last tap of the last grid point
        assert L >= (R + 1) + B * (H + 1) * R        # every image and its zero row


def test_to_line_puts_each_image_between_zeros():
    B, C, H, W = 3, 2, 4, 5
    x = np.arange(B * C * H * W, dtype=np.float32).reshape(B, C, H, W) + 1
    R, P, L = lines.line_geometry(B, H, W)
    xl = lines.to_line(x, R, np.full((C, L), np.nan, np.float32))
    rows = xl[:, R + 1:R + 1 + B * (H + 1) * R].reshape(C, B, H + 1, R)   # (c, b, h, w)
    np.testing.assert_array_equal(rows[:, :, :H, :W], x.transpose(1, 0, 2, 3))
    assert np.count_nonzero(xl) == x.size                # everything else is exactly 0


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


def _shared_reference_forward(xs, ws, bs):
    """Each conv run alone by the reference on the concatenated input."""
    x = np.concatenate(xs, axis=1)
    return tuple(conv_reference.conv2d_forward_reference(x, w, b, (1, 1), (1, 1)) for w, b in zip(ws, bs))


def _shared_reference_backward(dys, xs, ws):
    x = np.concatenate(xs, axis=1)
    grads = [conv_reference.conv2d_backward_reference(dy, x, w, (1, 1), (1, 1)) for dy, w in zip(dys, ws)]
    dx = sum(g[0] for g in grads)
    c = np.cumsum([0] + [p.shape[1] for p in xs])
    return (*(dx[:, c[k]:c[k + 1]] for k in range(len(xs))), *(g[1] for g in grads), *(g[2] for g in grads))


# (B, H, W, channels of the input parts, Cout of each conv)
SHARED = [(1, 2, 2, [1], [1]), (2, 7, 7, [3, 2], [5, 4]), (3, 5, 9, [1, 4, 2], [2, 3, 1]),
          (2, 14, 13, [6, 5], [7, 5]), (16, 6, 5, [2, 3], [3, 2])]     # the last on lanes


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,H,W,cins,couts", SHARED)
def test_shared_input_convs_match_separate_convs(B, H, W, cins, couts, dtype, layout):
    """conv3x3_shared_*_cpu (convs reading one input given in channel parts) against
    the reference running each conv alone on the concatenation; the dx is their sum."""
    rng = np.random.default_rng(B + H + W + len(cins))
    xs = [rng.standard_normal((B, c, H, W)).astype(dtype) for c in cins]
    ws = [rng.standard_normal((o, sum(cins), 3, 3)).astype(dtype) for o in couts]
    bs = [rng.standard_normal(o).astype(dtype) for o in couts]
    dys = [rng.standard_normal((B, o, H, W)).astype(dtype) for o in couts]
    ys = check_kernel(lambda *a: tuple(conv3x3_cpu.conv3x3_shared_forward_cpu(*a)), _shared_reference_forward,
                      [xs, ws, bs])
    ys = ys if isinstance(ys, tuple) else (ys,)
    assert all(y.dtype == dtype and y.flags.c_contiguous for y in ys)

    def kernel(dys, xs, ws):
        dxs, dws, dbs = conv3x3_cpu.conv3x3_shared_backward_cpu(dys, xs, ws)
        return (*dxs, *dws, *dbs)
    grads = check_kernel(kernel, _shared_reference_backward, [dys, xs, ws])
    assert all(g.dtype == dtype for g in grads)
    assert [g.shape for g in grads[:len(xs)]] == [x.shape for x in xs]


def test_shared_input_convs_dispatch_and_errors():
    """The dispatcher sends NumPy arrays to the CPU kernel and gives the same numbers
    on the reference path; bad parts or weights are a ValueError naming what was expected."""
    from minidiff.kernels import conv3x3_shared_backward, conv3x3_shared_forward, reference_mode
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((2, c, 6, 5)) for c in (2, 3)]
    ws = [rng.standard_normal((o, 5, 3, 3)) for o in (4, 1)]
    bs = [rng.standard_normal(4), None]
    dys = [rng.standard_normal((2, o, 6, 5)) for o in (4, 1)]
    got = conv3x3_shared_forward(xs, ws, bs), conv3x3_shared_backward(dys, xs, ws)
    with reference_mode():
        want = conv3x3_shared_forward(xs, ws, bs), conv3x3_shared_backward(dys, xs, ws)
    for g, r in zip([*got[0], *got[1][0], *got[1][1], *got[1][2]], [*want[0], *want[1][0], *want[1][1], *want[1][2]]):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12)
    assert conv3x3_shared_backward(dys, xs, ws, need_bias=False)[2] == [None, None]
    with pytest.raises(ValueError, match="one B, H, W"):
        conv3x3_shared_forward([xs[0], xs[1][:, :, :5]], ws, bs)
    with pytest.raises(ValueError, match=r"\(Cout_k, 5, 3, 3\)"):
        conv3x3_shared_forward(xs, [ws[0][:, :4]], [None])
    with pytest.raises(ValueError, match="as many biases"):
        conv3x3_shared_forward(xs, ws, bs[:1])


@pytest.mark.parametrize("B, V", [(16, 16), (32, 16), (8, 1), (1, 1), (24, 1)])
def test_lanes_take_sixteen_images_when_the_batch_allows(B, V, monkeypatch):
    g = lines.lines(B, 5, 6, 16)
    assert (g.V, g.R, g.row, g.col) == (V, 7, 7 * V, V)
    assert g.nseg * g.stride == g.P and g.seg <= g.stride
    assert g.L >= g.P + 2 * g.row + 2 * g.col            # the last tap of the last grid value
    assert lines.lines(B, 5, 6, 8).V == 1                # too few channels to pay for the copies
    assert lines.lines(B, 28, 28, 16).V == V             # at any size
    monkeypatch.setattr(lines, "USE_LANES", False)
    assert lines.lines(B, 5, 6, 16).V == 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_to_lanes_puts_each_pixel_in_its_lane_between_zeros_and_from_lanes_takes_it_back(dtype):
    B, C, H, W = 2 * lines.LANES, 3, 4, 5                                 # two groups
    g = lines.lines(B, H, W, 16)
    V, R = g.V, g.R
    assert V > 1
    x = (np.arange(B * C * H * W).reshape(B, C, H, W) + 1).astype(dtype)
    xl = lines.to_lines(x, g, np.full((C, g.L), np.nan, dtype))
    points = xl[:, (R + 1) * V:(R + 1) * V + g.P].reshape(C, B // V, H + 1, R, V)   # (c, group, h, w, lane)
    want = x.reshape(B // V, V, C, H, W).transpose(2, 0, 3, 4, 1)                  # (c, group, h, w, lane)
    np.testing.assert_array_equal(points[:, :, :H, :W], want)
    assert np.count_nonzero(xl) == x.size                # everything else is exactly 0
    bias = np.arange(C, dtype=dtype)
    y = lines.from_lines(xl[:, (R + 1) * V:], g, bias, np.full_like(x, np.nan))   # the grid starts at the head
    np.testing.assert_array_equal(y, x + bias[:, None, None])


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


def test_scratch_arrays_start_on_a_cache_line():
    from minidiff.kernels.scratch import ALIGN_BYTES, scratch
    for n, dtype in [(1, np.float32), (1000, np.float64), (77, np.float32)]:
        a = scratch("test_align", (n, 3), dtype)
        assert a.ctypes.data % ALIGN_BYTES == 0 and a.shape == (n, 3) and a.dtype == dtype
