"""The spiral metric (minidiff/metrics/spiral.py): distance to the spiral against brute force,
on and off the curve, Gaussian noise, per timestep, errors."""
import numpy as np
import pytest

from minidiff.data.toy2d import make_spiral, spiral_curve
from minidiff.metrics.spiral import distance_per_timestep, mean_spiral_distance, spiral_distance


def test_spiral_distance_against_dense_brute_force():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1.2, 1.2, size=(40, 2))
    t = np.linspace(1.5 * np.pi, 4.5 * np.pi, 2_000_000)
    curve = spiral_curve(t)                                            # (G, 2)
    brute = np.array([np.sqrt(((curve - p) ** 2).sum(1).min()) for p in pts])
    np.testing.assert_allclose(spiral_distance(pts), brute, atol=1e-6)


def test_spiral_distance_zero_on_curve_and_normal_offset():
    t = np.array([5.0, 7.5, 10.0, 12.0])
    on = spiral_curve(t)
    assert spiral_distance(on).max() < 1e-9
    tangent = spiral_curve(t + 1e-6) - spiral_curve(t - 1e-6)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    np.testing.assert_allclose(spiral_distance(on + 0.01 * normal), 0.01, rtol=1e-3)


def test_gaussian_noise_scores_about_half():
    d = mean_spiral_distance(np.random.default_rng(0).standard_normal((4000, 2)))
    assert 0.45 < d < 0.56


def test_distance_per_timestep_and_errors():
    frames = np.stack([make_spiral(200, rng=0), np.random.default_rng(0).standard_normal((200, 2))])
    d = distance_per_timestep(frames)
    assert d.shape == (2,) and d[0] < 1e-6 < 0.3 < d[1]
    with pytest.raises(ValueError, match="points"):
        spiral_distance(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        spiral_distance(np.array([[np.nan, 0.0]]))
