"""2-D toy data sets in [-1, 1]^2: points (N, 2) float32."""
import numpy as np

from ..backend import as_rng

SPIRAL_T_MIN, SPIRAL_T_MAX = 1.5 * np.pi, 4.5 * np.pi


def spiral_curve(t):
    """The clean spiral c(t) = (t cos t, t sin t) / (4 pi) - 1/8, t in [1.5pi, 4.5pi]. (..., 2)"""
    t = np.asarray(t, dtype=np.float64)
    return np.stack([t * np.cos(t), t * np.sin(t)], axis=-1) / (4 * np.pi) - 0.125


def spiral_curve_derivative(t):
    """c'(t) = (cos t - t sin t, sin t + t cos t) / (4 pi). (..., 2)"""
    t = np.asarray(t, dtype=np.float64)
    return np.stack([np.cos(t) - t * np.sin(t), np.sin(t) + t * np.cos(t)], axis=-1) / (4 * np.pi)


def _check(n, noise):
    if int(n) != n or n < 1:
        raise ValueError(f"n: expected a positive integer, got {n!r}")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise: expected a finite number >= 0, got {noise!r}")


def make_spiral(n=1000, noise=0.0, rng=None, dtype=np.float32):
    """n points on DenoisingDiffusion.jl's spiral, t ~ U[1.5pi, 4.5pi], plus N(0, noise^2)."""
    _check(n, noise)
    rng = as_rng(rng)
    t = rng.uniform(SPIRAL_T_MIN, SPIRAL_T_MAX, size=int(n))
    x = spiral_curve(t) + noise * rng.standard_normal((int(n), 2))
    return x.astype(dtype)


def make_moons(n=1000, noise=0.0, rng=None, dtype=np.float32):
    """Two interleaved half circles (as scikit-learn's), rescaled into [-1, 1]^2."""
    _check(n, noise)
    rng = as_rng(rng)
    n_top = int(n) // 2
    s = rng.uniform(0, np.pi, size=int(n))
    top = np.stack([np.cos(s), np.sin(s)], axis=1)
    bottom = np.stack([1 - np.cos(s), 0.5 - np.sin(s)], axis=1)
    x = np.where((np.arange(int(n)) < n_top)[:, None], top, bottom)
    x = (x - [0.5, 0.25]) / [1.5, 1.5]                     # centre, fit in [-1, 1]
    x = x + noise * rng.standard_normal(x.shape)
    return x.astype(dtype)


def make_s_curve(n=1000, noise=0.0, rng=None, dtype=np.float32):
    """A 2-D S curve: t ~ U[-3pi/2, 3pi/2], (sin t, sign(t)(cos t - 1)) / 2."""
    _check(n, noise)
    rng = as_rng(rng)
    t = 3 * np.pi * (rng.uniform(size=int(n)) - 0.5)
    x = np.stack([np.sin(t), np.sign(t) * (np.cos(t) - 1)], axis=1) / 2
    x = x + noise * rng.standard_normal(x.shape)
    return x.astype(dtype)


DATASETS = {"spiral": make_spiral, "moons": make_moons, "s_curve": make_s_curve}
