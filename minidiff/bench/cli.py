"""python -m minidiff.bench: minidiff against the same models in PyTorch (CPU, 2 threads).

    python -m minidiff.bench [--cases a,b,...] [--repeats N] [--rounds K] [--pairs P] [--json PATH]
                             [--quick] [--profile]
    python -m minidiff.bench --conv-shapes [--repeats N] [--json PATH]

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
"""
import argparse
import json
import sys

from ..flags import integer, name_list, output_file
from .cases import CASES
from .convs import conv_shape_rows
from .memory import memory_child
from .paths import numba_kernels_available
from .profile import profile_unet_train_step
from .report import format_conv_shape_table, format_table, write_json
from .rows import run_case
from .timing import gemm_gflops
from .torch_mirror import TORCH_THREADS, import_torch


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m minidiff.bench", description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=name_list, default=",".join(CASES),
                   help=f"comma-separated, from {','.join(CASES)}")
    p.add_argument("--repeats", type=integer(1), default=None,
                   help="timed calls per path (default 7, 3 with --quick; 25 with --conv-shapes)")
    p.add_argument("--rounds", type=integer(1), default=None,
                   help="rounds in which the paths take turns (default 3, 1 with --quick)")
    p.add_argument("--pairs", type=integer(0), default=None,
                   help="back-to-back pairs of calls, minidiff then torch, after the rounds (default 7, 0 with --quick)")
    p.add_argument("--json", type=output_file(), default=None, metavar="PATH", help="write the rows as a JSON list")
    p.add_argument("--quick", action="store_true", help="3 repeats, one round and no memory subprocesses")
    p.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    p.add_argument("--profile", action="store_true", help="only profile the U-Net train step by layer type")
    p.add_argument("--conv-shapes", action="store_true",
                   help="only time the U-Net forward's convs one by one at batch 64, against torch")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = [n for n in args.cases if n not in CASES]
    if unknown:
        p.error(f"--cases: unknown {unknown}; expected names from {list(CASES)}")

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
    names = args.cases
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 7)
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    pairs = args.pairs if args.pairs is not None else (0 if args.quick else 7)

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
