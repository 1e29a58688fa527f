"""The padded-line layout of the CPU conv kernels (kernels/lines/geometry.py): one image per
point, or LANES images side by side (image lanes), each between zeros."""
import numpy as np
import pytest

pytest.importorskip("numba")

from minidiff.kernels.lines import geometry as lines

DTYPES = [np.float32, np.float64]


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
