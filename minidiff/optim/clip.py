"""Gradient clipping by the global norm (Pascanu et al. 2013), on the flat gradient.

    n = ||g||_2;   g *= min(1, max_norm / (n + 1e-6))
"""
from ..backend import get_xp
from ..nn.layer import Layer


def clip_grad_norm(model_or_grad, max_norm, eps=1e-6):
    """clip_grad_norm(model or grad (P,), max_norm) -> ||g|| before clipping, a 0-d xp array.

    Scales the gradient in place; no device -> host copy (the factor stays on the device).
    """
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)) or not max_norm > 0:
        raise ValueError(f"max_norm: expected a number > 0, got {max_norm!r}")
    g = model_or_grad.flat()[1] if isinstance(model_or_grad, Layer) else model_or_grad   # (P,)
    xp = get_xp(g)
    norm = xp.sqrt(xp.vdot(g, g))                       # ()
    g *= xp.minimum(max_norm / (norm + eps), 1.0)
    return xp.asarray(norm)
