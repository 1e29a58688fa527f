"""Who owns the CPU cores: Numba's OpenMP workers, with NumPy's BLAS on one thread.

The Numba CPU kernels and NumPy's BLAS (OpenBLAS) each keep a pool of worker
threads. When both pools are active, every hand-over between a Numba kernel
and a GEMM costs a scheduler tick, because one pool's workers are still
spinning on the cores the other needs (measured: a conv forward took ~8 ms
instead of ~1.5 ms). Numba's `workqueue` layer avoids the fight by sleeping,
but then every parallel launch costs a wake-up (median 70-90 us against 2 us
for OpenMP, measured with a trivial prange kernel); a U-Net train step
launches a few hundred.

So, once the CPU kernels are imported:
  - Numba prefers its OpenMP layer (then TBB, then workqueue), unless
    NUMBA_THREADING_LAYER or NUMBA_THREADING_LAYER_PRIORITY says otherwise;
  - runtime/blas_threads.py keeps NumPy's BLAS on one thread while the kernels are in
    use (route.py switches it back on the reference path).
Measured on the anchor U-Net (2 cores, batch 32, median of 15 steps): train
step 181 ms (workqueue, BLAS on 2 threads) -> 91 ms (OpenMP, BLAS on 1).
The choice of layer only takes effect if no parallel Numba function has run
yet in the process.
"""
import os

import numba

if "NUMBA_THREADING_LAYER" not in os.environ and "NUMBA_THREADING_LAYER_PRIORITY" not in os.environ:
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]
    numba.config.THREADING_LAYER = "default"
