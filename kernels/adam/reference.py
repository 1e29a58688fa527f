"""Adam's parameter update (Kingma & Ba 2015) on flat vectors: the reference in plain `xp`.

One step t >= 1 on theta, its gradient g and the moment estimates m, v (all (P,)):

    g     = g + wd theta                  (L2 weight decay, Adam; g itself is not changed)
    theta = theta (1 - lr wd)             (decoupled weight decay, AdamW, instead)
    m     = beta1 m + (1 - beta1) g
    v     = beta2 v + (1 - beta2) g^2
    theta = theta - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

theta, m and v are updated in place. The reference is six array passes;
adam/cpu.py and adam/cuda.py do it in one.
"""
import math

from ..xp import get_xp


def check_adam_args(theta, g, m, v):
    """The four vectors: one shape (P,) and one float dtype, or ValueError/TypeError."""
    names = ("theta", "g", "m", "v")
    arrays = (theta, g, m, v)
    if any(a.ndim != 1 or a.shape != theta.shape for a in arrays):
        raise ValueError(f"adam_step: theta, g, m, v must be flat vectors of one length, "
                         f"got {dict(zip(names, (tuple(a.shape) for a in arrays)))}")
    if any(a.dtype != theta.dtype for a in arrays) or theta.dtype.kind != "f":
        raise TypeError(f"adam_step: theta, g, m, v must share one float dtype, "
                        f"got {dict(zip(names, (str(a.dtype) for a in arrays)))}")


def adam_scalars(lr, beta1, beta2, t):
    """(step_size, bias2): lr / (1 - beta1^t) and sqrt(1 - beta2^t), the bias corrections of step t."""
    if t < 1:
        raise ValueError(f"adam_step: the step count t starts at 1, got {t}")
    return lr / (1.0 - beta1 ** t), math.sqrt(1.0 - beta2 ** t)


def kernel_scalars(dtype, lr, beta1, beta2, eps, t, weight_decay, decoupled):
    """The scalar arguments of the Numba kernels, in the vectors' dtype:
    (step_size, bias2, beta1, beta2, 1 - beta1, 1 - beta2, eps, wd, decay, l2) with
    decay = 1 - lr wd for AdamW (else 1) and l2 True for Adam's L2 weight decay."""
    step_size, bias2 = adam_scalars(lr, beta1, beta2, t)
    T = dtype.type
    decay = 1.0 - lr * weight_decay if (weight_decay and decoupled) else 1.0
    return (T(step_size), T(bias2), T(beta1), T(beta2), T(1.0 - beta1), T(1.0 - beta2),
            T(eps), T(weight_decay), T(decay), bool(weight_decay and not decoupled))


def adam_step_reference(theta, g, m, v, lr, beta1, beta2, eps, t, weight_decay=0.0, decoupled=False):
    """One Adam (decoupled=False) or AdamW (True) step, in place on theta, m, v; returns theta."""
    check_adam_args(theta, g, m, v)
    step_size, bias2 = adam_scalars(lr, beta1, beta2, t)
    if weight_decay:
        if decoupled:
            theta *= 1.0 - lr * weight_decay
        else:
            g = g + weight_decay * theta                 # (P,) new array; the gradient is untouched
    m *= beta1
    m += (1.0 - beta1) * g
    v *= beta2
    v += (1.0 - beta2) * (g * g)
    denom = get_xp(v).sqrt(v)                            # (P,)
    denom /= bias2
    denom += eps
    theta -= step_size * (m / denom)
    return theta
