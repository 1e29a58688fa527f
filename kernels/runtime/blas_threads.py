"""NumPy's BLAS thread count while the Numba CPU kernels run (see runtime/numba_threads.py).

    kernels_mode(True)    BLAS on MINIDIFF_BLAS_THREADS threads (default 1)
    kernels_mode(False)   BLAS back to the thread count it had before

route.py calls kernels_mode(True) when a NumPy array goes to a Numba CPU
kernel and kernels_mode(False) when one takes the reference path, so the
plain-NumPy reference keeps every BLAS thread. A switch happens only when the
mode changes. It uses threadpoolctl; without it, nothing is changed.
MINIDIFF_BLAS_THREADS=keep leaves BLAS alone.
"""
import os

_ENV = "MINIDIFF_BLAS_THREADS"
_state = {"mode": False, "limiter": None}


def _requested():
    """None (leave BLAS alone) or the thread count for kernels mode."""
    v = os.environ.get(_ENV, "1").strip().lower()
    if v == "keep":
        return None
    try:
        n = int(v)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{_ENV}: expected a positive integer or 'keep', got {v!r}")
    return n


def kernels_mode(on):
    """Limit NumPy's BLAS threads (on=True) or restore them (on=False); cheap when unchanged."""
    on = bool(on)
    if _state["mode"] == on:
        return
    _state["mode"] = on
    if not on:
        if _state["limiter"] is not None:
            _state["limiter"].restore_original_limits()
            _state["limiter"] = None
        return
    n = _requested()
    if n is None:
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    _state["limiter"] = threadpool_limits(limits=n, user_api="blas")
