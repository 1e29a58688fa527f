"""Time the Numba CPU kernels against their NumPy references (medians, ms).

    python -m minidiff.kernels.bench [--repeat 21] [--batch 32]

Each implementation is timed in a block of its own, with NumPy's BLAS as the
dispatcher would set it (all its threads for the reference, one thread for
the Numba kernels; see numba_threads.py), after 0.5 s of warm-up calls. Calls
are not interleaved: switching between the two thread pools on every call
would time the switch (the pool that ran last keeps spinning for a while).
Prints one line per U-Net/LeNet shape.
"""
import argparse

import numpy as np

from .blas_threads import kernels_mode
from .check import conv_backward_case, conv_case, ddim_case, ddpm_case
from .conv_reference import conv2d_backward_reference, conv2d_forward_reference
from .sampling import ddim_step_reference, ddpm_step_reference

# (Cin, Cout, H, k, stride, padding)
CONV_SHAPES = [(16, 16, 28, 3, 1, 1), (32, 32, 14, 3, 1, 1), (48, 48, 7, 3, 1, 1),
               (48, 48, 28, 3, 1, 1), (16, 16, 28, 4, 2, 1), (32, 32, 14, 4, 2, 1),
               (32, 16, 28, 1, 1, 0), (1, 6, 28, 5, 1, 2), (6, 16, 14, 5, 1, 0)]


def medians(fns, repeat, kernels, warmup_s=0.5):
    """{name: median ms} of each fn, timed with NumPy's BLAS set as the dispatcher sets it
    for the Numba kernels (kernels=True) or for the reference path (kernels=False)."""
    from minidiff.bench import call_times

    kernels_mode(kernels)
    try:
        return {name: 1e3 * call_times(f, repeat, warmup_s=warmup_s)[0] for name, f in fns.items()}
    finally:
        kernels_mode(False)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=21)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args(argv)
    from .conv_cpu import conv2d_backward_cpu, conv2d_forward_cpu
    from .sampling_cpu import ddim_step_cpu, ddpm_step_cpu

    rng, B = np.random.default_rng(0), args.batch
    print(f"B={B}, float32, medians of {args.repeat} (ms)")
    print("shape                     fwd ref  numba |  bwd ref  numba | fwd+bwd speed-up")
    for Cin, Cout, H, k, s, p in CONV_SHAPES:
        f_args = conv_case(rng, B, Cin, Cout, H, H, k, s, p)
        b_args = conv_backward_case(rng, B, Cin, Cout, H, H, k, s, p)
        t = medians({"rf": lambda: conv2d_forward_reference(*f_args),
                     "rb": lambda: conv2d_backward_reference(*b_args)}, args.repeat, kernels=False)
        t.update(medians({"nf": lambda: conv2d_forward_cpu(*f_args),
                          "nb": lambda: conv2d_backward_cpu(*b_args)}, args.repeat, kernels=True))
        print(f"{Cin:2d}->{Cout:2d} {H:2d}x{H:<2d} k{k} s{s} p{p}   {t['rf']:7.2f} {t['nf']:6.2f} | "
              f"{t['rb']:7.2f} {t['nb']:6.2f} | x{(t['rf'] + t['rb']) / (t['nf'] + t['nb']):.2f}")
    for shape in [(B, 1, 28, 28), (B, 3, 32, 32)]:
        p_args, d_args = ddpm_case(rng, shape), ddim_case(rng, shape)
        t = medians({"rp": lambda: ddpm_step_reference(*p_args), "rd": lambda: ddim_step_reference(*d_args)},
                    args.repeat, kernels=False)
        t.update(medians({"np": lambda: ddpm_step_cpu(*p_args), "nd": lambda: ddim_step_cpu(*d_args)},
                         args.repeat, kernels=True))
        print(f"steps {shape}: ddpm ref {t['rp']:.3f} numba {t['np']:.3f} | "
              f"ddim ref {t['rd']:.3f} numba {t['nd']:.3f}")


if __name__ == "__main__":
    main()
