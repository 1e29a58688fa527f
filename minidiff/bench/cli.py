"""python -m minidiff.bench: minidiff against the same models in PyTorch (CPU, 2 threads; or a GPU).

    python -m minidiff.bench [--cases a,b,...] [--repeats N] [--rounds K] [--pairs P] [--json PATH]
                             [--quick] [--profile]
    python -m minidiff.bench --conv-shapes [--repeats N] [--json PATH]
    python -m minidiff.bench --device cuda [--cases ...] [--repeats N] [--rounds K] [--pairs P] [--json PATH]
    python -m minidiff.bench --device cuda --compile-only [--json PATH]

Prints the GEMM ceiling, then one row per case (rows.py says what each field
means) as a table, and writes the rows as a JSON list with --json. --quick: 3
repeats, one round, no pairs and no memory subprocesses; --profile: where the
U-Net train step's time goes, by layer type (exclusive time of every layer's
forward/backward) and by function (profile.py); --conv-shapes: each distinct
conv of the anchor U-Net's forward alone at batch 64 (minidiff.kernels against
the same conv in torch, calls alternating, each timed call after an untimed
one, N = 25 pairs by default), with how often the forward runs it and the
weighted total (convs.py).
Missing implementations (no torch, no numba) give null. NumPy's BLAS keeps
its default threads (OPENBLAS_* is left alone). Data are random: the timings
do not depend on the values. The machine may be shared: the numbers are noisy.
--device cuda runs the U-Net cases on a GPU against PyTorch CUDA (gpu.py says
what its rows hold); without CuPy and a CUDA device it stops at once, saying why.
"""
import argparse
import json
import sys

from ..backend import cuda_unavailable_reason
from ..flags import integer, name_list, output_file
from .cases import CASES
from .convs import conv_shape_rows
from .memory import memory_child
from .paths import numba_kernels_available
from .profile import profile_unet_train_step
from .report import format_conv_shape_table, format_first_call_table, format_table, write_json
from .rows import run_case
from .timing import gemm_gflops
from .torch_mirror import TORCH_THREADS, import_torch

GPU_CASE_NAMES = ("unet_train_step", "unet_forward", "unet_forward_256", "ddim_sample_64", "dpmpp_2m_sample_64")   # gpu.GPU_CASES


def _case_names(p, cases, known):
    """--cases as a list of names from `known` (all of them when not given); exits on an unknown one."""
    names = list(known) if cases is None else cases
    unknown = [n for n in names if n not in known]
    if unknown:
        p.error(f"--cases: unknown {unknown}; expected names from {list(known)}")
    return names


def _counts(p, args, defaults):
    """(repeats, rounds, pairs): the flags (checked when parsed), else `defaults`, else --quick's 3, 1, 0."""
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else defaults[0])
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else defaults[1])
    pairs = args.pairs if args.pairs is not None else (0 if args.quick else defaults[2])
    return repeats, rounds, pairs


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m minidiff.bench", description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="cpu (default) or cuda: the U-Net cases on a GPU against PyTorch CUDA")
    p.add_argument("--cases", type=name_list, default=None,
                   help=f"comma-separated, from {','.join(CASES)} (--device cuda: {','.join(GPU_CASE_NAMES)})"),
    p.add_argument("--repeats", type=integer(1), default=None,
                   help="timed calls per path (default 7, --device cuda 10, 3 with --quick; 25 with --conv-shapes)")
    p.add_argument("--rounds", type=integer(1), default=None,
                   help="rounds in which the paths take turns (default 3, --device cuda 2, 1 with --quick)")
    p.add_argument("--pairs", type=integer(0), default=None,
                   help="back-to-back pairs of calls, minidiff then torch, after the rounds "
                        "(default 7, --device cuda 5, 0 with --quick)")
    p.add_argument("--json", type=output_file(), default=None, metavar="PATH", help="write the rows as a JSON list")
    p.add_argument("--quick", action="store_true", help="3 repeats, one round and no memory subprocesses")
    p.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    p.add_argument("--profile", action="store_true", help="only profile the U-Net train step by layer type")
    p.add_argument("--conv-shapes", action="store_true",
                   help="only time the U-Net forward's convs one by one at batch 64, against torch")
    p.add_argument("--compile-only", action="store_true",
                   help="--device cuda: only compile (or load from the on-disk caches) every CUDA kernel the "
                        "U-Net uses, in float32 and float64, and report the time")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.device == "cuda":
        if args.profile or args.conv_shapes:
            p.error("--profile and --conv-shapes: CPU only, not with --device cuda")
        reason = cuda_unavailable_reason()
        if reason is not None:
            p.error(f"--device cuda needs CuPy and a CUDA device: {reason}")
        return run_cuda(args, p)
    if args.compile_only:
        p.error("--compile-only: only with --device cuda")

    if args.memory_child:
        name, impl = args.memory_child.rsplit(":", 1)
        print(json.dumps(memory_child(name, impl)))
        return 0
    if args.profile:
        profile_unet_train_step()
        return 0
    if args.conv_shapes:
        rows = conv_shape_rows(import_torch(), repeats=25 if args.repeats is None else args.repeats)
        print(format_conv_shape_table(rows, 64))
        write_json(args.json, rows)
        return 0
    names = _case_names(p, args.cases, CASES)
    repeats, rounds, pairs = _counts(p, args, (7, 3, 7))

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
    write_json(args.json, rows)
    return 0


def run_cuda(args, p):
    """--device cuda (a GPU is there: main checked): the GPU cases, or --compile-only."""
    from . import gpu
    if args.compile_only:
        out = gpu.warm_kernels()
        print(json.dumps(out))
        write_json(args.json, out)
        return 0
    names = _case_names(p, args.cases, gpu.GPU_CASES)
    repeats, rounds, pairs = _counts(p, args, (10, 2, 5))
    bt = import_torch()
    if bt is not None and not bt.torch.cuda.is_available():
        print(f"torch {bt.torch.__version__} sees no CUDA device (a CPU build?): no torch columns")
        bt = None
    settings = None if bt is None else bt.cuda_settings()
    import cupy
    import numba_cuda
    gemm = {n: gpu.cupy_gemm_gflops(n) for n in gpu.GEMM_SIZES}
    torch_gemm = None if bt is None else {n: bt.matmul_gflops(n, device="cuda") for n in gpu.GEMM_SIZES}
    print(f"GPU: {gpu.gpu_name()}; CuPy {cupy.__version__}, numba-cuda {numba_cuda.__version__}; torch: "
          f"{'not installed or no CUDA' if bt is None else bt.torch.__version__ + ' ' + json.dumps(settings)}")
    print("GEMM ceiling, cupy.matmul float32: " + ", ".join(f"{n}x{n} {g:.0f} GFLOP/s" for n, g in gemm.items())
          + ("" if torch_gemm is None else "; torch.matmul: "
             + ", ".join(f"{n}x{n} {g:.0f} GFLOP/s" for n, g in torch_gemm.items())))
    print(f"{rounds} round(s) taking turns, {repeats} synchronised calls (ddim: 3) per path per round after 0.5 s "
          f"of warm-up, medians; then {pairs} back-to-back pairs; memory: "
          f"{'skipped' if args.quick or args.no_memory else 'CuPy pool peak vs torch.cuda.max_memory_allocated'}")
    rows = []
    for name in names:
        rows.append(gpu.run_gpu_case(name, bt, repeats=repeats, rounds=rounds, pairs=pairs,
                                     gemm=max(gemm.values()), torch_gemm=None if torch_gemm is None
                                     else max(torch_gemm.values()), memory=not (args.quick or args.no_memory)))
        print(f"  done {name}", file=sys.stderr, flush=True)
    print(format_table(rows))
    print(format_first_call_table(rows))
    write_json(args.json, rows)
    return 0
