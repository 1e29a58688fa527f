"""The CPU kernels' reused work arrays (kernels/runtime/scratch.py)."""
import numpy as np


def test_scratch_arrays_start_on_a_cache_line():
    from minidiff.kernels.runtime.scratch import ALIGN_BYTES, scratch
    for n, dtype in [(1, np.float32), (1000, np.float64), (77, np.float32)]:
        a = scratch("test_align", (n, 3), dtype)
        assert a.ctypes.data % ALIGN_BYTES == 0 and a.shape == (n, 3) and a.dtype == dtype
