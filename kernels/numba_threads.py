"""Choose Numba's CPU threading layer before any parallel kernel first runs.

With Numba's OpenMP layer, its spinning worker threads and OpenBLAS's spinning
worker threads fight over the cores: on 2 cores every hand-over between a
Numba kernel and a NumPy GEMM cost a scheduler tick (a conv forward measured
~8 ms instead of ~1.5 ms). The `workqueue` layer's workers sleep instead, so
we pick it unless NUMBA_THREADING_LAYER says otherwise. The choice only takes
effect if no parallel Numba function has run yet in the process; workqueue
does not allow two Python threads to launch parallel kernels at once.
"""
import os

import numba

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"
