"""Noise schedules beta_t, t = 0..T-1, computed in float64 (docs/equations.md).

    linear_beta_schedule(T)    DDPM, ends scaled by 1000/T (DenoisingDiffusion.jl)
    cosine_beta_schedule(T)    Nichol & Dhariwal 2021
    sigmoid_beta_schedule(T)   Jabri et al. 2022
    make_betas(name, T, **kw)  the schedule by name
"""
import numbers

import numpy as np


def _check_T(T):
    if isinstance(T, bool) or not isinstance(T, numbers.Real):
        raise TypeError(f"num_timesteps: expected a positive integer, got {T!r}")
    if int(T) != T or T < 1:
        raise ValueError(f"num_timesteps: expected a positive integer, got {T!r}")
    return int(T)


def _check_real(name, v, low, strict):
    """v as a float: a finite real number >= low (> low when strict), or ValueError naming it."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v) \
            or (v <= low if strict else v < low):
        raise ValueError(f"{name}: expected a number {'>' if strict else '>='} {low:g}, got {v!r}")
    return float(v)


def linear_beta_schedule(T, beta_start=1e-4, beta_end=0.02):
    """linear_beta_schedule(T) -> betas (T,): linspace(beta_start, beta_end) * 1000/T."""
    T = _check_T(T)
    scale = 1000.0 / T
    return np.linspace(beta_start * scale, beta_end * scale, T, dtype=np.float64)  # (T,)


def cosine_beta_schedule(T, s=0.008):
    """cosine_beta_schedule(T) -> betas (T,).

    f(u) = cos(((u/T + s) / (1 + s)) pi/2)^2, abar_t = f(t+1)/f(0),
    beta_t = min(1 - abar_t / abar_{t-1}, 0.999).
    """
    T, s = _check_T(T), _check_real("s", s, 0, strict=False)
    u = np.arange(T + 1, dtype=np.float64)                        # (T+1,)
    f = np.cos(((u / T + s) / (1 + s)) * np.pi / 2) ** 2           # (T+1,)
    abar = f / f[0]                                               # abar_{-1..T-1}
    return np.minimum(1 - abar[1:] / abar[:-1], 0.999)             # (T,)


def sigmoid_beta_schedule(T, start=-3, end=3, tau=1):
    """sigmoid_beta_schedule(T) -> betas (T,), clipped to [0, 0.999].

    abar(u) = (sig(end/tau) - sig(((u/T)(end - start) + start)/tau)) / (sig(end/tau) - sig(start/tau)),
    u = 0..T, normalised so abar(0) = 1; beta_t = 1 - abar(t+1)/abar(t).
    """
    T, tau = _check_T(T), _check_real("tau", tau, 0, strict=True)
    if not start < end:
        raise ValueError(f"start, end: expected start < end, got {start!r}, {end!r}")
    sig = lambda z: 1 / (1 + np.exp(-z))
    u = np.arange(T + 1, dtype=np.float64) / T                    # (T+1,)
    v_start, v_end = sig(start / tau), sig(end / tau)
    abar = (v_end - sig((u * (end - start) + start) / tau)) / (v_end - v_start)
    abar = abar / abar[0]                                         # (T+1,)
    return np.clip(1 - abar[1:] / abar[:-1], 0.0, 0.999)           # (T,)


SCHEDULES = {
    "linear": linear_beta_schedule,
    "cosine": cosine_beta_schedule,
    "sigmoid": sigmoid_beta_schedule,
}


def make_betas(schedule, T, **kw):
    """make_betas(schedule, T, **kw) -> betas (T,) float64 for schedule in SCHEDULES."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule: expected one of {sorted(SCHEDULES)}, got {schedule!r}")
    return SCHEDULES[schedule](T, **kw)
