"""--profile: where the U-Net train step's time goes, by layer type and by function.

layer_times wraps every layer's forward/backward with a timer that keeps the
exclusive time (nested layer calls subtracted); the wrappers pass *args and
**kwargs through, so they time a layer whatever it receives (arrays, or the
image-lanes activations the U-Net hands its layers on the CPU kernels).
profile_unet_train_step prints that table on both paths, then cProfile's top
functions on the Numba kernels path.
"""
import cProfile
import pstats
import sys
import time
from collections import defaultdict

from .cases import build_case
from .paths import numba_kernels_available, reference_path
from .timing import timed


def layer_times(model, step, repeats=3):
    """Exclusive seconds per call of step() by (layer type, 'forward' | 'backward').

    Every layer's forward/backward is wrapped with a timer that subtracts the time
    of the nested layer calls; '(outside the model)' is the rest (loss, optimiser).
    """
    totals, stack = defaultdict(float), [0.0]
    layers = [layer for _, layer in model.named_layers()]

    def wrap(layer, method):
        inner, key = getattr(layer, method), (type(layer).__name__, method)

        def timer(*args, **kwargs):
            stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                totals[key] += dt - stack.pop()
                stack[-1] += dt
        setattr(layer, method, timer)

    for layer in layers:
        wrap(layer, "forward")
        wrap(layer, "backward")
    try:
        step()
        totals.clear()
        wall = sum(timed(step) for _ in range(repeats))
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
