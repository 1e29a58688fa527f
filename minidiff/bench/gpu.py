"""--device cuda: the anchor U-Net on a GPU (CuPy arrays, the Numba CUDA kernels, cuBLAS) against PyTorch CUDA.

    python -m minidiff.bench --device cuda [--cases ...] [--repeats N] [--rounds K] [--pairs P] [--json PATH]
    python -m minidiff.bench --device cuda --compile-only [--json PATH]

The cases (GPU_CASES): the U-Net train step at batch 64, its forward under
no_grad at batch 64 and 256, DDIM with 20 steps for 64 digits, DPM-Solver++(2M)
with 10 steps for 64 digits (no torch mirror: its torch_s is null). Each gives a row with the CPU
rows' fields (rows.py), where

    minidiff_reference_s   minidiff on plain CuPy operations (MINIDIFF_KERNELS=reference's path)
    minidiff_kernels_s     minidiff on the Numba CUDA kernels and cuBLAS (the default path)
    torch_s                the same model in PyTorch on the GPU (cuDNN, cuBLAS): float32 without
                           TF32 and cuDNN's autotuner on (torch_mirror.cuda_settings)
    gemm_gflops            the ceiling: cupy.matmul float32 n x n (n = 2048, 4096), the best of 5
    torch_gemm_gflops      the same for torch.matmul on the GPU
    peak_mb                {"minidiff", "minidiff_reference": the peak of bytes held from CuPy's
                           memory pool during one call, above what was held before (a
                           cupy.cuda.MemoryHook adds up every malloc and free, in the pool's
                           rounded sizes), "torch": torch.cuda.max_memory_allocated() during one
                           call minus memory_allocated() before, "minidiff_tracemalloc": null}
    paired_gemm_fraction   null (the GPU ceiling is not re-read per pair)
and these fields that the CPU rows do not have:
    device, gpu            "cuda"; the GPU's name and compute capability
    first_call_s           {path: seconds of the path's first call in this process}: it pays for
                           Numba compiling (or loading from its on-disk cache) the kernels, CuPy
                           compiling its elementwise kernels (NVRTC, cached on disk too), cuBLAS
                           and cuDNN set-up and cuDNN's autotuning; the first paths run first
                           pay for what the later ones share
    numba_compile_s        seconds inside Numba's CUDA dispatcher (compiling or loading kernels)
                           during minidiff_kernels' first call
Every timed call ends with cupy.cuda.Device().synchronize() (torch: torch.cuda.synchronize()),
so it is the wall time of the work, not of its launch. --compile-only runs the anchor U-Net
(label-conditioned) through a train step and a few guided DDPM and DDIM steps on the GPU in
float32 and float64, so that Numba's on-disk cache and CuPy's hold every kernel, and prints the
Numba compile time and the wall time.
"""
import time
from functools import partial

import numpy as np

from .cases import ddim_sample_64, dpmpp_2m_sample_64, unet_forward, unet_train_step
from .paths import reference_path
from .rows import row_fields, take_turns
from .timing import paired_ratio, timed

GPU_CASES = {"unet_train_step": partial(unet_train_step, batch=64, device="cuda"),
             "unet_forward": partial(unet_forward, batch=64, device="cuda"),
             "unet_forward_256": partial(unet_forward, batch=256, device="cuda", name="unet_forward_256"),
             "ddim_sample_64": partial(ddim_sample_64, device="cuda"),
             "dpmpp_2m_sample_64": partial(dpmpp_2m_sample_64, device="cuda")}
GEMM_SIZES = (2048, 4096)


def cuda_sync():
    """Wait for everything queued on the current GPU (CuPy's and Numba's launches, and torch's)."""
    import cupy
    cupy.cuda.Device().synchronize()


def synced(fn, sync=cuda_sync):
    """fn, then a wait for the GPU: timing the closure times the work, not its launch."""
    def call():
        out = fn()
        sync()
        return out
    return call


def gpu_name():
    """'NVIDIA H100 80GB HBM3 (sm_90)': the current GPU as CuPy sees it."""
    import cupy
    dev = cupy.cuda.Device()
    name = cupy.cuda.runtime.getDeviceProperties(dev.id)["name"]
    return f"{name.decode() if isinstance(name, bytes) else name} (sm_{dev.compute_capability})"


def numba_compile_seconds(fn, dispatcher_class=None):
    """(fn's result, seconds spent in Numba's CUDA dispatcher compiling or loading kernels during fn()).

    Every kernel launch that misses the in-memory overloads calls CUDADispatcher.compile(sig)
    (which compiles, or loads from the on-disk cache); it is wrapped for the call, nested calls
    counted once. dispatcher_class: the class to wrap (numba.cuda.dispatcher.CUDADispatcher).
    """
    if dispatcher_class is None:
        from numba.cuda.dispatcher import CUDADispatcher as dispatcher_class
    original, total, depth = dispatcher_class.compile, [0.0], [0]

    def compile_timed(self, sig):
        depth[0] += 1
        t0 = time.perf_counter()
        try:
            return original(self, sig)
        finally:
            depth[0] -= 1
            if depth[0] == 0:
                total[0] += time.perf_counter() - t0
    dispatcher_class.compile = compile_timed
    try:
        out = fn()
    finally:
        dispatcher_class.compile = original
    return out, total[0]


def cupy_peak_bytes(fn):
    """Peak bytes held from CuPy's memory pool during fn() (which ends synchronised), above the start."""
    import cupy

    class Peak(cupy.cuda.MemoryHook):
        name = "minidiff_bench_peak"

        def __init__(self):
            self.live = self.peak = 0

        def malloc_postprocess(self, **kw):          # device_id, size, mem_size, mem_ptr, pmem_id
            if kw.get("mem_ptr"):
                self.live += kw["mem_size"]
                self.peak = max(self.peak, self.live)

        def free_postprocess(self, **kw):            # device_id, mem_size, mem_ptr, pmem_id
            self.live -= kw["mem_size"]

    hook = Peak()
    with hook:
        fn()
    return hook.peak


def torch_peak_bytes(torch, fn):
    """torch.cuda.max_memory_allocated() during fn() minus memory_allocated() before it."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def cupy_gemm_gflops(n, repeats=5):
    """Best GFLOP/s of cupy.matmul on float32 (n, n) @ (n, n) (cuBLAS), each call synchronised."""
    import cupy
    rng = np.random.default_rng(0)
    a, b = (cupy.asarray(rng.standard_normal((n, n), dtype=np.float32)) for _ in range(2))
    out = cupy.empty((n, n), cupy.float32)
    call = synced(lambda: cupy.matmul(a, b, out=out))
    call()
    return 2 * n ** 3 / min(timed(call) for _ in range(repeats)) / 1e9


def build_gpu_case(name, bt=None):
    """The GPU case `name` (GPU_CASES); bt: torch_mirror.load()'s namespace or None."""
    if name not in GPU_CASES:
        raise ValueError(f"case: expected one of {list(GPU_CASES)}, got {name!r}")
    return GPU_CASES[name](bt)


def run_gpu_case(name, bt=None, repeats=10, warmup=1, rounds=2, pairs=5, gemm=None, torch_gemm=None, memory=True):
    """Time GPU case `name` on its three paths; -> its JSON row (see the module docstring)."""
    case = build_gpu_case(name, bt)
    repeats = min(repeats, case.max_repeats or repeats)
    paths = [("minidiff_kernels", synced(case.minidiff), False), ("minidiff_reference", synced(case.minidiff), True)]
    if case.torch is not None:
        paths.append(("torch", synced(case.torch, partial(bt.sync, "cuda")), False))
    first, compile_s = {}, None
    for key, fn, ref in paths:                       # first calls, each timed alone, in this order
        with reference_path(ref):
            if key == "minidiff_kernels":
                first[key], compile_s = numba_compile_seconds(lambda: timed(fn))
            else:
                first[key] = timed(fn)
    samples, by_round = take_turns(paths, rounds, repeats, warmup)
    kernels_fn = paths[0][1]
    paired = None
    if case.torch is not None and pairs > 0:
        paired = paired_ratio(kernels_fn, paths[2][1], min(pairs, case.max_repeats or pairs))
    peak = None
    if memory:
        peak = {}
        for key, fn, ref in paths[:2]:
            with reference_path(ref):
                peak["minidiff" if key == "minidiff_kernels" else key] = cupy_peak_bytes(fn) / 2 ** 20
        peak["torch"] = None if case.torch is None else torch_peak_bytes(bt.torch, paths[2][1]) / 2 ** 20
        peak["minidiff_tracemalloc"] = None
    row = row_fields(name, case, samples, gemm, torch_gemm, repeats, rounds, by_round, paired, None, peak)
    return {**row, "device": "cuda", "gpu": gpu_name(), "first_call_s": first, "numba_compile_s": compile_s}


def warm_kernels():
    """Compile (or load) every CUDA kernel the U-Net uses, float32 and float64: a train step of the
    label-conditioned anchor U-Net at batch 64, then 3 guided DDPM and 3 guided DDIM steps (eta 0.5).
    -> {"numba_compile_s": {dtype: s}, "wall_s": {dtype: s}, "gpu": name}."""
    from ..diffusion import GaussianDiffusion
    from ..models import UNet
    from ..optim import Adam
    import cupy

    out = {"numba_compile_s": {}, "wall_s": {}, "gpu": gpu_name()}
    for dtype in (np.float32, np.float64):
        def run():
            model = UNet(1, 16, 3, channel_multipliers=(1, 2, 3), num_classes=10, dtype=dtype).to("cuda")
            diffusion = GaussianDiffusion(model, 3, schedule="cosine", dtype=dtype).to("cuda")
            rng = np.random.default_rng(0)
            x0 = cupy.asarray(rng.uniform(-1, 1, (64, 1, 28, 28)).astype(dtype))
            labels = cupy.asarray(rng.integers(1, 11, 64))
            opt = Adam(model, lr=1e-3)
            _, d_out = diffusion.p_losses(x0, labels=labels, rng=rng)
            model.zero_grad()
            model.backward(d_out)
            opt.step()
            diffusion.p_sample_loop((64, 1, 28, 28), labels=labels, guidance_scale=2.0, rng=1, progress=False)
            diffusion.ddim_sample_loop((64, 1, 28, 28), sampling_timesteps=3, eta=0.5, labels=labels,
                                       guidance_scale=2.0, rng=2, progress=False)
            cuda_sync()
        t0 = time.perf_counter()
        _, seconds = numba_compile_seconds(run)
        out["numba_compile_s"][np.dtype(dtype).name] = seconds
        out["wall_s"][np.dtype(dtype).name] = time.perf_counter() - t0
    return out
