"""Copies onto, off and between image lanes (kernels/lines/copies.py): each against the lanes
copies of lines/geometry.py, conv/cpu_4x4s2.py and upconv/cpu.py; OnLines (lines/activation.py)
arithmetic, split and concatenation."""
import numpy as np
import pytest

pytest.importorskip("numba")

from minidiff.kernels import OnLines, to_array
from minidiff.kernels.conv.cpu_4x4s2 import depth_to_space_lanes, space_to_depth_lanes
from minidiff.kernels.conv import lanes as conv_lanes
from minidiff.kernels.lines import copies as ol
from minidiff.kernels.upconv import lanes as upconv_lanes
from minidiff.kernels.lines.geometry import lane_lines, to_lanes
from minidiff.kernels.upconv.cpu import phase_lines_lanes, phases_to_image_lanes
from lanes_cases import DTYPES, rand as _rand

SIZES = [(16, 3, 5, 3), (32, 5, 7, 6), (16, 2, 1, 1), (16, 4, 4, 4)]    # (B, C, H, W): odd, one pixel


def _nan_lines(C, g, dtype):
    return np.full((C, g.L), np.nan, dtype)                        # every value must be written


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
    np.testing.assert_array_equal(to_array(X), x)


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
    got = conv_lanes.phase_lanes_from_lines(ol.image_to_lines(x).line, H, W, g.nseg, Ho, Wo,
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
    got = conv_lanes.lines_from_phases(dq, H, W, g.nseg, Ho, Wo, _nan_lines(C, lane_lines(B, H, W), dtype))
    want = depth_to_space_lanes(dq, Ho, g.R, np.empty(size, dtype))
    np.testing.assert_array_equal(got, ol.image_to_lines(want).line)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [(16, 3, 3, 2), (32, 2, 4, 5), (16, 2, 1, 1)])
def test_phase_lines_from_lines_match_phase_lines_lanes(size, dtype):
    B, C, H, W = size
    d = _rand(np.random.default_rng(sum(size) + 6), (B, C, 2 * H, 2 * W), dtype)
    g = lane_lines(B, H, W)
    got = upconv_lanes.phase_lines_from_lines(ol.image_to_lines(d).line, H, W, g.nseg, np.full((4 * C, g.L), np.nan, dtype))
    np.testing.assert_array_equal(got, phase_lines_lanes(d, g.R, np.full((4 * C, g.L), np.nan, dtype)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [(16, 3, 3, 2), (32, 2, 4, 5), (16, 2, 1, 1)])
def test_phase_grids_to_lanes_interleave_as_phases_to_image(size, dtype):
    B, C, H, W = size
    rng = np.random.default_rng(sum(size) + 3)
    g, g2 = lane_lines(B, H, W), lane_lines(B, 2 * H, 2 * W)
    grids, bias = _rand(rng, (4, C, g.P), dtype), _rand(rng, C, dtype)
    line = upconv_lanes.phase_grids_to_lanes(grids, g.R, H, W, g.nseg, bias, _nan_lines(C, g2, dtype))
    y = phases_to_image_lanes(grids, g.R, bias, np.empty((B, C, 2 * H, 2 * W), dtype))
    np.testing.assert_array_equal(line, to_lanes(y, g2.R, _nan_lines(C, g2, dtype)))


def test_stack_lines_concatenates_the_channels():
    rng = np.random.default_rng(4)
    a, b = _rand(rng, (16, 3, 4, 5), np.float32), _rand(rng, (16, 2, 4, 5), np.float32)
    got = ol.stack_lines([ol.image_to_lines(a), ol.image_to_lines(b)])
    np.testing.assert_array_equal(got, ol.image_to_lines(np.concatenate([a, b], axis=1)).line)
