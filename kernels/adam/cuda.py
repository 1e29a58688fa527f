"""Adam's update as a Numba CUDA kernel; maths and arguments as in adam/reference.py.

Arrays are CuPy (zero-copy through `__cuda_array_interface__`) or NumPy under
the CUDA simulator.
"""
import math

from numba import cuda

from ..runtime.cuda_launch import TPB, as_kernel_arg, blocks_for
from ..xp import get_xp
from .reference import check_adam_args, kernel_scalars


# Thread mapping: one thread per parameter i; it reads theta, g, m, v at i and
# writes theta, m, v at i only.
@cuda.jit(cache=True)
def adam_kernel(theta, g, m, v, step_size, bias2, beta1, beta2, c1, c2, eps, wd, decay, l2):
    i = cuda.grid(1)
    if i >= theta.shape[0]:
        return
    th = theta[i] * decay                               # decay = 1 - lr wd for AdamW, else 1
    gi = g[i] + wd * th if l2 else g[i]                 # L2 weight decay (Adam)
    mi = m[i] * beta1 + c1 * gi                         # c1 = 1 - beta1, c2 = 1 - beta2
    vi = v[i] * beta2 + c2 * (gi * gi)
    m[i] = mi
    v[i] = vi
    theta[i] = th - step_size * (mi / (math.sqrt(vi) / bias2 + eps))


def adam_step_cuda(theta, g, m, v, lr, beta1, beta2, eps, t, weight_decay=0.0, decoupled=False):
    """One Adam / AdamW step in place on theta, m, v (one kernel launch); returns theta.
    A vector that is not contiguous (a strided view) is updated through a contiguous copy."""
    check_adam_args(theta, g, m, v)
    xp = get_xp(theta)
    work = [a if a.flags.c_contiguous else xp.ascontiguousarray(a) for a in (theta, m, v)]
    adam_kernel[blocks_for(theta.shape[0]), TPB](
        *(as_kernel_arg(a) for a in (work[0], xp.ascontiguousarray(g), work[1], work[2])),
        *kernel_scalars(theta.dtype, lr, beta1, beta2, eps, t, weight_decay, decoupled))
    for a, w in zip((theta, m, v), work):
        if w is not a:
            a[...] = w                                  # back into the caller's strided vector
    return theta
