"""How the benchmark times a call: warm-up, medians, back-to-back pairs, the GEMM ceiling.

    timed(fn)                          seconds of one call
    timed_after_warmup(fn)             seconds of one call after an untimed one
    call_samples(fn, repeats, ...)     seconds of `repeats` calls after a warm-up
    call_times(fn, repeats, ...)       (median, min) of call_samples
    paired_ratio(fn, ref_fn, pairs)    median of fn / ref_fn over back-to-back pairs
    paired_gemm_fraction(...)          median share of the GEMM ceiling over pairs
    gemm_rate(n), gemm_gflops(n)       np.matmul float32 n x n in GFLOP/s: the ceiling

The machine may be shared and its speed may drift over seconds to minutes: a
pair's two measures are taken a fraction of a second apart, so a drift moves
both alike.
"""
import time

import numpy as np

from ..kernels.runtime import blas_threads

PAIRED_GEMM_N = 2048          # the GEMM of paired_gemm_fraction, ~90 ms a call here: right after the
# kernels (whose OpenMP workers spin a while) a 1024 GEMM measured 158-173 GFLOP/s, 190 alone; 2048: 191-201


def timed(fn):
    """Seconds of one call of fn()."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def timed_after_warmup(fn):
    """Seconds of one call of fn() after an untimed one: the other library's thread
    pool may still be spinning from its own call."""
    fn()
    return timed(fn)


def call_samples(fn, repeats, warmup=1, warmup_s=0.5):
    """Seconds of each of `repeats` calls of fn() after `warmup` calls and at least
    `warmup_s` seconds of calls: the thread pool of the path that ran before (OpenBLAS
    or OpenMP workers) keeps spinning for a while and slows the first calls (measured:
    a 2.3 ms conv took 6 ms for the first few calls after the reference path)."""
    t0 = time.perf_counter()
    for _ in range(warmup):
        fn()
    while time.perf_counter() - t0 < warmup_s:
        fn()
    return [timed(fn) for _ in range(repeats)]


def call_times(fn, repeats, warmup=1, warmup_s=0.5):
    """(median, min) seconds of call_samples(fn, repeats, warmup, warmup_s)."""
    times = call_samples(fn, repeats, warmup, warmup_s)
    return float(np.median(times)), float(np.min(times))


def paired_ratio(fn, ref_fn, pairs):
    """Median over `pairs` pairs of fn's time / ref_fn's time, the two calls of a pair
    back to back, each after one untimed call of its own (timed_after_warmup)."""
    ratios = [timed_after_warmup(fn) / timed_after_warmup(ref_fn) for _ in range(pairs)]
    return float(np.median(ratios))


def paired_gemm_fraction(fn, flop, pairs, rate, warmup_s=0.3):
    """Median over `pairs` pairs of fn's GFLOP/s (flop / the time of one call after
    `warmup_s` seconds of untimed calls) over the GEMM ceiling measured right after it
    (rate(2): the best of two GEMMs after an untimed one): the share of the ceiling, the
    two measures of a pair under a second apart. The warm-up outlasts OpenBLAS's workers,
    which spin on both cores for a while after a GEMM (with one untimed call only, a 4 ms
    conv read 12-48% of the ceiling in pairs against 29-85% from its medians)."""
    fractions = [flop / call_samples(fn, 1, 1, warmup_s)[0] / 1e9 / rate(2) for _ in range(pairs)]
    return float(np.median(fractions))


# --- the ceiling: NumPy's GEMM -------------------------------------------------------
def gemm_rate(n):
    """A function of `repeats` -> the best GFLOP/s of np.matmul on float32 (n, n) @ (n, n)
    over that many calls, 2 n^3 / time, with NumPy's BLAS at its own thread count (the
    kernels path keeps it on one thread: kernels/runtime/blas_threads.py), the matrices made once."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    out = np.empty((n, n), np.float32)

    def rate(repeats):
        blas_threads.kernels_mode(False)
        np.matmul(a, b, out=out)
        return 2 * n ** 3 / min(timed(lambda: np.matmul(a, b, out=out)) for _ in range(repeats)) / 1e9
    return rate


def gemm_gflops(n, repeats=5):
    """Best GFLOP/s of np.matmul on float32 (n, n) @ (n, n): 2 n^3 / time."""
    return gemm_rate(n)(repeats)
