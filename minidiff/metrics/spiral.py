"""How far samples lie from the clean spiral (the spiral example's metric).

For each point p, d(p) = min_t |c(t) - p| over t in [1.5pi, 4.5pi]: a brute-force
seed on a dense grid of t, then Newton steps on f(t) = |c(t) - p|^2 / 2:
    f'(t)  = (c(t) - p) . c'(t)
    f''(t) = |c'(t)|^2 + (c(t) - p) . c''(t)
"""
import numpy as np

from ..backend import to_host
from ..data.toy2d import SPIRAL_T_MAX, SPIRAL_T_MIN, spiral_curve, spiral_curve_derivative


def _curve_second_derivative(t):
    """c''(t) = (-2 sin t - t cos t, 2 cos t - t sin t) / (4 pi)."""
    return np.stack([-2 * np.sin(t) - t * np.cos(t), 2 * np.cos(t) - t * np.sin(t)], axis=-1) / (4 * np.pi)


def spiral_distance(points, grid=2000, newton_steps=8, chunk=4096):
    """Distance of each point (N, 2) to the nearest point of the clean spiral -> (N,) float64."""
    p = np.asarray(to_host(points), dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"points: expected shape (N, 2), got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("points: contains NaN or inf")
    t_grid = np.linspace(SPIRAL_T_MIN, SPIRAL_T_MAX, grid)          # (G,)
    c_grid = spiral_curve(t_grid)                                   # (G, 2)
    out = np.empty(len(p))
    for s in range(0, len(p), chunk):
        q = p[s:s + chunk]                                          # (n, 2)
        d2 = ((q[:, None, :] - c_grid[None, :, :]) ** 2).sum(-1)    # (n, G)
        t = t_grid[np.argmin(d2, axis=1)]                           # (n,) seed
        for _ in range(newton_steps):
            r = spiral_curve(t) - q                                 # (n, 2)
            d1 = spiral_curve_derivative(t)
            g = (r * d1).sum(-1)
            h = (d1 * d1).sum(-1) + (r * _curve_second_derivative(t)).sum(-1)
            step = np.where(h > 0, g / np.where(h > 0, h, 1.0), 0.0)
            t = np.clip(t - step, SPIRAL_T_MIN, SPIRAL_T_MAX)
        out[s:s + chunk] = np.sqrt(((spiral_curve(t) - q) ** 2).sum(-1))
    return out


def mean_spiral_distance(points):
    """Mean nearest-point distance of (N, 2) samples to the spiral (noise ~ 0.5)."""
    return float(spiral_distance(points).mean())


def distance_per_timestep(xs):
    """Mean spiral distance of each frame of a reverse run: xs (K, N, 2) -> (K,)."""
    xs = np.asarray(to_host(xs))
    return np.array([mean_spiral_distance(x) for x in xs])
