"""Adam's update in one pass on the CPU (Numba); maths and arguments as in adam/reference.py."""
import numpy as np
from numba import njit, prange

from ..runtime import numba_threads  # noqa: F401  (selects the threading layer first)
from .reference import check_adam_args, kernel_scalars

CHUNK = 1 << 14          # parameters per prange iteration (64 KB of float32 per vector)


# Loop mapping: prange over chunks of CHUNK parameters; element i reads
# theta, g, m, v at i and writes theta, m, v at i only. The scalars arrive in
# the vectors' dtype, so float32 parameters are updated in float32 arithmetic,
# operation for operation as in the NumPy reference (no fastmath: no fused
# multiply-adds, so the results are the same to the last bit). Unsigned i: no negative-index test, so LLVM
# vectorises the loop (sqrt and the division included).
@njit(parallel=True, cache=True, error_model="numpy")
def adam_kernel(theta, g, m, v, step_size, bias2, beta1, beta2, c1, c2, eps, wd, decay, l2):
    n = theta.shape[0]
    for k in prange((n + CHUNK - 1) // CHUNK):
        for i in range(np.uint64(k * CHUNK), np.uint64(min((k + 1) * CHUNK, n))):
            th = theta[i] * decay                       # decay = 1 - lr wd for AdamW, else 1
            gi = g[i] + wd * th if l2 else g[i]         # L2 weight decay (Adam)
            mi = m[i] * beta1 + c1 * gi                 # c1 = 1 - beta1, c2 = 1 - beta2
            vi = v[i] * beta2 + c2 * (gi * gi)
            m[i], v[i] = mi, vi
            theta[i] = th - step_size * (mi / (np.sqrt(vi) / bias2 + eps))


def adam_step_cpu(theta, g, m, v, lr, beta1, beta2, eps, t, weight_decay=0.0, decoupled=False):
    """One Adam / AdamW step in place on theta, m, v (one pass); returns theta."""
    check_adam_args(theta, g, m, v)
    adam_kernel(theta, g, m, v, *kernel_scalars(theta.dtype, lr, beta1, beta2, eps, t, weight_decay, decoupled))
    return theta
