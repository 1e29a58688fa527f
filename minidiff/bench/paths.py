"""minidiff's two paths in the benchmark: the plain-NumPy reference kernels and the Numba CPU kernels."""
import numpy as np

from .. import kernels


def reference_path(flag=True):
    """`with reference_path(flag):` runs the block on minidiff's NumPy reference kernels
    (flag=True) or the default path (flag=False), then restores."""
    return kernels.reference_mode(flag)


def numba_kernels_available():
    """True when NumPy float32 arrays go to the Numba CPU kernels."""
    return kernels.backend_name(np.zeros(1, np.float32)) == "numba-cpu"
