"""minidiff.kernels: the hot loops of minidiff, a small library of their own (installed from the
top-level `kernels/` folder under the `minidiff` namespace; it imports nothing from minidiff).

One folder per operation, each with a plain-`xp` reference beside its Numba CPU and
Numba CUDA versions (the same names in each):

    conv/        2-D convolution: reference.py (im2col + GEMM), reference_3x3.py, cpu.py,
                 cpu_3x3.py (direct 3x3 on padded lines), cpu_4x4s2.py (4x4 stride 2 over phases),
                 lanes.py (both on image lanes), cuda.py
    upconv/      nearest x2 upsampling + 3x3 conv as four 2x2 convs: phases.py, reference.py, cpu.py,
                 lanes.py, cuda.py
    groupnorm/   fused GroupNorm + shift + SiLU (+ residual): reference.py, cpu.py, cpu_lines.py,
                 lanes.py, cuda.py
    resblock/    a ResBlock under no_grad: cpu.py (conv -> GroupNorm+SiLU -> conv on the conv lines), lanes.py
    attention/   multi-head softmax(q k^T / sqrt(d)) v: reference.py, cpu.py, cuda.py
    sampling/    fused DDPM / DDIM steps and the few-step samplers' shared step: reference.py (with the
                 shared coefficients), solvers.py (DPM-Solver++, Euler, Heun coefficients), cpu.py, cuda.py
    adam/        Adam's parameter update in one pass: reference.py, cpu.py, cuda.py
    lines/       the image-lanes layout: geometry.py, activation.py (OnLines), copies.py (onto / off lanes)
    runtime/     numba_threads.py, blas_threads.py, heap.py, scratch.py, fast_exp.py, cuda_launch.py

    ops.py       the face: one function per operation, picking its implementation (route.py: by device,
                 dtype, layout, forced reference; ops.py: shape specialisations)
    check.py     compares any kernel with its reference (used by the tests)
    bench.py     `python -m minidiff.kernels.bench`: reference vs Numba timings
    xp.py        get_xp: NumPy, CuPy or the test backend

docs/kernels.md is a guided tour. Numba is imported on first use only.
"""
from .lines.activation import OnLines
from .ops import (adam_step, attention_backward, attention_forward, concat_channels, conv2d_backward,
                  conv2d_forward, conv3x3_shared_backward, conv3x3_shared_forward, conv_shape, ddim_step,
                  ddpm_step, dpmpp_step, euler_ancestral_step, euler_step, groupnorm_silu_backward,
                  groupnorm_silu_forward, heun_step, lanes_fit, resblock_forward, solver_step, split_channels,
                  to_array, to_lanes, upsample_conv3x3_backward, upsample_conv3x3_forward)
from .route import backend_name, reference_forced, reference_mode, use_reference

__all__ = ["conv2d_forward", "conv2d_backward", "conv_shape", "conv3x3_shared_forward", "conv3x3_shared_backward",
           "upsample_conv3x3_forward", "upsample_conv3x3_backward",
           "groupnorm_silu_forward", "groupnorm_silu_backward", "resblock_forward",
           "attention_forward", "attention_backward", "ddpm_step", "ddim_step", "solver_step", "dpmpp_step",
           "euler_step", "euler_ancestral_step", "heun_step", "adam_step",
           "concat_channels", "split_channels", "lanes_fit", "to_lanes", "to_array", "OnLines",
           "use_reference", "reference_mode", "reference_forced", "backend_name"]
