"""The toy 2-D data sets (minidiff/data/toy2d.py): the spiral's formula, seeds, noise, the other sets."""
import numpy as np
import pytest

from minidiff.data.toy2d import make_moons, make_s_curve, make_spiral, spiral_curve
from minidiff.metrics.spiral import mean_spiral_distance


def test_spiral_formula_and_range():
    x = make_spiral(5000, rng=0)
    assert x.shape == (5000, 2) and x.dtype == np.float32
    assert np.abs(x).max() <= 1.005                       # the spiral lies in [-1, 1] (to 0.4%)
    # every point is (t cos t, t sin t)/(4 pi) - 1/8 for some t in [1.5pi, 4.5pi]:
    # recover t from the radius and check the angle
    r = np.hypot(x[:, 0] + 0.125, x[:, 1] + 0.125) * 4 * np.pi
    assert r.min() >= 1.5 * np.pi - 1e-3 and r.max() <= 4.5 * np.pi + 1e-3
    np.testing.assert_allclose(spiral_curve(r), x, atol=2e-5)


def test_same_seed_same_data_and_noise_option():
    np.testing.assert_array_equal(make_spiral(100, rng=3), make_spiral(100, rng=3))
    noisy = make_spiral(4000, noise=0.02, rng=1)
    assert 0.01 < mean_spiral_distance(noisy) < 0.02       # E|N(0, s^2)| along the normal ~ 0.8 s


@pytest.mark.parametrize("make", [make_moons, make_s_curve])
def test_other_toy_sets_in_box(make):
    x = make(2000, rng=0)
    assert x.shape == (2000, 2) and np.abs(x).max() <= 1.0 + 1e-6


@pytest.mark.parametrize("kw", [dict(n=0), dict(n=2.5), dict(n=10, noise=-1.0), dict(n=10, noise=np.nan)])
def test_bad_arguments(kw):
    with pytest.raises(ValueError):
        make_spiral(**kw)
