"""Time the Numba CPU kernels against their NumPy references (medians, ms).

    python -m minidiff.kernels.bench [--repeat 21] [--batch 32]

Each implementation is timed in a block of its own, with NumPy's BLAS as the
route.py sets it (all its threads for the reference, one thread for
the Numba kernels; see runtime/numba_threads.py), after 0.5 s of warm-up calls. Calls
are not interleaved: switching between the two thread pools on every call
would time the switch (the pool that ran last keeps spinning for a while).
Prints one line per U-Net/LeNet conv shape, the up blocks' two convs of one
input given in parts (against concatenating, then two reference convs), the
fused upsample+conv against Upsample then the reference conv, GroupNorm+SiLU,
the attention kernel, the sampling steps and Adam's update.
"""
import argparse
import time

import numpy as np

from .check import conv_backward_case, conv_case, ddim_case, ddpm_case
from .conv.reference_3x3 import conv3x3_backward_reference, conv3x3_forward_reference
from .ops import conv2d_backward, conv2d_forward
from .route import reference_mode
from .runtime.blas_threads import kernels_mode
from .sampling.reference import ddim_step_reference, ddpm_step_reference

# (Cin, Cout, H, k, stride, padding)
CONV_SHAPES = [(16, 16, 28, 3, 1, 1), (32, 32, 14, 3, 1, 1), (48, 48, 7, 3, 1, 1),
               (48, 48, 28, 3, 1, 1), (16, 16, 28, 4, 2, 1), (32, 32, 14, 4, 2, 1),
               (32, 16, 28, 1, 1, 0), (1, 6, 28, 5, 1, 2), (6, 16, 14, 5, 1, 0)]


def median_seconds(fn, repeat, warmup_s=0.5):
    """The median of `repeat` timed calls of fn(), after at least `warmup_s` seconds of calls:
    the thread pool of the path that ran before (OpenBLAS or OpenMP workers) keeps
    spinning for a while and slows the first calls."""
    t0 = time.perf_counter()
    fn()
    while time.perf_counter() - t0 < warmup_s:
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def medians(fns, repeat, kernels, warmup_s=0.5):
    """{name: median ms} of each fn, timed with NumPy's BLAS set as route.py sets it
    for the Numba kernels (kernels=True) or for the reference path (kernels=False)."""
    kernels_mode(kernels)
    try:
        return {name: 1e3 * median_seconds(f, repeat, warmup_s) for name, f in fns.items()}
    finally:
        kernels_mode(False)


def on_reference(fn, *args):
    """fn(*args) with the reference path forced: a face operation's reference, shape specialisation included."""
    with reference_mode():
        return fn(*args)


def positive_int(text):
    """An argparse type: an integer >= 1 (argparse names the flag in its error)."""
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return v


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=positive_int, default=21)
    ap.add_argument("--batch", type=positive_int, default=32)
    args = ap.parse_args(argv)
    from .sampling.cpu import ddim_step_cpu, ddpm_step_cpu

    rng, B = np.random.default_rng(0), args.batch
    print(f"B={B}, float32, medians of {args.repeat} (ms)")
    print("shape                     fwd ref  numba |  bwd ref  numba | fwd+bwd speed-up")
    for Cin, Cout, H, k, s, p in CONV_SHAPES:
        f_args = conv_case(rng, B, Cin, Cout, H, H, k, s, p)
        b_args = conv_backward_case(rng, B, Cin, Cout, H, H, k, s, p)
        t = medians({"rf": lambda: on_reference(conv2d_forward, *f_args),
                     "rb": lambda: on_reference(conv2d_backward, *b_args)}, args.repeat, kernels=False)
        t.update(medians({"nf": lambda: conv2d_forward(*f_args),
                          "nb": lambda: conv2d_backward(*b_args)}, args.repeat, kernels=True))
        _line(f"{Cin:2d}->{Cout:2d} {H:2d}x{H:<2d} k{k} s{s} p{p}", t)
    _shared_conv_lines(rng, B, args.repeat)
    _upconv_lines(rng, B, args.repeat)
    _groupnorm_lines(rng, B, args.repeat)
    _attention_lines(rng, B, args.repeat)
    for shape in [(B, 1, 28, 28), (B, 3, 32, 32)]:
        p_args, d_args = ddpm_case(rng, shape), ddim_case(rng, shape)
        t = medians({"rp": lambda: ddpm_step_reference(*p_args), "rd": lambda: ddim_step_reference(*d_args)},
                    args.repeat, kernels=False)
        t.update(medians({"np": lambda: ddpm_step_cpu(*p_args), "nd": lambda: ddim_step_cpu(*d_args)},
                         args.repeat, kernels=True))
        print(f"steps {shape}: ddpm ref {t['rp']:.3f} numba {t['np']:.3f} | "
              f"ddim ref {t['rd']:.3f} numba {t['nd']:.3f}")
    _adam_line(rng, args.repeat)


def _line(label, t):
    """One table line from the reference / Numba forward and backward medians."""
    print(f"{label:25s} {t['rf']:7.2f} {t['nf']:6.2f} | {t['rb']:7.2f} {t['nb']:6.2f} | "
          f"x{(t['rf'] + t['rb']) / (t['nf'] + t['nb']):.2f}")


def _shared_conv_lines(rng, B, repeat):
    """An up block's first conv and 3x3 skip conv on (skip, h): conv3x3_shared_* against
    concatenating the parts and running the two reference convs."""
    from .conv.cpu_3x3 import conv3x3_shared_backward_cpu, conv3x3_shared_forward_cpu
    for c_skip, c_h, Cout, H in [(32, 48, 48, 7), (16, 32, 32, 14), (16, 16, 16, 28)]:
        xs = [rng.standard_normal((B, c, H, H)).astype(np.float32) for c in (c_skip, c_h)]
        ws = [rng.standard_normal((Cout, c_skip + c_h, 3, 3)).astype(np.float32) for _ in range(2)]
        bs = [rng.standard_normal(Cout).astype(np.float32) for _ in range(2)]
        dys = [rng.standard_normal((B, Cout, H, H)).astype(np.float32) for _ in range(2)]

        def ref_forward():
            x = np.concatenate(xs, axis=1)
            return [conv3x3_forward_reference(x, w, b) for w, b in zip(ws, bs)]

        def ref_backward():
            x = np.concatenate(xs, axis=1)
            grads = [conv3x3_backward_reference(dy, x, w) for dy, w in zip(dys, ws)]
            dx = grads[0][0] + grads[1][0]
            return dx[:, :c_skip], dx[:, c_skip:], grads
        t = medians({"rf": ref_forward, "rb": ref_backward}, repeat, kernels=False)
        t.update(medians({"nf": lambda: conv3x3_shared_forward_cpu(xs, ws, bs),
                          "nb": lambda: conv3x3_shared_backward_cpu(dys, xs, ws)}, repeat, kernels=True))
        _line(f"2 convs ({c_skip}+{c_h})->{Cout} {H}x{H}", t)


def _groupnorm_lines(rng, B, repeat):
    """GroupNorm(8) + shift + SiLU at the U-Net's sizes: reference against groupnorm/cpu.py."""
    from .groupnorm.cpu import groupnorm_silu_backward_cpu, groupnorm_silu_forward_cpu
    from .groupnorm.reference import groupnorm_silu_backward_reference, groupnorm_silu_forward_reference
    for C, H in [(16, 28), (32, 14), (48, 7)]:
        x = rng.standard_normal((B, C, H, H)).astype(np.float32)
        dy = rng.standard_normal(x.shape).astype(np.float32)
        w, b = rng.uniform(0.5, 1.5, C).astype(np.float32), rng.standard_normal(C).astype(np.float32)
        shift = rng.standard_normal((B, C)).astype(np.float32)
        _, mean, rstd = groupnorm_silu_forward_reference(x, w, b, shift, 8, 1e-5)
        t = medians({"rf": lambda: groupnorm_silu_forward_reference(x, w, b, shift, 8, 1e-5),
                     "rb": lambda: groupnorm_silu_backward_reference(dy, x, mean, rstd, w, b, shift, 8)},
                    repeat, kernels=False)
        t.update(medians({"nf": lambda: groupnorm_silu_forward_cpu(x, w, b, shift, 8, 1e-5),
                          "nb": lambda: groupnorm_silu_backward_cpu(dy, x, mean, rstd, w, b, shift, 8)},
                         repeat, kernels=True))
        _line(f"GroupNorm+SiLU {C:2d}x{H}x{H}", t)


def _adam_line(rng, repeat):
    """Adam's update on the anchor U-Net's 326,609 parameters: adam/reference.py against adam/cpu.py."""
    from .adam.reference import adam_step_reference
    from .adam.cpu import adam_step_cpu
    P = 326_609
    theta, g = rng.standard_normal(P).astype(np.float32), rng.standard_normal(P).astype(np.float32)
    m, v = np.zeros(P, np.float32), np.zeros(P, np.float32)
    args = (theta, g, m, v, 1e-4, 0.9, 0.999, 1e-8, 10)
    t = medians({"r": lambda: adam_step_reference(*args)}, repeat, kernels=False)
    t.update(medians({"n": lambda: adam_step_cpu(*args)}, repeat, kernels=True))
    print(f"adam step P={P}: ref {t['r']:.3f} numba {t['n']:.3f}")


def _upconv_lines(rng, B, repeat):
    """UpsampleConv's shapes: upsampling then the reference 3x3 conv, against upconv/cpu.py."""
    from .upconv.cpu import upsample_conv3x3_backward_cpu, upsample_conv3x3_forward_cpu
    from .upconv.reference import upsample_conv3x3_backward_reference, upsample_conv3x3_forward_reference
    for Cin, Cout, H in [(48, 32, 7), (32, 16, 14)]:
        x, w, b, _, _ = conv_case(rng, B, Cin, Cout, H, H, 3, 1, 1)
        dy = rng.standard_normal((B, Cout, 2 * H, 2 * H)).astype(np.float32)
        t = medians({"rf": lambda: upsample_conv3x3_forward_reference(x, w, b),
                     "rb": lambda: upsample_conv3x3_backward_reference(dy, x, w)}, repeat, kernels=False)
        t.update(medians({"nf": lambda: upsample_conv3x3_forward_cpu(x, w, b),
                          "nb": lambda: upsample_conv3x3_backward_cpu(dy, x, w)}, repeat, kernels=True))
        _line(f"up2+conv {Cin:2d}->{Cout:2d} {H:2d}->{2 * H}", t)


def _attention_lines(rng, B, repeat):
    """The U-Net's middle attention (7x7 tokens, 48 channels, 4 heads): reference against attention/cpu.py."""
    from .attention.cpu import attention_backward_cpu, attention_forward_cpu
    from .attention.reference import attention_backward_reference, attention_forward_reference
    N, C, heads = 49, 48, 4
    qkv = rng.standard_normal((B, N, 3 * C)).astype(np.float32)
    d_out = rng.standard_normal((B, N, C)).astype(np.float32)
    scale = 1.0 / np.sqrt(C // heads).item()
    P = attention_forward_reference(qkv, heads, scale)[1]
    t = medians({"rf": lambda: attention_forward_reference(qkv, heads, scale),
                 "rb": lambda: attention_backward_reference(d_out, qkv, P, heads, scale)}, repeat, kernels=False)
    t.update(medians({"nf": lambda: attention_forward_cpu(qkv, heads, scale),
                      "nb": lambda: attention_backward_cpu(d_out, qkv, P, heads, scale)}, repeat, kernels=True))
    _line(f"attention N={N} C={C} h={heads}", t)


if __name__ == "__main__":
    main()
