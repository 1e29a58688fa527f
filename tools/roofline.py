"""Roofline estimates of minidiff's CUDA kernels on an H100 for the anchor U-Net (docs/kernels.md,
"The CUDA kernels on paper"). No GPU needed, nothing is timed: the work is counted from the shapes.

    python tools/roofline.py [--batch 64 256]

For each kernel family, over one forward of UNet(1, 16, 100, channel_multipliers=(1, 2, 3)) on 28x28
images, and over a train step (forward + backward): FLOPs, DRAM bytes (float32, every array read or
written once: the re-reads of a conv's input and of a GroupNorm group hit L1/L2), launches, and a
lower bound of the GPU time, sum over launches of max(FLOPs / ceiling, bytes / HBM, LAUNCH_S). The
same for what PyTorch runs instead (cuDNN implicit-GEMM convs that never write im2col's columns,
ATen's GroupNorm then the shift add and SiLU, batched cuBLAS attention, the foreach Adam). The
ceilings are the H100 SXM's (the constants below, from NVIDIA's H100 datasheet) and, for minidiff's
tiled GEMM and gather loops, the shared-memory bound TILED_S; the two latency-bound kernels
(upconv's weight gradient, attention) get a cycle count. Prints Markdown tables.
"""
import argparse
import math

import numpy as np

from minidiff import kernels
from minidiff.bench import ANCHOR
from minidiff.models import UNet

HBM = 3.35e12                  # B/s, H100 SXM5 HBM3
FP32 = 66.9e12                 # FLOP/s, non-tensor FMA (132 SMs x 128 lanes x 2 x 1.98 GHz)
FP64 = 33.5e12                 # FLOP/s, non-tensor
CLOCK = 1.98e9                 # Hz, boost
SMS = 132
# minidiff's tiled GEMM (and the upconv's forward / dx loops) read two 4-byte operands from shared
# memory (L1) per FMA; an SM serves one 128-byte wavefront per clock, a warp-FMA needs two, the FMA
# pipes could take four warp-FMAs per clock: 1/8 of FP32.
TILED = FP32 / 8
LAUNCH_S = 2.5e-6              # GPU time of one small kernel back to back (launch and drain)
DISPATCH_S = 30e-6             # assumed Python time of one Numba launch on CuPy arrays (dispatch, as_cuda_array
#                                per argument); not measured: the first GPU run will tell (docs/kernels.md)
B4 = 4                         # bytes per float32

HEADS, TOKENS, HEAD_DIM, CHANNELS = 4, 49, 12, 48                # the middle attention: 7x7 tokens


def anchor_calls():
    """[(op, shapes)] of the kernel calls of one batch-1 forward of the anchor U-Net (through the face),
    and its parameter count. A shared-input conv pair runs on CUDA as two conv2d calls: listed so."""
    model, calls = UNet(**ANCHOR), []
    ops = ("conv2d_forward", "conv3x3_shared_forward", "upsample_conv3x3_forward", "groupnorm_silu_forward",
           "attention_forward")
    saved = {op: getattr(kernels, op) for op in ops}

    def recorder(op):
        def call(*args, **kw):
            if op == "conv3x3_shared_forward":
                cin = sum(x.shape[1] for x in args[0])
                calls.extend(("conv2d_forward", (cin,) + tuple(args[0][0].shape[2:]) + tuple(w.shape) + (1,))
                             for w in args[1])
            elif op == "conv2d_forward":
                x, w, _, stride, _ = args
                calls.append((op, (x.shape[1],) + tuple(x.shape[2:]) + tuple(w.shape) + (int(np.ravel(stride)[0]),)))
            elif op == "upsample_conv3x3_forward":
                calls.append((op, (args[0].shape[1], args[0].shape[2], args[1].shape[0])))
            elif op == "groupnorm_silu_forward":
                calls.append((op, (args[0].shape[1], args[0].shape[2])))
            else:
                calls.append((op, tuple(args[0].shape)))
            return saved[op](*args, **kw)
        return call
    try:
        for op in ops:
            setattr(kernels, op, recorder(op))
        with kernels.reference_mode():
            model.forward(np.zeros((1, 1, 28, 28), np.float32), np.zeros(1, np.int64))
    finally:
        for op, fn in saved.items():
            setattr(kernels, op, fn)
    return calls, model.num_params()


def t(flop, byte, ceiling, launches=1):
    """Lower bound of the GPU seconds: launches x max(compute, memory, launch) (work split evenly)."""
    return launches * max(flop / launches / ceiling, byte / launches / HBM, LAUNCH_S)


def conv(B, Cin, Cout, k, s, H):
    """{ours_fwd, ours_bwd, lib_fwd, lib_bwd}: seconds of one conv (im2col + tiled GEMM + layout kernels)."""
    Ho = (H + 2 - k) // s + 1
    K, N = Cin * k * k, B * Ho * Ho
    x, y, w, cols = B * Cin * H * H, Cout * N, Cout * K, K * N
    gemm = 2 * Cout * K * N
    ceiling = FP32 if min(Cout, K, N) >= 64 else TILED              # cuBLAS only when every dim >= 64
    fwd = t(0, B4 * (cols + x), 1) + t(gemm, B4 * (cols + w + y), ceiling) + t(0, B4 * 2 * y, 1)
    bwd = (t(0, B4 * 2 * y, 1) + t(0, B4 * (cols + x), 1)           # dy to channel-major, im2col again
           + t(gemm, B4 * (y + cols + w), ceiling)                   # dw = dY cols^T
           + t(gemm, B4 * (w + y + cols), ceiling)                   # dcols = w^T dY
           + t(0, B4 * (cols + x), 1) + t(0, B4 * y, 1))             # col2im, bias row sums
    lib_fwd = t(gemm, B4 * (x + w + y), FP32)                        # implicit GEMM: no columns in memory
    lib_bwd = t(gemm, B4 * (y + w + x), FP32) + t(gemm, B4 * (y + x + w), FP32)   # data and filter grads
    return fwd, bwd, lib_fwd, lib_bwd


def upconv(B, Cin, Cout, H):
    """The fused nearest-x2 + 3x3 conv: 2x2 phase convs, one thread per output (dW: per weight)."""
    out, x = B * Cout * 4 * H * H, B * Cin * H * H
    flop = 8 * Cin * out                                             # 4 taps x Cin per output, 2.25x fewer
    fwd = t(flop, B4 * (x + out), TILED)
    threads, iters = 16 * Cout * Cin, B * H * H                      # dW: each thread sums B*H*W terms (float64)
    warps_per_sm = threads / 32 / SMS
    cycles = 40 if warps_per_sm < 8 else 10                          # L1 latency unhidden with a few warps per SM
    dW = max(iters * cycles / CLOCK, LAUNCH_S)
    bwd = t(flop, B4 * (out + x), TILED) + dW
    lib_fwd = t(0, B4 * 5 * x, 1) + t(18 * Cin * out, B4 * (4 * x + out), FP32)   # upsampled copy, full 3x3 conv
    lib_bwd = 2 * t(18 * Cin * out, B4 * (4 * x + out), FP32) + t(0, B4 * 5 * x, 1)
    return fwd, bwd, lib_fwd, lib_bwd, dW


def groupnorm(B, C, H):
    """Fused GroupNorm + shift + SiLU (+ residual): one block per (sample, group)."""
    E = B * C * H * H
    fwd, bwd = t(12 * E, B4 * 2.5 * E, FP32), t(20 * E, B4 * 3 * E, FP32)      # x, y (+ residual half the time)
    lib_fwd = t(8 * E, B4 * 2 * E, FP32) + t(E, B4 * 2 * E, FP32) + t(4 * E, B4 * 2 * E, FP32)  # GN, + shift, SiLU
    lib_bwd = t(6 * E, B4 * 3 * E, FP32) + t(E, B4 * E, FP32) + t(12 * E, B4 * 3 * E, FP32)     # SiLU', sum, GN'
    return fwd, bwd, lib_fwd, lib_bwd


def attention(B):
    """One thread per (sample, head, query row): q.k three times, then P v, in float64."""
    threads = B * HEADS * TOKENS
    waves = math.ceil(threads / (SMS * 2048))
    fma = 4 * TOKENS * HEAD_DIM                                      # 3 passes of q.k, then P v
    fwd = max(waves * fma * 8 / CLOCK, LAUNCH_S)                     # ~8 cycles per dependent float64 FMA
    bwd = 2 * max(waves * 2 * TOKENS * HEAD_DIM * 8 / CLOCK, LAUNCH_S)
    flop = 4 * B * HEADS * TOKENS * TOKENS * HEAD_DIM
    byte = B4 * B * TOKENS * (4 * CHANNELS + 2 * HEADS * TOKENS)
    lib_fwd = t(flop, byte, FP32, launches=5)                        # 2 batched GEMMs, softmax, 2 transposes
    lib_bwd = t(2 * flop, 2 * byte, FP32, launches=8)
    return fwd, bwd, lib_fwd, lib_bwd


def totals(B, calls, params):
    """{family: (ours fwd, ours train, lib fwd, lib train)} seconds, + upconv dW seconds."""
    rows, dW_total = {}, 0.0
    acc = lambda key, f, b, lf, lb: rows.__setitem__(key, tuple(  # noqa: E731
        a + v for a, v in zip(rows.get(key, (0, 0, 0, 0)), (f, f + b, lf, lf + lb))))
    for op, shape in calls:
        if op == "conv2d_forward":
            Cin, H, _, Cout, _, k, _, stride = shape
            acc("conv (im2col + GEMM)", *conv(B, Cin, Cout, k, stride, H))
        elif op == "upsample_conv3x3_forward":
            f, b, lf, lb, dW = upconv(B, shape[0], shape[2], shape[1])
            acc("upconv", f, b, lf, lb)
            dW_total += dW
        elif op == "groupnorm_silu_forward":
            acc("groupnorm + SiLU", *groupnorm(B, *shape))
        else:
            acc("attention", *attention(B))
    E = B * 28 * 28
    acc("sampling step (DDIM)", t(10 * E, B4 * 5 * E, FP32), 0, t(10 * E, B4 * 16 * E, FP32, launches=8), 0)
    acc("adam", 0, t(15 * params, 28 * params, FP32), 0, t(15 * params, 12 * 12 * params, FP32, launches=12))
    return rows, dW_total


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    args = p.parse_args(argv)
    print("| kernel | " + " | ".join(f"B={B} fwd us ours / lib | B={B} train us ours / lib" for B in args.batch)
          + " |")
    print("| --- " * (1 + 2 * len(args.batch)) + "|")
    calls, params = anchor_calls()
    out = {B: totals(B, calls, params) for B in args.batch}
    for key in out[args.batch[0]][0]:
        cells = []
        for B in args.batch:
            of, ot, lf, lt = out[B][0][key]
            cells += [f"{of * 1e6:.0f} / {lf * 1e6:.0f}" if of else "-", f"{ot * 1e6:.0f} / {lt * 1e6:.0f}"]
        print(f"| {key} | " + " | ".join(cells) + " |")
    launches = {"conv2d_forward": 3, "upsample_conv3x3_forward": 1, "groupnorm_silu_forward": 1,
                "attention_forward": 1}
    n = sum(launches[op] for op, _ in calls)
    print(f"Numba launches per forward: {n} (a conv 3, the others 1); backward about {2 * n}. At "
          f"{DISPATCH_S * 1e6:.0f} us of Python each: {n * DISPATCH_S * 1e3:.1f} ms per forward, "
          f"{3 * n * DISPATCH_S * 1e3:.1f} ms per train step, whatever the batch.")
    for B in args.batch:
        rows, dW = out[B]
        of = sum(v[0] for k, v in rows.items() if "sampling" not in k and k != "adam")
        lf = sum(v[2] for k, v in rows.items() if "sampling" not in k and k != "adam")
        ot = sum(v[1] for k, v in rows.items() if "sampling" not in k)
        lt = sum(v[3] for k, v in rows.items() if "sampling" not in k)
        print(f"B={B}: U-Net forward GPU time >= {of * 1e6:.0f} us (library {lf * 1e6:.0f} us, share {lf / of:.2f}); "
              f"train step >= {ot * 1e6:.0f} us (library {lt * 1e6:.0f} us, share {lt / ot:.2f}); "
              f"of which upconv dW {dW * 1e6:.0f} us")


if __name__ == "__main__":
    main()
