"""Classifier-free guidance (Ho & Salimans 2022).

    eps = eps_uncond + s (eps_cond - eps_uncond)

Label 0 is the reserved "unconditioned" class; the trainer drops labels to 0
with probability p_uncond so that one network learns both.

A guidance interval (Kynkaanniemi et al. 2024) applies s only at the steps
t_lo <= t <= t_hi and uses the plain conditional model (s = 1, one pass)
elsewhere: guidance at the noisiest steps mostly pushes every sample towards
the most typical digit, costing diversity for little extra class fidelity.
"""
import math
import numbers

from ..backend import get_xp
from ..nn.grad_mode import no_grad

UNCONDITIONED = 0


def classifier_free_guidance(out_cond, out_uncond, guidance_scale):
    """out_uncond + s (out_cond - out_uncond); s = 1: conditional, s = 0: unconditional."""
    guidance_scale = check_guidance_scale(guidance_scale)
    if tuple(out_uncond.shape) != tuple(out_cond.shape):
        raise ValueError(f"out_uncond: expected shape {tuple(out_cond.shape)} like out_cond, "
                         f"got {tuple(out_uncond.shape)}")
    return out_uncond + guidance_scale * (out_cond - out_uncond)   # (B, ...)


_NOT_GIVEN = object()


def check_guidance_scale(guidance_scale, labels=_NOT_GIVEN):
    """guidance_scale as a float: a finite real; with the call's `labels` given, also ValueError when a
    scale other than 1 comes without labels (it would be silently ignored: guidance needs labels)."""
    if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, numbers.Real) \
            or not math.isfinite(guidance_scale):
        raise TypeError(f"guidance_scale: expected a finite real number, got {guidance_scale!r}")
    if labels is None and guidance_scale != 1:
        raise ValueError(f"guidance_scale: {guidance_scale!r} given without labels; classifier-free guidance "
                         f"mixes the labelled and the unconditioned predictions, so it needs labels "
                         f"(or guidance_scale=1)")
    return float(guidance_scale)


def check_guidance_interval(guidance_interval, num_timesteps):
    """None, or (t_lo, t_hi) with 0 <= t_lo <= t_hi <= T - 1 -> a tuple of ints, or ValueError."""
    if guidance_interval is None:
        return None
    try:
        lo, hi = (int(v) for v in guidance_interval)
    except (TypeError, ValueError):
        raise ValueError(f"guidance_interval: expected None or (t_lo, t_hi), got {guidance_interval!r}") from None
    if not 0 <= lo <= hi <= num_timesteps - 1:
        raise ValueError(f"guidance_interval: expected 0 <= t_lo <= t_hi <= {num_timesteps - 1}, "
                         f"got {guidance_interval!r}")
    return lo, hi


def scale_at(guidance_scale, guidance_interval, t):
    """The guidance scale used at timestep t: s inside the interval (or with none), 1 outside."""
    if guidance_interval is None or guidance_interval[0] <= t <= guidance_interval[1]:
        return guidance_scale
    return 1.0


def guided_forward(model, x, t, labels=None, guidance_scale=1.0):
    """The model output at (x, t), guided when labels are given and s != 1.

    labels None: model.forward(x, t). s == 1: model.forward(x, t, labels).
    Otherwise one pass on the doubled batch [x, x] with labels [labels, 0]
    and the two halves combined. Combining the raw output is the same as
    combining eps for the x0 and v objectives, as eps is affine in them.
    x (B, ...), t (B,) int, labels (B,) int -> (B, ...)
    Runs under nn.no_grad(): it is the sampling loops' model call, and no backward follows.
    """
    with no_grad():
        return _guided_forward(model, x, t, labels, guidance_scale)


def _guided_forward(model, x, t, labels, guidance_scale):
    if labels is None:
        return model.forward(x, t)
    if guidance_scale == 1:
        return model.forward(x, t, labels)
    xp, lp = get_xp(x), get_xp(labels)
    B = x.shape[0]
    x2 = xp.concatenate([x, x], axis=0)                                      # (2B, ...)
    t2 = get_xp(t).concatenate([t, t], axis=0)                               # (2B,)
    labels2 = lp.concatenate([labels, lp.full_like(labels, UNCONDITIONED)])  # (2B,)
    out = model.forward(x2, t2, labels2)                                     # (2B, ...)
    return classifier_free_guidance(out[:B], out[B:], guidance_scale)
