"""Array backend: NumPy on the CPU, CuPy on a GPU, one code path (`xp`).

Every function that makes arrays takes its module from its inputs
(`get_xp(x)`), so the same code runs on either device. CuPy is imported only
when a GPU array is asked for. No function here copies device data to the host
except `to_host`, which says so in its name.
"""
import os

import numpy as np

_cupy = None


def cupy_module():
    """Import CuPy on first use; a clear error when it is not installed."""
    global _cupy
    if _cupy is None:
        try:
            import cupy
        except ImportError as e:  # pragma: no cover - depends on the machine
            raise ImportError(
                "device='cuda' needs CuPy: pip install -e '.[gpu]' "
                "(see README, 'Running on a GPU')") from e
        _cupy = cupy
    return _cupy


def cuda_unavailable_reason():
    """None when CuPy imports and sees a real CUDA device and Numba's CUDA target imports; else why not.

    Numba's CUDA simulator is not a GPU: NUMBA_ENABLE_CUDASIM set to anything but
    0 is a reason, and numba.cuda.is_available() is never consulted (it is True
    under the simulator). The device is counted by CuPy, inside a try:
    cupy.cuda.runtime.getDeviceCount() raises where the driver or the device is
    missing.
    """
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0").strip() not in ("", "0"):
        return "NUMBA_ENABLE_CUDASIM is set: Numba's CUDA simulator is not a GPU"
    try:
        import cupy
    except Exception as e:  # ImportError, or a CUDA library that fails to load
        return f"CuPy does not import ({type(e).__name__}: {e}); pip install -e '.[gpu]'"
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as e:  # cupy.cuda.runtime.CUDARuntimeError: no driver, no device
        return f"cupy.cuda.runtime.getDeviceCount() failed: {type(e).__name__}: {e}"
    if count < 1:
        return "cupy.cuda.runtime.getDeviceCount() is 0: no CUDA device"
    try:
        import numba.cuda  # noqa: F401
    except Exception as e:
        return f"numba.cuda does not import ({type(e).__name__}: {e}); pip install -e '.[gpu]'"
    return None


def get_xp(*arrays):
    """The array module (numpy, cupy or a test backend) of the first array given.

    An array type names its module through `__minidiff_xp__` (our test
    backend) or is a CuPy array; everything else is NumPy.
    """
    for a in arrays:
        ns = getattr(type(a), "__minidiff_xp__", None)
        if ns is not None:
            return ns
        if type(a).__module__.startswith("cupy"):
            return cupy_module()
    return np



def is_numpy(xp):
    return xp is np


def device_module(device):
    """'cpu' -> numpy, 'cuda' -> cupy; a module is passed through."""
    if device in (None, "cpu", "numpy", np):
        return np
    if device in ("cuda", "gpu", "cupy"):
        return cupy_module()
    if hasattr(device, "asarray") and hasattr(device, "zeros"):
        return device
    raise ValueError(f"device: expected 'cpu' or 'cuda' (or an array module), got {device!r}")


def to_device(a, device):
    """Copy array `a` to `device` ('cpu', 'cuda' or an array module)."""
    xp = device_module(device)
    if xp is np:
        return to_host(a)
    return xp.asarray(a)


def to_host(a):
    """An explicit device -> host copy; NumPy arrays pass through."""
    if isinstance(a, np.ndarray) and type(a) is np.ndarray:
        return a
    if hasattr(a, "get"):
        return a.get()
    return np.asarray(a)


def as_rng(seed_or_rng):
    """A `numpy.random.Generator` from a seed, a Generator or None."""
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    return np.random.default_rng(seed_or_rng)


def randn(rng, shape, dtype, xp=np):
    """Standard normal noise from a seeded host Generator, placed on `xp`.

    Drawing on the host keeps a run reproducible from its seed whatever the
    device; the copy is one explicit `xp.asarray` per call.
    """
    z = rng.standard_normal(shape, dtype=np.float32 if np.dtype(dtype) == np.float32 else np.float64)
    return z if xp is np else xp.asarray(z)


def check_float_dtype(dtype, name="dtype"):
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"{name}: expected float32 or float64, got {dt}")
    return dt
