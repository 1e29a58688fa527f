"""Peak memory of one call, each (case, implementation) in a fresh subprocess.

The resident set's peak above its level before one call (Linux VmHWM after a
reset of the peak), measured after the imports, a batch-2 warm-up and the
model's construction: the same method for both libraries. For minidiff also
NumPy's own peak from tracemalloc. The child is `python -m minidiff.bench
--memory-child case:impl`, which prints memory_child()'s dict as JSON.
"""
import gc
import json
import os
import resource
import subprocess
import sys
import tracemalloc

from .cases import build_case
from .paths import reference_path
from .torch_mirror import import_torch

IMPLS = ("minidiff_kernels", "minidiff_reference", "torch")


def _status_mb(key):
    """VmRSS / VmHWM (current / peak resident set) of this process in MiB, from /proc."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0                    # kB
    raise OSError(f"{key} not in /proc/self/status")


def peak_rss_increase(fn):
    """MiB by which the resident set peaks above its starting level while fn() runs.

    Linux: reset the peak (VmHWM) to the current RSS via /proc/self/clear_refs,
    run, read VmHWM. ru_maxrss is not used: across fork + exec a child starts
    with its parent's peak, which hides the child's own.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")                                                # 5: reset the peak RSS
        base = _status_mb("VmRSS")
    except OSError:                                                     # pragma: no cover - not Linux
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        fn()
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0 - base
    fn()
    return _status_mb("VmHWM") - base


def memory_child(name, impl):
    """In a fresh process: {'rss_mb': peak RSS increase over one call[, 'tracemalloc_mb']}."""
    bt = import_torch() if impl == "torch" else None
    if impl == "torch" and bt is None:
        return {"rss_mb": None}
    with reference_path(impl == "minidiff_reference"):
        small = build_case(name, bt, batch=2)             # compiles kernels, torch's lazy init
        (small.torch if impl == "torch" else small.minidiff)()
        del small
        case = build_case(name, bt)
        fn = case.torch if impl == "torch" else case.minidiff
        gc.collect()
        out = {"rss_mb": peak_rss_increase(fn)}
        if impl != "torch":
            tracemalloc.start()
            fn()
            out["tracemalloc_mb"] = tracemalloc.get_traced_memory()[1] / 2 ** 20
            tracemalloc.stop()
    return out


def measure_memory(name, impl, timeout=600):
    """memory_child(name, impl) run in `python -m minidiff.bench`; None on failure."""
    cmd = [sys.executable, "-m", "minidiff.bench", "--memory-child", f"{name}:{impl}"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
        return json.loads(res.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, json.JSONDecodeError, IndexError):
        return None
