"""Which family of implementations an operation's arrays go to: the routing rule of ops.py.

    an OnLines activation (lines/activation.py)   -> "lines":     Numba CPU kernels on image lanes
    NumPy arrays                                  -> "cpu":       Numba CPU kernels
    CuPy arrays (a class from module 'cupy...')   -> "cuda":      Numba CUDA kernels + cuBLAS
    anything else (the test backend, mixed or non-float dtypes, Numba missing, forced)
                                                  -> "reference": plain `xp` code

All the arrays of one call must agree (one device, one float32 / float64 dtype)
to leave the reference path. The reference path is forced by
`use_reference(True)`, `with reference_mode():` or the environment variable
MINIDIFF_KERNELS=reference (an OnLines still goes to "lines": it exists only
on the CPU kernels' side). While NumPy arrays run on the Numba CPU kernels,
NumPy's BLAS is kept on one thread (runtime/blas_threads.py and
runtime/numba_threads.py say why) and malloc keeps freed memory
(runtime/heap.py); the reference path gets BLAS's threads back. Numba is
imported on first use only, so `import minidiff` needs nothing but NumPy.
"""
import importlib
import os
from contextlib import contextmanager

import numpy as np

from .lines.activation import OnLines
from .runtime.blas_threads import kernels_mode
from .runtime.heap import keep_freed_memory

LINES, CPU, CUDA, REFERENCE = "lines", "cpu", "cuda", "reference"

_ENV = "MINIDIFF_KERNELS"
_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_forced_reference = False
_importable = {}         # "numba" / "numba.cuda" -> whether it imports


def use_reference(flag=True):
    """Force (True) or stop forcing (False) the reference path for every array type."""
    global _forced_reference
    _forced_reference = bool(flag)


@contextmanager
def reference_mode(flag=True):
    """`with reference_mode(): ...` runs the block on the reference path, then restores."""
    global _forced_reference
    old = _forced_reference
    _forced_reference = bool(flag)
    try:
        yield
    finally:
        _forced_reference = old


def reference_forced():
    """True when use_reference/reference_mode or MINIDIFF_KERNELS=reference say so."""
    env = os.environ.get(_ENV, "").strip().lower()
    if env not in ("", "auto", "reference"):
        raise ValueError(f"{_ENV}: expected 'auto' or 'reference', got {env!r}")
    return _forced_reference or env == "reference"


def _can_import(name):
    """Whether module `name` imports (checked once): Numba is optional."""
    if name not in _importable:
        try:
            importlib.import_module(name)
            _importable[name] = True
        except ImportError:
            _importable[name] = False
    return _importable[name]


def _device(a):
    """CPU for NumPy arrays, CUDA for CuPy arrays, None for anything else."""
    t = type(a)
    if t is np.ndarray:
        return CPU
    if getattr(t, "__minidiff_xp__", None) is None and t.__module__.startswith("cupy"):
        return CUDA
    return None


def _array_family(arrays):
    """CPU or CUDA when these arrays (None entries skipped) are all on one device and of one
    kernel dtype, else REFERENCE. (A plain loop: it runs before every kernel call.)"""
    device = dt = None
    for a in arrays:
        if a is None:
            continue
        if device is None:
            device, dt = _device(a), a.dtype
            if device is None or dt not in _KERNEL_DTYPES:
                return REFERENCE
        elif a.dtype != dt or _device(a) != device:
            return REFERENCE
    if device is None:
        return REFERENCE
    return device if _can_import("numba" if device is CPU else "numba.cuda") else REFERENCE


def route(*arrays):
    """LINES, CPU, CUDA or REFERENCE: the family of kernels these arrays go to (see the module
    docstring); switches NumPy's BLAS threads for the CPU kernels or back for the reference."""
    if any(type(a) is OnLines for a in arrays):
        family = LINES
    elif reference_forced():
        family = REFERENCE
    else:
        family = _array_family(arrays)
    if family is CPU or family is LINES:
        kernels_mode(True)
        keep_freed_memory()
    elif family is REFERENCE:
        kernels_mode(False)
    return family


def backend_name(x):
    """'numba-cpu', 'numba-cuda' or 'reference': the path an array `x` takes."""
    family = route(x)
    return "reference" if family is REFERENCE else f"numba-{'cpu' if family is LINES else family}"
