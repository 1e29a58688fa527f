"""GroupNorm+SiLU from a conv's output grid straight onto the next conv's lines
(kernels/groupnorm/cpu_lines.py: groupnorm_silu_to_lines) against the reference."""
import numpy as np
import pytest

pytest.importorskip("numba")

from minidiff.kernels.groupnorm.cpu_lines import groupnorm_silu_to_lines
from minidiff.kernels.groupnorm.reference import groupnorm_silu_forward_reference
from minidiff.kernels.lines.geometry import from_lines, lines, to_lines
from lanes_cases import DTYPES, rand as _rand, TOL


# (B, C, H, W, groups): image lanes (B = 16, 32) at odd and non-square sizes and one
# pixel (groupnorm_silu_lanes), and one image per point (B = 3, 1, 2: groupnorm_silu_line)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(16, 16, 5, 3, 8), (32, 16, 7, 6, 4), (16, 6, 1, 1, 2),
                                   (3, 8, 5, 4, 4), (1, 4, 2, 9, 1), (2, 6, 1, 1, 3)])
def test_groupnorm_on_lines_matches_reference(shape, dtype, monkeypatch):
    import minidiff.kernels.lines.geometry as lines_mod
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


def test_a_residual_needs_image_lanes():
    g = lines(3, 4, 4, 8)
    assert g.V == 1
    grid = np.zeros((8, g.P), np.float32)
    with pytest.raises(ValueError, match="needs image lanes"):
        groupnorm_silu_to_lines(grid, g, 4, 4, np.zeros(8, np.float32), np.ones(8, np.float32),
                                np.zeros(8, np.float32), np.zeros((3, 8), np.float32), 2, 1e-5,
                                np.empty((8, g.L), np.float32), residual=(grid, np.zeros(8, np.float32), 0))
