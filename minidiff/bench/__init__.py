"""minidiff.bench: minidiff against the same models in PyTorch, on your machine.

    python -m minidiff.bench [--quick] [--cases ...] [--json PATH]    (cli.py: the flags)

One file per concern:
    cases.py         the cases (Case, CASES, build_case) and the anchor U-Net
    paths.py         minidiff's reference and Numba kernels paths
    timing.py        warm-up, medians, back-to-back pairs, the GEMM ceiling
    flops.py         FLOPs counted from the layer shapes
    rows.py          one case on its three paths -> its JSON row (the fields)
    memory.py        peak memory of one call, in a fresh subprocess
    torch_mirror.py  the PyTorch mirrors of the models (torch imported inside load())
    convs.py         --conv-shapes: the U-Net forward's convs one at a time
    profile.py       --profile: the U-Net train step's time by layer type and function
    report.py        the text tables and the JSON list
    gpu.py           --device cuda: the U-Net cases on a GPU against PyTorch CUDA
    cli.py           the command line

Importing it needs nothing but NumPy: torch is imported only when a benchmark runs.
"""
from .cases import ANCHOR, CASES, Case, build_case
from .cli import main
from .convs import CONV_OPS, conv_shape_rows, conv_spec_arrays, conv_spec_flops, describe_conv_spec, unet_conv_calls
from .flops import conv_flops, flops_per_sample, forward_flops
from .memory import measure_memory, memory_child, peak_rss_increase
from .paths import numba_kernels_available, reference_path
from .profile import layer_times, profile_unet_train_step
from .report import format_conv_shape_table, format_first_call_table, format_table, write_json
from .rows import run_case
from .timing import (call_samples, call_times, gemm_gflops, gemm_rate, paired_gemm_fraction, paired_ratio,
                     timed, timed_after_warmup)
from .torch_mirror import TORCH_THREADS, import_torch

__all__ = ["ANCHOR", "CASES", "Case", "build_case", "main", "CONV_OPS", "conv_shape_rows", "conv_spec_arrays",
           "conv_spec_flops", "describe_conv_spec", "unet_conv_calls", "conv_flops", "flops_per_sample",
           "forward_flops", "measure_memory", "memory_child", "peak_rss_increase", "numba_kernels_available",
           "reference_path", "layer_times", "profile_unet_train_step", "format_conv_shape_table",
           "format_first_call_table", "format_table",
           "write_json", "run_case", "call_samples", "call_times", "gemm_gflops", "gemm_rate",
           "paired_gemm_fraction", "paired_ratio", "timed", "timed_after_warmup", "TORCH_THREADS",
           "import_torch"]
