"""Launch helpers shared by the Numba CUDA kernels (conv, upconv, groupnorm, attention, sampling, adam).

    kernel[blocks_for(n), TPB](as_kernel_arg(x), ...)      one thread per element, n elements

On a real GPU the arrays are CuPy arrays, handed to Numba zero-copy through
`__cuda_array_interface__`; under Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1)
they are NumPy arrays and pass as they are.

Every CUDA kernel is declared `@cuda.jit(cache=True)`: a process that finds a
kernel's compiled code (per signature and compute capability) in Numba's
on-disk cache loads it instead of compiling, `__pycache__` beside the source
or NUMBA_CACHE_DIR (tools/gpu_check.sh keeps one across its steps and runs).
"""
import math

import numpy as np

TPB = 128                               # threads per block for the 1-D kernels


def as_kernel_arg(a):
    """NumPy under the simulator passes as is; a CuPy array becomes a zero-copy device view."""
    if isinstance(a, np.ndarray):
        return a
    from numba import cuda
    return cuda.as_cuda_array(a)


def blocks_for(n, tpb=TPB):
    """The number of blocks of `tpb` threads that cover n elements (at least one)."""
    return max(1, math.ceil(n / tpb))
