"""kernels/runtime/heap.py: once the CPU kernels run, freed arrays are reused instead of refetched from the OS."""
import os
import subprocess
import sys
import platform
import textwrap

import pytest

pytest.importorskip("numba")

PROBE = textwrap.dedent("""
    import resource, numpy as np
    from minidiff.kernels import conv2d_forward
    from minidiff.kernels.runtime import heap
    x = np.ones((1, 1, 4, 4), np.float32)
    conv2d_forward(x, np.ones((1, 1, 3, 3), np.float32), None, (1, 1), (1, 1))   # a CPU kernel call
    faults = []
    for _ in range(5):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        a = np.empty(6 << 20, np.uint8)         # 6 MB: above glibc's first mmap threshold
        a[:] = 1
        del a
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    print(heap.keep_freed_memory(), min(faults[1:]))
""")


def _probe(env_value):
    env = {**os.environ, "MINIDIFF_KEEP_FREED_MEMORY": env_value}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


def test_freed_memory_is_reused_after_a_kernel_call():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("heap.py only tunes glibc's malloc")
    applied, faults = _probe("1")
    assert applied
    assert faults < 50                            # 6 MB of fresh pages would be ~1500 faults
    applied, faults = _probe("0")                 # the opt-out: glibc's own thresholds
    assert not applied
