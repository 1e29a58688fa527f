"""The array module of the kernels' inputs: NumPy, CuPy or a test backend (`xp`).

The kernels import nothing from minidiff, so they carry this small helper of
their own. An array type names its module through `__minidiff_xp__` (the
strict CuPy-like test backend), or is a CuPy array; everything else is NumPy.
CuPy is imported only when a CuPy array is met.
"""
import numpy as np


def get_xp(*arrays):
    """The array module (numpy, cupy or a test backend) of the first array given."""
    for a in arrays:
        ns = getattr(type(a), "__minidiff_xp__", None)
        if ns is not None:
            return ns
        if type(a).__module__.startswith("cupy"):
            import cupy
            return cupy
    return np


def to_host(a):
    """An explicit device -> host copy (CuPy's .get()); NumPy arrays pass through."""
    if type(a) is np.ndarray:
        return a
    if hasattr(a, "get"):
        return a.get()
    return np.asarray(a)
