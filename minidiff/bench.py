"""python -m minidiff.bench: minidiff against the same models in PyTorch (CPU, 2 threads).

    python -m minidiff.bench [--cases a,b,...] [--repeats N] [--rounds K] [--pairs P] [--json PATH]
                             [--quick] [--profile]
    python -m minidiff.bench --conv-shapes [--repeats N] [--json PATH]

For each case, measured in this one process: the median wall time of a call
(after warm-up; over K rounds in which the three paths take turns, N calls
each per round) of
    minidiff_reference_s   minidiff with the plain-NumPy reference kernels
    minidiff_kernels_s     minidiff with the Numba CPU kernels (the default path)
    torch_s                the PyTorch mirror (minidiff/bench_torch.py, same layers,
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
    gflop, gflops          FLOPs of one call, counted from the layer shapes (conv
                           2 B Cout Ho Wo Cin kh kw, dense 2 N in out, attention
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
                           above its level before one call (Linux VmHWM after a reset
                           of the peak), each (case, implementation) in a fresh
                           subprocess after imports, a batch-2 warm-up and the
                           model's construction: the same method for both libraries.
                           minidiff_tracemalloc is NumPy's own peak from tracemalloc.
unet_forward and ddim_sample_64 run under no_grad on both sides: torch.no_grad()
and minidiff.nn.no_grad() (which the sampling loops use on their own; its
ResBlocks then keep their middle activation on the conv lines). --quick: 3 repeats,
one round, no pairs and no memory subprocesses; --profile: where the U-Net train step's time goes, by
layer type (exclusive time of every layer's forward/backward) and by function;
--conv-shapes: each distinct conv of the anchor U-Net's forward alone at batch
64 (minidiff.kernels against the same conv in torch, calls alternating, each
timed call after an untimed one, N = 25 pairs by default), with how often the
forward runs it and the weighted total.
Missing implementations (no torch, no numba) give null. NumPy's BLAS keeps
its default threads (OPENBLAS_* is left alone). Data are random: the timings
do not depend on the values. The machine may be shared: the numbers are noisy.
"""
import argparse
import cProfile
import gc
import json
import os
import pstats
import resource
import subprocess
import sys
import time
import tracemalloc
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from . import kernels
from .kernels import blas_threads
from .diffusion import GaussianDiffusion
from .models import MLP, UNet
from .nn import Conv2d, Dense, MultiheadAttention, ResBlock, UpsampleConv, no_grad
from .optim import Adam

TORCH_THREADS = 2
PAIRED_GEMM_N = 2048          # the GEMM of paired_gemm_fraction, ~90 ms a call here: right after the
# kernels (whose OpenMP workers spin a while) a 1024 GEMM measured 158-173 GFLOP/s, 190 alone; 2048: 191-201
ANCHOR = dict(in_channels=1, model_channels=16, num_timesteps=100, channel_multipliers=(1, 2, 3))


# --- optional pieces ----------------------------------------------------------------
def import_torch():
    """The PyTorch mirrors (bench_torch.load()) at 2 threads, or None when torch is not installed."""
    from . import bench_torch
    try:
        bt = bench_torch.load()
    except ImportError:
        return None
    bt.set_threads(TORCH_THREADS)
    return bt


@contextmanager
def reference_path(flag=True):
    """Run the block on minidiff's NumPy reference kernels (flag=True) or the default path."""
    if hasattr(kernels, "reference_mode"):
        with kernels.reference_mode(flag):
            yield
        return
    old = kernels.reference_forced() if hasattr(kernels, "reference_forced") else False
    kernels.use_reference(flag)
    try:
        yield
    finally:
        kernels.use_reference(old)


def numba_kernels_available():
    """True when NumPy float32 arrays go to the Numba CPU kernels."""
    name = getattr(kernels, "backend_name", None)
    return name is not None and name(np.zeros(1, np.float32)) == "numba-cpu"


# --- FLOPs from the layer shapes ----------------------------------------------------
def conv_flops(x_shape, out_channels, kernel_size, stride, padding):
    """2 B Cout Ho Wo Cin kh kw: the multiply-adds of one conv forward."""
    B, Cin, H, W = x_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    return 2 * B * out_channels * Ho * Wo * Cin * kh * kw


def forward_flops(model):
    """FLOPs of the last forward of `model`, from the inputs its layers kept.

    Conv2d and Dense count their GEMMs (a ResBlock's first conv and skip conv
    also when they ran as one); attention adds q k^T and P v. An
    UpsampleConv counts its conv on the upsampled image, as PyTorch computes it,
    also when minidiff's fused kernel does 2.25x fewer multiply-adds there.
    """
    layers = [layer for _, layer in model.named_layers()]
    inner = {id(layer.conv) for layer in layers if isinstance(layer, UpsampleConv)}  # counted by their parent
    shared = {id(layer): layer for layer in layers if isinstance(layer, ResBlock) and layer.shared}
    inner |= {id(conv) for blk in shared.values() for conv in (blk.in_layers.conv, blk.skip)}
    total = 0
    for layer in layers:
        if id(layer) in shared:                      # its first conv and skip conv, run as one
            B, _, H, W = layer.x[0].shape
            total += sum(conv_flops((B, conv.in_channels, H, W), conv.out_channels, conv.kernel_size,
                                    conv.stride, conv.padding) for conv in (layer.in_layers.conv, layer.skip))
        elif isinstance(layer, UpsampleConv):
            B, C, H, W = layer.x.shape
            conv = layer.conv
            total += conv_flops((B, C, 2 * H, 2 * W), conv.out_channels, conv.kernel_size,
                                conv.stride, conv.padding)
        elif isinstance(layer, Conv2d) and id(layer) not in inner:
            total += conv_flops(layer.x.shape, layer.out_channels, layer.kernel_size,
                                layer.stride, layer.padding)
        elif isinstance(layer, Dense):
            n = layer.x.size // layer.in_features
            total += 2 * n * layer.in_features * layer.out_features
        elif isinstance(layer, MultiheadAttention):
            B, h, N, _ = layer.P.shape
            d = layer.head_dim
            total += 2 * (2 * B * h * N * N * d)
    return total


def flops_per_sample(model, sample_shape):
    """Forward FLOPs of one sample: a batch-1 forward, then `forward_flops`.

    Every counted layer is linear in the batch size, so B samples cost B times
    this (and the benchmark never allocates a full batch just to count).
    """
    model.forward(np.zeros((1,) + tuple(sample_shape), dtype=model.dtype), np.zeros(1, dtype=np.int64))
    return forward_flops(model)


def gemm_rate(n):
    """A function of `repeats` -> the best GFLOP/s of np.matmul on float32 (n, n) @ (n, n)
    over that many calls, 2 n^3 / time, with NumPy's BLAS at its own thread count (the
    kernels path keeps it on one thread: blas_threads.py), the matrices made once."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    out = np.empty((n, n), np.float32)

    def rate(repeats):
        blas_threads.kernels_mode(False)
        np.matmul(a, b, out=out)
        return 2 * n ** 3 / min(_timed(lambda: np.matmul(a, b, out=out)) for _ in range(repeats)) / 1e9
    return rate


def gemm_gflops(n, repeats=5):
    """Best GFLOP/s of np.matmul on float32 (n, n) @ (n, n): 2 n^3 / time."""
    return gemm_rate(n)(repeats)


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _timed_after_warmup(fn):
    """Seconds of one call of fn() after an untimed one: the other library's thread
    pool may still be spinning from its own call."""
    fn()
    return _timed(fn)


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
    return [_timed(fn) for _ in range(repeats)]


def call_times(fn, repeats, warmup=1, warmup_s=0.5):
    """(median, min) seconds of call_samples(fn, repeats, warmup, warmup_s)."""
    times = call_samples(fn, repeats, warmup, warmup_s)
    return float(np.median(times)), float(np.min(times))


# --- the cases ----------------------------------------------------------------------
@dataclass
class Case:
    """One benchmark: a minidiff callable, its torch mirror (or None) and its FLOPs."""
    name: str
    minidiff: object
    torch: object = None
    flop: float = None
    note: str = ""
    max_repeats: int = None        # a cap for the slow cases
    extra: dict = field(default_factory=dict)


def _train_case(name, model, T, x0, bt, note):
    diffusion = GaussianDiffusion(model, T)
    opt, rng = Adam(model, lr=1e-3), np.random.default_rng(0)

    def step():
        loss, d_out = diffusion.p_losses(x0, rng=rng)
        model.zero_grad()
        model.backward(d_out)
        opt.step()
        return loss

    flop = 3 * x0.shape[0] * flops_per_sample(model, x0.shape[1:])  # forward + input and weight grads
    torch_step = None if bt is None else bt.train_step(bt.from_minidiff(model), diffusion, x0)
    return Case(name, step, torch_step, flop, note, extra={"model": model})


def mlp_train_step(bt, batch=32):
    x0 = np.random.default_rng(1).standard_normal((batch, 2)).astype(np.float32)
    return _train_case("mlp_train_step", MLP(in_dim=2, d_hid=32, num_timesteps=40, num_layers=3),
                       40, x0, bt, f"MLP(2, 32, T=40) train step, batch {batch}")


def unet_train_step(bt, batch=32):
    x0 = np.random.default_rng(1).uniform(-1, 1, (batch, 1, 28, 28)).astype(np.float32)
    return _train_case("unet_train_step", UNet(**ANCHOR), 100, x0, bt,
                       f"anchor UNet train step, batch {batch}, 28x28")


def unet_forward(bt, batch=64):
    model = UNet(**ANCHOR)
    x = np.random.default_rng(1).standard_normal((batch, 1, 28, 28)).astype(np.float32)
    t = np.random.default_rng(2).integers(0, 100, batch)
    flop = batch * flops_per_sample(model, x.shape[1:])
    torch_step = None if bt is None else bt.forward_step(bt.from_minidiff(model), x, t)
    def forward():
        with no_grad():
            return model.forward(x, t)

    return Case("unet_forward", forward, torch_step, flop, f"anchor UNet forward, batch {batch}, no_grad")


def ddim_sample_64(bt, batch=64, steps=20):
    model = UNet(**ANCHOR)
    diffusion = GaussianDiffusion(model, 100)
    shape = (batch, 1, 28, 28)
    flop = steps * batch * flops_per_sample(model, shape[1:])

    def sample():
        return diffusion.ddim_sample_loop(shape, sampling_timesteps=steps, eta=0.0,
                                          rng=np.random.default_rng(0), progress=False)

    torch_step = None
    if bt is not None:
        tmodel = bt.from_minidiff(model)
        ts, ts_next = diffusion._ddim_schedule(steps, "linspace")
        torch_step = lambda: bt.ddim_sample_loop(tmodel, diffusion, shape, ts, ts_next)
    return Case("ddim_sample_64", sample, torch_step, flop,
                f"DDIM {steps} steps, eta 0, {batch} digits, anchor UNet", max_repeats=3)


def conv_case(cin, cout, k, stride, padding, size):
    """A case builder: Conv2d(cin, cout, k, stride, padding) forward + backward at size x size."""
    s = f"s{stride}" if stride != 1 else ""
    name = f"conv_fwd_bwd_{cin}to{cout}_k{k}{s}_{size}"

    def build(bt, batch=32):
        conv = Conv2d(cin, cout, k, stride=stride, padding=padding, rng=0)
        rng = np.random.default_rng(1)
        x = rng.standard_normal((batch, cin, size, size)).astype(np.float32)
        out = (size + 2 * padding - k) // stride + 1
        dy = rng.standard_normal((batch, cout, out, out)).astype(np.float32)

        def step():
            conv.forward(x)
            return conv.backward(dy)

        flop = 3 * conv_flops(x.shape, cout, conv.kernel_size, conv.stride, conv.padding)
        torch_step = None if bt is None else bt.conv_step(conv, x, dy)
        return Case(name, step, torch_step, flop,
                    f"Conv2d {cin}->{cout} {k}x{k} s{stride} p{padding} at {size}x{size}, batch {batch}, fwd+bwd")
    build.__name__ = name
    return build


# Conv shapes of the anchor U-Net, heaviest first (share of its conv FLOPs):
# 32->16 @28 (28%: up level 0 and the upsample conv), 48->32 @14 (21%),
# 16->16 @28 (14%), 48->48 @7 (13%), the 4x4 stride-2 downsample 16->16 @28 (2%).
_BUILDERS = [mlp_train_step, unet_train_step, unet_forward, ddim_sample_64,
             conv_case(16, 16, 3, 1, 1, 28), conv_case(32, 16, 3, 1, 1, 28),
             conv_case(48, 32, 3, 1, 1, 14), conv_case(48, 48, 3, 1, 1, 7),
             conv_case(16, 16, 4, 2, 1, 28)]
CASES = {b.__name__: b for b in _BUILDERS}


def build_case(name, bt=None, **kw):
    """The Case `name` (see CASES); bt is minidiff.bench_torch or None; kw e.g. batch=2."""
    if name not in CASES:
        raise ValueError(f"case: expected one of {list(CASES)}, got {name!r}")
    return CASES[name](bt, **kw)


# --- memory: one subprocess per (case, implementation) ------------------------------
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


# --- one row ------------------------------------------------------------------------
def paired_ratio(fn, ref_fn, pairs):
    """Median over `pairs` pairs of fn's time / ref_fn's time, the two calls of a pair
    back to back, each after one untimed call of its own (_timed_after_warmup)."""
    ratios = [_timed_after_warmup(fn) / _timed_after_warmup(ref_fn) for _ in range(pairs)]
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
    paired = paired_gemm = None
    if case.torch is not None and pairs > 0:
        paired = paired_ratio(case.minidiff, case.torch, min(pairs, case.max_repeats or pairs))
    if pairs > 0 and gemm is not None and case.flop:
        paired_gemm = paired_gemm_fraction(case.minidiff, case.flop, min(pairs, case.max_repeats or pairs),
                                           gemm_rate(PAIRED_GEMM_N))
    stats = {key: (float(np.median(v)), float(np.min(v))) for key, v in samples.items()}
    none = (None, None)
    ref_s, ref_min = stats["minidiff_reference"]
    ker_s, ker_min = stats.get("minidiff_kernels", none)
    torch_s, torch_min = stats.get("torch", none)
    best = min(s for s in (ref_s, ker_s) if s is not None)
    row = {
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
        "peak_mb": None,
        "min_s": {"minidiff_reference": ref_min, "minidiff_kernels": ker_min, "torch": torch_min},
        "repeats": repeats,
        "rounds": rounds,
        "ratio_by_round": by_round or None,
        "paired_ratio_vs_torch": paired,
        "note": case.note,
    }
    if memory:
        got = {impl: measure_memory(name, impl) for impl in IMPLS}
        rss = {impl: (v or {}).get("rss_mb") for impl, v in got.items()}
        row["peak_mb"] = {"minidiff": rss["minidiff_kernels"], "minidiff_reference": rss["minidiff_reference"],
                          "torch": rss["torch"] if bt is not None else None,
                          "minidiff_tracemalloc": (got["minidiff_kernels"] or {}).get("tracemalloc_mb")}
    return row


def _fmt(v, scale=1.0, digits=1):
    return "-" if v is None else f"{v * scale:.{digits}f}"


def format_table(rows):
    head = ("case", "ref ms", "numba ms", "torch ms", "best/torch", "by round", "paired", "GFLOP/s",
            "% GEMM", "paired %", "torch GFLOP/s", "MB minidiff", "MB torch")
    lines = [head]
    for r in rows:
        mem = r["peak_mb"] or {}
        by_round = r.get("ratio_by_round") or []
        spread = f"{min(by_round):.2f}-{max(by_round):.2f}" if len(by_round) > 1 else "-"
        lines.append((r["case"], _fmt(r["minidiff_reference_s"], 1e3), _fmt(r["minidiff_kernels_s"], 1e3),
                      _fmt(r["torch_s"], 1e3), _fmt(r["ratio_vs_torch"], digits=2), spread,
                      _fmt(r.get("paired_ratio_vs_torch"), digits=2), _fmt(r["gflops"]),
                      _fmt(r.get("gemm_fraction"), 100), _fmt(r.get("paired_gemm_fraction"), 100),
                      _fmt(r["torch_gflops"]), _fmt(mem.get("minidiff")), _fmt(mem.get("torch"))))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
                     for line in lines)


# --- where the time goes --------------------------------------------------------------
# The U-Net forward's convolutions one at a time (--conv-shapes): which shapes
# decide the forward's ratio against PyTorch.
CONV_OPS = ("conv2d_forward", "conv3x3_shared_forward", "upsample_conv3x3_forward")


def _conv_spec(op, args):
    """One conv kernel call as (parts, (H, W), weight shapes, stride, padding, upsampled),
    batch left out: every op in CONV_OPS is one or more convs of one input whose
    channels come in parts (upsampled x2 first for upsample_conv3x3_forward)."""
    if op == "conv2d_forward":
        x, w, _, stride, padding = args
        xs, ws = [x], [w]
    else:
        xs, ws, _ = args if op == "conv3x3_shared_forward" else ([args[0]], [args[1]], None)
        stride = padding = (1, 1)
    return (tuple(x.shape[1] for x in xs), tuple(xs[0].shape[2:]), tuple(tuple(w.shape) for w in ws),
            tuple(stride), tuple(padding), op == "upsample_conv3x3_forward")


def unet_conv_calls(model, sample_shape):
    """{(op, spec): calls} of one batch-1 forward of `model`: every conv kernel call
    (the ops in CONV_OPS, as the layers call them through minidiff.kernels; spec from _conv_spec)."""
    counts, saved = {}, {op: getattr(kernels, op) for op in CONV_OPS}

    def recorder(op):
        def call(*args):
            key = (op, _conv_spec(op, args))
            counts[key] = counts.get(key, 0) + 1
            return saved[op](*args)
        return call
    try:
        for op in CONV_OPS:
            setattr(kernels, op, recorder(op))
        model.forward(np.zeros((1,) + tuple(sample_shape), model.dtype), np.zeros(1, np.int64))
    finally:
        for op, fn in saved.items():
            setattr(kernels, op, fn)
    return counts


def conv_spec_arrays(op, spec, batch, rng):
    """Random float32 arguments of minidiff.kernels.<op> for `spec` at `batch` (a list)."""
    parts, (H, W), wshapes, stride, padding, _ = spec
    xs = [rng.standard_normal((batch, c, H, W)).astype(np.float32) for c in parts]
    ws = [rng.standard_normal(s).astype(np.float32) for s in wshapes]
    bs = [rng.standard_normal(s[0]).astype(np.float32) for s in wshapes]
    if op == "conv3x3_shared_forward":
        return [xs, ws, bs]
    return [xs[0], ws[0], bs[0]] + ([stride, padding] if op == "conv2d_forward" else [])


def conv_spec_flops(spec, batch):
    """FLOPs of one call at `batch`; an upsample conv counted on the upsampled image."""
    parts, (H, W), wshapes, stride, padding, up = spec
    k = 2 if up else 1
    return sum(conv_flops((batch, sum(parts), k * H, k * W), s[0], s[2:], stride, padding) for s in wshapes)


def describe_conv_spec(spec):
    """e.g. '3x3 16->16 @28', '4x4 s2 16->32 @14', '3x3 (32+48)->48+48 @7', 'up+3x3 48->32 @7->14'."""
    parts, (H, _), wshapes, (s, _), _, up = spec
    kh, kw = wshapes[0][2:]
    cin = str(parts[0]) if len(parts) == 1 else f"({'+'.join(map(str, parts))})"
    cout = "+".join(str(w[0]) for w in wshapes)
    return (f"{'up+' if up else ''}{kh}x{kw}{' s%d' % s if s != 1 else ''} {cin}->{cout} "
            f"@{H}{'->%d' % (2 * H) if up else ''}")


def conv_shape_rows(bt, batch=64, repeats=25, model=None, size=28):
    """One row per distinct conv of a U-Net's forward on size x size images (the
    anchor U-Net by default): minidiff's kernel
    (minidiff.kernels.<op>, the default path) and the same conv in torch (bt, or
    None) at `batch`, their calls alternating, each timed call after an untimed
    one of its own (_timed_after_warmup); medians, and the median of the
    per-pair ratios ('paired', robust to slow spells that hit both)."""
    model = model or UNet(**ANCHOR)
    rng = np.random.default_rng(0)
    rows = []
    for (op, spec), calls in unet_conv_calls(model, (model.in_channels, size, size)).items():
        args = conv_spec_arrays(op, spec, batch, rng)
        fns = [lambda op=op, args=args: getattr(kernels, op)(*args)]
        if bt is not None:
            fns.append(bt.conv_op_step(op, args))
        for fn in fns:
            call_samples(fn, 1, warmup=1, warmup_s=0.1)
        times = [[] for _ in fns]
        for _ in range(repeats):
            for t, fn in zip(times, fns):
                t.append(_timed_after_warmup(fn))
        ours = float(np.median(times[0]))
        theirs = float(np.median(times[1])) if bt is not None else None
        flop = conv_spec_flops(spec, batch)
        rows.append({"conv": describe_conv_spec(spec), "op": op, "calls_per_forward": calls,
                     "minidiff_s": ours, "torch_s": theirs,
                     "ratio_vs_torch": None if theirs is None else ours / theirs,
                     "paired_ratio": None if theirs is None else
                     float(np.median(np.array(times[0]) / np.array(times[1]))),
                     "gflops": flop / ours / 1e9, "torch_gflops": None if theirs is None else flop / theirs / 1e9})
    return rows


def format_conv_shape_table(rows, batch):
    head = ("conv (U-Net forward)", "calls", "ours ms", "torch ms", "ours/torch", "paired",
            "GFLOP/s", "torch GFLOP/s")
    lines = [head]
    for r in rows:
        lines.append((r["conv"], str(r["calls_per_forward"]), _fmt(r["minidiff_s"], 1e3, 2), _fmt(r["torch_s"], 1e3, 2),
                      _fmt(r["ratio_vs_torch"], digits=2), _fmt(r["paired_ratio"], digits=2), _fmt(r["gflops"], digits=0),
                      _fmt(r["torch_gflops"], digits=0)))
    ours = sum(r["calls_per_forward"] * r["minidiff_s"] for r in rows)
    have_torch = all(r["torch_s"] is not None for r in rows)
    theirs = sum(r["calls_per_forward"] * r["torch_s"] for r in rows) if have_torch else None
    lines.append((f"all, x calls (batch {batch})", str(sum(r["calls_per_forward"] for r in rows)), _fmt(ours, 1e3, 1),
                  _fmt(theirs, 1e3, 1), _fmt(None if theirs is None else ours / theirs, digits=2), "", "", ""))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
                     for line in lines)


def layer_times(model, step, repeats=3):
    """Exclusive seconds per call of step() by (layer type, 'forward' | 'backward').

    Every layer's forward/backward is wrapped with a timer that subtracts the time
    of the nested layer calls; '(outside the model)' is the rest (loss, optimiser).
    """
    totals, stack = defaultdict(float), [0.0]
    layers = [layer for _, layer in model.named_layers()]

    def wrap(layer, method):
        inner, key = getattr(layer, method), (type(layer).__name__, method)

        def timed(*args, **kwargs):
            stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                totals[key] += dt - stack.pop()
                stack[-1] += dt
        setattr(layer, method, timed)

    for layer in layers:
        wrap(layer, "forward")
        wrap(layer, "backward")
    try:
        step()
        totals.clear()
        wall = sum(_timed(step) for _ in range(repeats))
    finally:
        for layer in layers:
            del layer.forward, layer.backward
    out = {k: v / repeats for k, v in totals.items()}
    out[("(outside the model)", "")] = (wall - sum(totals.values())) / repeats
    return out


def profile_unet_train_step(repeats=3, top=15):
    """Print the U-Net train step's time by layer type (both paths) and cProfile's top functions."""
    for label, ref in (("reference", True), ("numba kernels", False)):
        if not ref and not numba_kernels_available():
            continue
        with reference_path(ref):
            case = build_case("unet_train_step")
            times = layer_times(case.extra["model"], case.minidiff, repeats)
        total = sum(times.values())
        print(f"\nunet_train_step on the {label} path: {total * 1e3:.1f} ms per step, by layer type")
        for (kind, method), s in sorted(times.items(), key=lambda kv: -kv[1]):
            print(f"  {kind:28s} {method:9s} {s * 1e3:8.1f} ms  {100 * s / total:5.1f}%")
    if numba_kernels_available():
        case = build_case("unet_train_step")
        case.minidiff()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(repeats):
            case.minidiff()
        prof.disable()
        print(f"\ncProfile, numba kernels path, top {top} functions by own time ({repeats} steps):")
        pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(top)


# --- command line -------------------------------------------------------------------
def _write_json(path, rows):
    """--json: the rows as a JSON list (nothing when path is None)."""
    if path:
        with open(path, "w") as f:
            json.dump(rows, f, indent=1)
        print(f"wrote {path}")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m minidiff.bench", description=__doc__.split("\n")[0])
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {','.join(CASES)}")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per path (default 7, 3 with --quick)")
    p.add_argument("--rounds", type=int, default=None,
                   help="rounds in which the paths take turns (default 3, 1 with --quick)")
    p.add_argument("--pairs", type=int, default=None,
                   help="back-to-back pairs of calls, minidiff then torch, after the rounds (default 7, 0 with --quick)")
    p.add_argument("--json", default=None, metavar="PATH", help="write the rows as a JSON list")
    p.add_argument("--quick", action="store_true", help="3 repeats, one round and no memory subprocesses")
    p.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    p.add_argument("--profile", action="store_true", help="only profile the U-Net train step by layer type")
    p.add_argument("--conv-shapes", action="store_true",
                   help="only time the U-Net forward's convs one by one at batch 64, against torch")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.memory_child:
        name, impl = args.memory_child.rsplit(":", 1)
        print(json.dumps(memory_child(name, impl)))
        return 0
    if args.profile:
        profile_unet_train_step()
        return 0
    if args.conv_shapes:
        rows = conv_shape_rows(import_torch(), repeats=args.repeats or 25)
        print(format_conv_shape_table(rows, 64))
        _write_json(args.json, rows)
        return 0
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        p.error(f"--cases: unknown {unknown}; expected names from {list(CASES)}")
    repeats = args.repeats or (3 if args.quick else 7)
    if repeats < 1:
        p.error(f"--repeats: expected a positive integer, got {repeats}")
    rounds = args.rounds or (1 if args.quick else 3)
    if rounds < 1:
        p.error(f"--rounds: expected a positive integer, got {rounds}")
    pairs = args.pairs if args.pairs is not None else (0 if args.quick else 7)
    if pairs < 0:
        p.error(f"--pairs: expected 0 or a positive integer, got {pairs}")

    bt = import_torch()
    gemm = {n: gemm_gflops(n) for n in (1024, 2048)}
    print("GEMM ceiling, np.matmul float32 (NumPy's BLAS at its default threads): "
          + ", ".join(f"{n}x{n} {g:.1f} GFLOP/s" for n, g in gemm.items()))
    torch_gemm = None
    if bt is not None:
        torch_gemm = {n: bt.matmul_gflops(n) for n in (1024, 2048)}
        print(f"torch.matmul float32 at {TORCH_THREADS} threads (its own BLAS and ISA): "
              + ", ".join(f"{n}x{n} {g:.1f} GFLOP/s" for n, g in torch_gemm.items()))
        torch_gemm = max(torch_gemm.values())
    print(f"numba kernels: {'yes' if numba_kernels_available() else 'no (reference only)'}; "
          f"torch: {'%s, %d threads' % (bt.torch.__version__, bt.torch.get_num_threads()) if bt else 'not installed'}; "
          f"{rounds} round(s) taking turns, {repeats} calls (ddim: 3) per path per round after "
          f"0.5 s of warm-up, medians over all calls; then {pairs} back-to-back pairs (ddim: 3); memory: "
          f"{'skipped' if args.quick or args.no_memory else 'peak RSS increase of one call (VmHWM), fresh subprocess each'}")
    rows = []
    for name in names:
        rows.append(run_case(name, bt, repeats=repeats, memory=not (args.quick or args.no_memory),
                             gemm=max(gemm.values()), torch_gemm=torch_gemm, rounds=rounds, pairs=pairs))
        print(f"  done {name}", file=sys.stderr, flush=True)
    print(format_table(rows))
    _write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
