"""One case timed on its three paths -> its JSON row (run_case).

For each case, measured in this one process: the median wall time of a call
(after warm-up; over K rounds in which the three paths take turns, N calls
each per round) of
    minidiff_reference_s   minidiff with the plain-NumPy reference kernels
    minidiff_kernels_s     minidiff with the Numba CPU kernels (the default path)
    torch_s                the PyTorch mirror (minidiff/bench/torch_mirror.py, same layers,
                           weights and parameter count), torch.set_num_threads(2)
    ratio_vs_torch         min(minidiff medians) / torch_s (> 1: minidiff is slower)
    min_s                  the fastest call of each path (less sensitive to other jobs)
    ratio_by_round         each round's best minidiff median / torch median (null without
                           torch): their spread shows how much the machine moved
    paired_ratio_vs_torch  after the rounds, P pairs of calls, minidiff's default path then
                           torch, each call preceded by an untimed one (which absorbs
                           the other library's still-spinning threads): the median of
                           the P per-pair ratios. The two calls of a pair are a fraction
                           of a second apart, so a machine whose speed drifts over
                           seconds to minutes moves both alike (null without torch)
    gflop, gflops          FLOPs of one call, counted from the layer shapes (flops.py:
                           conv 2 B Cout Ho Wo Cin kh kw, dense 2 N in out, attention
                           2 x 2 B h N^2 d; backward = 2 x forward), over minidiff's
                           best time; torch_gflops over torch's. Pointwise ops and
                           norms are not counted.
    gemm_gflops            the ceiling: np.matmul float32 n x n (n = 1024, 2048, the best
                           of 5 calls each), measured once before the first case
    gemm_fraction          gflops / gemm_gflops: minidiff's median against that best GEMM
    paired_gemm_fraction   after the rounds, P pairs: one call of minidiff's default path
                           (after 0.3 s of untimed ones), then the best of two 2048 GEMMs (after
                           an untimed one, which absorbs the kernels' spinning threads); the
                           median of the P ratios of its GFLOP/s to the GEMM's. The ceiling
                           is read seconds, not minutes, from the case it is compared to
                           (null with --pairs 0)
    torch_gemm_gflops      the same for torch.matmul (torch brings its own BLAS)
    peak_mb                {"minidiff": kernels path, "minidiff_reference", "torch",
                            "minidiff_tracemalloc"}: how far the resident set peaks
                           above its level before one call (memory.py), each (case,
                           implementation) in a fresh subprocess
    repeats, rounds, note  N, K and the case's description
Missing implementations (no torch, no numba) give null.
"""
import numpy as np

from .cases import build_case
from .memory import IMPLS, measure_memory
from .paths import numba_kernels_available, reference_path
from .timing import PAIRED_GEMM_N, call_samples, gemm_rate, paired_gemm_fraction, paired_ratio


def run_case(name, bt=None, repeats=7, warmup=1, memory=True, gemm=None, torch_gemm=None, rounds=1, pairs=0):
    """Time case `name` on the three paths; -> the JSON row (see the module docstring).

    With rounds > 1 the paths take turns (reference, kernels, torch, reference, ...),
    `repeats` calls each per round, so a slow spell of the shared machine falls on
    all of them; the medians are over all calls, ratio_by_round gives each round's
    best / torch. Then `pairs` pairs of calls, minidiff's default path and torch
    (paired_ratio_vs_torch).
    """
    case = build_case(name, bt)
    repeats = min(repeats, case.max_repeats or repeats)
    paths = [("minidiff_reference", case.minidiff, True)]
    if numba_kernels_available():
        paths.append(("minidiff_kernels", case.minidiff, False))
    if case.torch is not None:
        paths.append(("torch", case.torch, False))
    samples, by_round = take_turns(paths, rounds, repeats, warmup)
    paired = paired_gemm = None
    if case.torch is not None and pairs > 0:
        paired = paired_ratio(case.minidiff, case.torch, min(pairs, case.max_repeats or pairs))
    if pairs > 0 and gemm is not None and case.flop:
        paired_gemm = paired_gemm_fraction(case.minidiff, case.flop, min(pairs, case.max_repeats or pairs),
                                           gemm_rate(PAIRED_GEMM_N))
    row = row_fields(name, case, samples, gemm, torch_gemm, repeats, rounds, by_round, paired, paired_gemm)
    if memory:
        got = {impl: measure_memory(name, impl) for impl in IMPLS}
        rss = {impl: (v or {}).get("rss_mb") for impl, v in got.items()}
        row["peak_mb"] = {"minidiff": rss["minidiff_kernels"], "minidiff_reference": rss["minidiff_reference"],
                          "torch": rss["torch"] if bt is not None else None,
                          "minidiff_tracemalloc": (got["minidiff_kernels"] or {}).get("tracemalloc_mb")}
    return row


def take_turns(paths, rounds, repeats, warmup):
    """(samples {path: [seconds]}, by_round [best minidiff / torch per round]): `rounds` rounds in
    which the paths (key, fn, on the reference path?) take turns, `repeats` timed calls each."""
    samples, by_round = {key: [] for key, _, _ in paths}, []
    for _ in range(rounds):
        med = {}
        for key, fn, ref in paths:
            with reference_path(ref):
                times = call_samples(fn, repeats, warmup)
            samples[key] += times
            med[key] = float(np.median(times))
        if "torch" in med:
            by_round.append(min(med.get("minidiff_kernels", np.inf), med["minidiff_reference"]) / med["torch"])
    return samples, by_round


def row_fields(name, case, samples, gemm, torch_gemm, repeats, rounds, by_round, paired, paired_gemm, peak=None):
    """The fields every row has (the module docstring names them), from the timed samples of each path."""
    stats = {key: (float(np.median(v)), float(np.min(v))) for key, v in samples.items()}
    none = (None, None)
    ref_s, ref_min = stats["minidiff_reference"]
    ker_s, ker_min = stats.get("minidiff_kernels", none)
    torch_s, torch_min = stats.get("torch", none)
    best = min(s for s in (ref_s, ker_s) if s is not None)
    return {
        "case": name,
        "minidiff_reference_s": ref_s,
        "minidiff_kernels_s": ker_s,
        "torch_s": torch_s,
        "ratio_vs_torch": None if torch_s is None else best / torch_s,
        "gflop": case.flop / 1e9,
        "gflops": case.flop / best / 1e9,
        "torch_gflops": None if torch_s is None else case.flop / torch_s / 1e9,
        "gemm_gflops": gemm,
        "gemm_fraction": None if gemm is None else case.flop / best / 1e9 / gemm,
        "paired_gemm_fraction": paired_gemm,
        "torch_gemm_gflops": torch_gemm,
        "peak_mb": peak,
        "min_s": {"minidiff_reference": ref_min, "minidiff_kernels": ker_min, "torch": torch_min},
        "repeats": repeats,
        "rounds": rounds,
        "ratio_by_round": by_round or None,
        "paired_ratio_vs_torch": paired,
        "note": case.note,
    }
