"""minidiff.kernels: the hot loops, each as a NumPy reference, a Numba CPU
kernel and a Numba CUDA kernel side by side (installed from the top-level
`kernels/` folder under the `minidiff` namespace).

    conv_reference.py  conv_cpu.py  conv_cuda.py        2-D convolution (im2col + GEMM)
    lines.py           the padded-line layout of the CPU conv kernels (one image per
                       point, or 16 images side by side: lanes)
    conv3x3_reference.py  conv3x3_cpu.py
                       direct 3x3 stride-1 convolution on padded lines (no im2col);
                       several convs of one input given in channel parts (conv3x3_shared_*)
    groupnorm_lines_cpu.py  conv_norm_conv_cpu.py
                       a ResBlock's conv -> GroupNorm+SiLU -> conv on the lines, for
                       inference (the middle activation never leaves them; CPU)
    on_lines.py  on_lines_cpu.py
                       a no_grad forward whose activations stay on image lanes from
                       layer to layer (OnLines; the U-Net's layers take them; CPU)
    conv4x4s2_cpu.py   4x4 stride-2 convolution as a 2x2 one over input phases (CPU)
    upconv_phases.py  upconv_cpu.py  upconv_cuda.py
                       nearest x2 upsampling + 3x3 convolution as four 2x2 ones on the
                       small image (on the reference path nn.UpsampleConv runs the two steps)
    sampling.py        sampling_cpu.py  sampling_cuda.py  fused DDPM / DDIM steps
    groupnorm_reference.py  groupnorm_cpu.py  groupnorm_cuda.py
                       fused GroupNorm + per-channel shift + SiLU
    attention_reference.py  attention_cpu.py  attention_cuda.py
                       multi-head softmax(q k^T / sqrt(d)) v, one (sample, head) per loop / thread
    adam.py  adam_cpu.py  adam_cuda.py   Adam's parameter update in one pass
    dispatch.py        which of them an array goes to
    check.py           compare any kernel with its reference (used by the tests)
    numba_threads.py   Numba's CPU threading layer (OpenMP; see there why)
    blas_threads.py    NumPy's BLAS on one thread while the CPU kernels run
    scratch.py         reused work arrays of the CPU kernels
    bench.py           `python -m minidiff.kernels.bench`: reference vs Numba timings

Layers call the dispatching functions below; they pick the implementation
from the array type (see dispatch.py). Numba is imported on first use only.
"""
from .dispatch import (backend_name, conv2d_backward, conv2d_forward, ddim_step, ddpm_step,
                       reference_forced, reference_mode, use_reference)
from .dispatch import groupnorm_silu_backward, groupnorm_silu_forward
from .dispatch import upsample_conv3x3_backward, upsample_conv3x3_forward
from .dispatch import conv3x3_shared_backward, conv3x3_shared_forward, conv3x3_norm_conv3x3_forward
from .dispatch import attention_backward, attention_forward
from .dispatch import adam_step, lines_flow
from .on_lines import OnLines

__all__ = ["conv2d_forward", "conv2d_backward", "ddpm_step", "ddim_step",
           "groupnorm_silu_forward", "groupnorm_silu_backward",
           "upsample_conv3x3_forward", "upsample_conv3x3_backward",
           "conv3x3_shared_forward", "conv3x3_shared_backward", "conv3x3_norm_conv3x3_forward",
           "attention_forward", "attention_backward", "adam_step", "lines_flow", "OnLines",
           "use_reference", "reference_mode", "reference_forced", "backend_name"]
