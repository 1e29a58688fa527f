"""Which of the model's T discrete timesteps a sampler visits: five spacings, mapped onto the grid.

The first three pick timesteps directly (ddim.py, sampling_timesteps_spacing):

    linspace   round(linspace(0, T-1, S))
    leading    k (T // S),           k = 0..S-1
    trailing   round(k T / S) - 1,   k = S..1

The other two choose S noise levels between the grid's noisiest (t = T-1) and
cleanest (t = 0) and map each onto the grid:

    logsnr     lambda_i uniform from lambda_{T-1} to lambda_0 (DPM-Solver, Lu et al. 2022),
               lambda = log(alpha / sigma) = log(abar / (1 - abar)) / 2
    karras     s_i = (s_max^(1/rho) + i/(S-1) (s_min^(1/rho) - s_max^(1/rho)))^rho, rho = 7
               (Karras et al. 2022, eq. 5), s = sigma / alpha = exp(-lambda),
               s_max = s_{T-1}, s_min = s_0

Mapping (`nearest_timesteps`): each target goes to the timestep whose lambda is
nearest (nearest in log s for Karras: log s = -lambda). Where the grid is coarser
than the targets (few timesteps, or Karras's crowding near s_min), neighbours
land on one timestep; they are then pushed apart to the adjacent free
timesteps (up from the clean end, then down from the noisy end) so the sampler
still makes S steps over S distinct timesteps. The sampler then uses each
visited timestep's own abar_t, never the target's: the model is only trained,
and only called, at the grid's timesteps, and the update stays exact for the
noise levels the model actually saw.
"""
import numbers

import numpy as np

from ..ddim import SPACINGS as GRID_SPACINGS
from ..ddim import sampling_timesteps_spacing

SPACINGS = GRID_SPACINGS + ("logsnr", "karras")
KARRAS_RHO = 7.0


def log_snr_table(abar):
    """lambda_t = log(abar_t / (1 - abar_t)) / 2 for every timestep.   abar (T,) float64 -> (T,), decreasing."""
    abar = np.asarray(abar, dtype=np.float64)
    return 0.5 * (np.log(abar) - np.log1p(-abar))


def logsnr_targets(lambda_min, lambda_max, S):
    """S log-SNRs uniform from lambda_min (noisiest) to lambda_max.   -> (S,) increasing"""
    return np.linspace(lambda_min, lambda_max, S)


def karras_sigmas(s_min, s_max, S, rho=KARRAS_RHO):
    """Karras et al. (2022), eq. 5: s_i = (s_max^(1/rho) + i/(S-1) (s_min^(1/rho) - s_max^(1/rho)))^rho.

    -> (S,) decreasing from s_max to s_min (S = 1: [s_max]).
    """
    ramp = np.arange(S) / max(S - 1, 1)                                   # (S,) 0 .. 1
    lo, hi = s_min ** (1.0 / rho), s_max ** (1.0 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def nearest_timesteps(targets, lambdas):
    """Timesteps for target log-SNRs: nearest in lambda, then pushed apart to be distinct.

    targets (S,) increasing (noisy -> clean), lambdas (T,) the grid's, decreasing in t.
    -> (S,) int64, strictly decreasing, within [0, T-1] (needs S <= T).
    """
    T, S = len(lambdas), len(targets)
    asc = lambdas[::-1]                                                   # ascending; index j is t = T-1-j
    j = np.clip(np.searchsorted(asc, targets), 1, T - 1) if T > 1 else np.zeros(S, np.int64)
    if T > 1:
        j = np.where(np.abs(asc[j - 1] - targets) <= np.abs(asc[j] - targets), j - 1, j)
    ts = (T - 1 - j).astype(np.int64)                                     # (S,) non-increasing
    for i in range(S - 2, -1, -1):                                        # from the clean end up: distinct
        ts[i] = max(ts[i], ts[i + 1] + 1)
    ts[0] = min(ts[0], T - 1)
    for i in range(1, S):                                                 # from the noisy end down: within the grid
        ts[i] = min(ts[i], ts[i - 1] - 1)
    return ts


def sampler_timesteps(abar, S, spacing):
    """The S timesteps a sampler visits, descending, for any of SPACINGS.   abar (T,) float64 -> (S,) int64"""
    T = len(abar)
    if isinstance(S, bool) or not isinstance(S, numbers.Integral) or not 1 <= S <= T:
        raise ValueError(f"steps: expected an integer in [1, {T}], got {S!r}")
    if spacing not in SPACINGS:
        raise ValueError(f"spacing: expected one of {list(SPACINGS)}, got {spacing!r}")
    if spacing in GRID_SPACINGS:
        return sampling_timesteps_spacing(T, int(S), spacing)
    lambdas = log_snr_table(abar)                                         # (T,)
    if spacing == "logsnr":
        targets = logsnr_targets(lambdas[-1], lambdas[0], S)
    else:
        s = np.exp(-lambdas)                                              # (T,) Karras's sigma
        targets = -np.log(karras_sigmas(s[0], s[-1], S))
    return nearest_timesteps(targets, lambdas)


def timestep_pairs(timesteps):
    """[(t_0, t_1), ..., (t_{S-1}, -1)]: each visited timestep with the next; -1 is the clean data (abar = 1)."""
    ts = [int(t) for t in timesteps]
    return list(zip(ts, ts[1:] + [-1]))
