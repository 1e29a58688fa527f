"""Smoke tests of the benchmark suite (python -m minidiff.bench): tiny cases, no timing assertions."""
import json
import subprocess
import sys

import numpy as np
import pytest

from minidiff import bench, kernels
from minidiff.bench import rows, timing, torch_mirror
from minidiff.kernels.runtime import blas_threads
from minidiff.models import UNet

ROW_KEYS = {"case", "minidiff_reference_s", "minidiff_kernels_s", "torch_s", "ratio_vs_torch",
            "gflop", "gflops", "torch_gflops", "gemm_gflops", "torch_gemm_gflops", "peak_mb",
            "gemm_fraction", "paired_gemm_fraction",
            "min_s", "repeats", "rounds", "ratio_by_round", "paired_ratio_vs_torch", "note"}


def _check_row(row, name, with_torch):
    assert set(row) == ROW_KEYS
    assert row["case"] == name
    assert isinstance(row["minidiff_reference_s"], float) and row["minidiff_reference_s"] > 0
    assert row["gflop"] > 0 and row["gflops"] > 0
    if with_torch:
        assert isinstance(row["torch_s"], float) and row["torch_s"] > 0
        best = min(s for s in (row["minidiff_reference_s"], row["minidiff_kernels_s"]) if s is not None)
        assert row["ratio_vs_torch"] == pytest.approx(best / row["torch_s"])
    else:
        assert row["torch_s"] is None and row["ratio_vs_torch"] is None
        assert row["paired_ratio_vs_torch"] is None


def test_import_bench_does_not_import_torch():
    code = "import sys, minidiff, minidiff.bench; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_conv_flops_formula():
    # 2 B Cout Ho Wo Cin kh kw; 4x4 stride 2 pad 1 halves 28 -> 14
    assert bench.conv_flops((2, 3, 28, 28), 5, (3, 3), (1, 1), (1, 1)) == 2 * 2 * 5 * 28 * 28 * 3 * 9
    assert bench.conv_flops((1, 16, 28, 28), 16, (4, 4), (2, 2), (1, 1)) == 2 * 16 * 14 * 14 * 16 * 16


def test_flops_per_sample_is_linear_in_batch():
    model = UNet(1, 8, 10, channel_multipliers=(1, 2), groups=4)
    per_sample = bench.flops_per_sample(model, (1, 8, 8))
    model.forward(np.zeros((3, 1, 8, 8), np.float32), np.zeros(3, dtype=np.int64))
    assert bench.forward_flops(model) == 3 * per_sample


def test_run_case_without_torch():
    row = bench.run_case("mlp_train_step", bt=None, repeats=1, warmup=0, memory=False, gemm=1.0)
    _check_row(row, "mlp_train_step", with_torch=False)
    json.dumps(row)                                      # a JSON row


def test_run_case_with_torch():
    pytest.importorskip("torch")
    bt = torch_mirror.load()
    bt.set_threads(2)
    row = bench.run_case("mlp_train_step", bt=bt, repeats=1, warmup=0, memory=False)
    _check_row(row, "mlp_train_step", with_torch=True)


def test_rounds_alternate_the_paths_and_give_one_ratio_each(monkeypatch):
    pytest.importorskip("torch")
    bt = torch_mirror.load()
    bt.set_threads(2)
    order = []
    real = timing.call_samples
    monkeypatch.setattr(rows, "call_samples", lambda fn, *a, **k: order.append(fn) or real(fn, *a, **k))
    row = bench.run_case("mlp_train_step", bt=bt, repeats=2, warmup=0, memory=False, rounds=3)
    _check_row(row, "mlp_train_step", with_torch=True)
    assert row["rounds"] == 3 and len(row["ratio_by_round"]) == 3
    assert all(r > 0 for r in row["ratio_by_round"])
    n_paths = 3 if bench.numba_kernels_available() else 2
    assert len(order) == 3 * n_paths and order[n_paths - 1] is not order[n_paths]   # torch, then minidiff again


def test_paired_ratio_is_the_median_of_back_to_back_ratios(monkeypatch):
    """Each pair: an untimed call and a timed one of fn, then the same of ref_fn;
    the result is the median of the timed ratios (times faked: no timing asserted)."""
    calls, times = [], iter([3.0, 1.0, 2.0, 4.0, 9.0, 3.0])      # fn, ref, fn, ref, fn, ref
    fn, ref = (lambda: calls.append("a")), (lambda: calls.append("b"))
    monkeypatch.setattr(timing, "timed", lambda f: f() or next(times))
    assert timing.paired_ratio(fn, ref, 3) == 3.0                  # median of 3.0, 0.5, 3.0
    assert calls == ["a", "a", "b", "b"] * 3


def test_paired_gemm_fraction_is_the_median_of_per_pair_shares(monkeypatch):
    """Each pair: fn's GFLOP/s from one timed call, over the GEMM rate read right after
    (times and rates faked: no timing asserted)."""
    times, rates, asked, warm = iter([1.0, 2.0, 0.5]), iter([100.0, 50.0, 400.0]), [], []
    monkeypatch.setattr(timing, "call_samples", lambda f, n, w, s: warm.append((n, w, s)) or [next(times)])
    frac = timing.paired_gemm_fraction(None, 40e9, 3, lambda repeats: asked.append(repeats) or next(rates))
    assert frac == pytest.approx(0.4)                             # median of 0.4, 0.4, 0.2
    assert asked == [2, 2, 2] and warm == [(1, 1, 0.3)] * 3       # one timed call after 0.3 s of warm-up


def test_gemm_rate_runs_at_blas_own_threads():
    rate = bench.gemm_rate(64)
    blas_threads.kernels_mode(True)
    assert rate(2) > 0
    assert blas_threads._state["mode"] is False             # measured at BLAS's own threads


def test_run_case_pairs_without_torch_give_the_paired_gemm_fraction():
    row = bench.run_case("mlp_train_step", bt=None, repeats=1, warmup=0, memory=False, gemm=1.0, pairs=2)
    _check_row(row, "mlp_train_step", with_torch=False)
    assert row["gemm_fraction"] == pytest.approx(row["gflops"] / 1.0)
    assert 0 < row["paired_gemm_fraction"] < 1                    # a 2048 GEMM beats an MLP step
    assert "paired %" in bench.format_table([row])


def test_run_case_pairs_with_torch():
    pytest.importorskip("torch")
    bt = torch_mirror.load()
    bt.set_threads(2)
    row = bench.run_case("mlp_train_step", bt=bt, repeats=1, warmup=0, memory=False, pairs=2)
    _check_row(row, "mlp_train_step", with_torch=True)
    assert row["paired_ratio_vs_torch"] > 0


def test_torch_mirror_matches_unet():
    torch = pytest.importorskip("torch")
    bt = torch_mirror.load()
    model = UNet(1, 8, 10, channel_multipliers=(1, 2), groups=4, num_classes=3, dtype=np.float64)
    tmodel = bt.from_minidiff(model)
    assert bt.num_params(tmodel) == model.num_params()
    rng = np.random.default_rng(0)
    x, t, labels = rng.standard_normal((2, 1, 8, 8)), np.array([1, 9]), np.array([0, 3])
    y = model.forward(x, t, labels)
    ty = tmodel(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(labels)).detach().numpy()
    np.testing.assert_allclose(ty, y, rtol=1e-10, atol=1e-10)


def test_cli_quick_writes_json(tmp_path, capsys):
    path = tmp_path / "rows.json"
    assert bench.main(["--quick", "--repeats", "1", "--cases", "mlp_train_step", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "GEMM ceiling" in out and "mlp_train_step" in out
    rows = json.loads(path.read_text())
    assert isinstance(rows, list) and len(rows) == 1
    _check_row(rows[0], "mlp_train_step", with_torch=rows[0]["torch_s"] is not None)
    assert rows[0]["gemm_gflops"] > 0


def test_memory_child_reports_rss_and_tracemalloc():
    got = bench.measure_memory("mlp_train_step", "minidiff_kernels")
    assert got is not None and got["rss_mb"] >= 0 and got["tracemalloc_mb"] > 0


def test_unknown_case_is_rejected():
    with pytest.raises(ValueError, match="case"):
        bench.build_case("no_such_case")
    with pytest.raises(SystemExit):
        bench.main(["--cases", "no_such_case"])


# --- --conv-shapes: the U-Net forward's convs one by one ---------------------------------
def _tiny_unet():
    return UNet(1, 8, 10, channel_multipliers=(1, 2), groups=4)


def _non_conv_flops(model):
    """FLOPs of the last forward's Dense layers and attention, counted from the layers."""
    from minidiff.nn import Dense, MultiheadAttention
    total = 0
    for _, layer in model.named_layers():
        if isinstance(layer, Dense):
            total += 2 * (layer.x.size // layer.in_features) * layer.in_features * layer.out_features
        elif isinstance(layer, MultiheadAttention):
            B, h, N, _ = layer.P.shape
            total += 4 * B * h * N * N * layer.head_dim
    return total


def test_unet_conv_calls_see_every_conv_of_the_forward():
    from minidiff.nn import Conv2d, ResBlock, UpsampleConv
    model = _tiny_unet()
    calls = bench.unet_conv_calls(model, (1, 8, 8))
    assert set(op for op, _ in calls) <= set(bench.CONV_OPS)
    layers = [layer for _, layer in model.named_layers()]
    n_conv = sum(isinstance(layer, Conv2d) for layer in layers)
    n_shared = sum(isinstance(layer, ResBlock) and layer.shared for layer in layers)
    n_up = sum(isinstance(layer, UpsampleConv) for layer in layers)    # one upsample op each, for its conv
    assert sum(n for (op, _), n in calls.items() if op == "upsample_conv3x3_forward") == n_up
    assert sum(calls.values()) == n_conv - n_shared
    # the recorded shapes give the model's conv FLOPs: the forward's FLOPs but Dense and attention
    conv = sum(n * bench.conv_spec_flops(spec, 1) for (op, spec), n in calls.items())
    assert conv == bench.forward_flops(model) - _non_conv_flops(model)     # layers kept the batch-1 forward
    assert all(kernels.__dict__[op].__module__.endswith(".ops") for op in bench.CONV_OPS)  # restored


def test_conv_op_step_computes_what_minidiff_computes():
    pytest.importorskip("torch")
    bt = torch_mirror.load()
    rng = np.random.default_rng(3)
    for (op, spec) in bench.unet_conv_calls(_tiny_unet(), (1, 8, 8)):
        args = bench.conv_spec_arrays(op, spec, 2, rng)
        ours = getattr(kernels, op)(*args)
        if op == "conv3x3_shared_forward":
            ours = np.concatenate(ours, axis=1)
        theirs = bt.conv_op_step(op, args)().numpy()
        assert theirs.shape == ours.shape
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())
    with pytest.raises(ValueError, match="op must be"):
        bt.conv_op_step("conv9x9", [])


def test_conv_shape_rows_and_table():
    rows = bench.conv_shape_rows(None, batch=2, repeats=1, model=_tiny_unet(), size=8)
    assert rows and all(r["minidiff_s"] > 0 and r["torch_s"] is None and r["ratio_vs_torch"] is None for r in rows)
    assert all(r["calls_per_forward"] >= 1 and r["gflops"] > 0 for r in rows)
    assert len({r["conv"] for r in rows}) == len(rows)                 # one row per distinct conv
    table = bench.format_conv_shape_table(rows, 2)
    assert table.splitlines()[-1].startswith("all, x calls (batch 2)")
    assert len(table.splitlines()) == len(rows) + 2
    json.dumps(rows)


def test_conv_shape_rows_with_torch_give_ratios():
    pytest.importorskip("torch")
    bt = torch_mirror.load()
    rows = bench.conv_shape_rows(bt, batch=2, repeats=2, model=_tiny_unet(), size=8)
    for r in rows:
        assert r["ratio_vs_torch"] == pytest.approx(r["minidiff_s"] / r["torch_s"])
        assert r["paired_ratio"] > 0


def test_layer_times_wraps_every_layer_call_and_restores_them():
    from minidiff.diffusion import GaussianDiffusion
    model = UNet(1, 8, 50, channel_multipliers=(1, 2), groups=4)
    diffusion, rng = GaussianDiffusion(model, 50), np.random.default_rng(0)
    x0 = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)    # batch 16: the layers run on lines

    def step():
        _, d_out = diffusion.p_losses(x0, rng=rng)
        model.zero_grad()
        model.backward(d_out)

    times = bench.layer_times(model, step, repeats=1)
    assert ("GroupNormSiLU", "forward") in times and ("GroupNormSiLU", "backward") in times
    assert ("Conv2d", "backward") in times and ("(outside the model)", "") in times
    assert all(s >= 0 for k, s in times.items() if k[0] != "(outside the model)")
    assert all("forward" not in vars(layer) for _, layer in model.named_layers())   # wrappers removed


# --- --device cuda: the GPU benchmark (nothing here runs on a GPU) -----------------------------
def test_device_cuda_fails_at_once_saying_why(monkeypatch, capsys):
    from minidiff.bench import cli
    monkeypatch.setattr(cli, "cuda_unavailable_reason", lambda: "no device here (test)")
    monkeypatch.setattr(cli, "import_torch", lambda: pytest.fail("work started before the check"))
    with pytest.raises(SystemExit) as e:
        bench.main(["--device", "cuda", "--json", "never.json"])
    assert e.value.code == 2
    assert "--device cuda needs CuPy and a CUDA device: no device here (test)" in capsys.readouterr().err
    for argv in (["--device", "cuda", "--profile"], ["--compile-only"]):
        with pytest.raises(SystemExit):
            bench.main(argv)


def test_device_cuda_without_a_gpu_here_names_the_reason():
    from minidiff.backend import cuda_unavailable_reason
    reason = cuda_unavailable_reason()
    if reason is None:
        pytest.skip("a GPU is here: --device cuda would run")
    out = subprocess.run([sys.executable, "-m", "minidiff.bench", "--device", "cuda"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    assert f"--device cuda needs CuPy and a CUDA device: {reason}" in out.stderr


def test_gpu_case_names_and_the_few_step_sampler_case():
    from minidiff.bench import cases, cli, gpu
    assert set(cli.GPU_CASE_NAMES) == set(gpu.GPU_CASES)
    assert "dpmpp_2m_sample_64" in gpu.GPU_CASES
    case = cases.dpmpp_2m_sample_64(None, batch=2, steps=3)          # the same builder, on the CPU
    x = case.minidiff()
    assert x.shape == (2, 1, 28, 28) and np.isfinite(x).all() and case.torch is None
    with pytest.raises(ValueError, match="case"):
        gpu.build_gpu_case("mlp_train_step")


def test_numba_compile_seconds_counts_nested_compiles_once(monkeypatch):
    from minidiff.bench import gpu

    class Dispatcher:
        calls = []

        def compile(self, sig):
            Dispatcher.calls.append(sig)
            if sig == "outer":
                self.compile("inner")                 # a kernel compiling a callee: inside the outer interval
            return sig

    original = Dispatcher.compile
    ticks = iter(range(100))
    monkeypatch.setattr(gpu.time, "perf_counter", lambda: float(next(ticks)))
    out, seconds = gpu.numba_compile_seconds(lambda: Dispatcher().compile("outer"), Dispatcher)
    assert out == "outer" and Dispatcher.calls == ["outer", "inner"]
    assert seconds == 2.0                             # outer starts at tick 0, inner at 1, outer ends at 2
    assert Dispatcher.compile is original             # restored


def test_synced_waits_after_each_call():
    from minidiff.bench import gpu
    log = []
    call = gpu.synced(lambda: log.append("work") or 7, lambda: log.append("sync"))
    assert call() == 7 and log == ["work", "sync"]


@pytest.mark.parametrize("name,kw", [("unet_train_step", {"batch": 2}), ("unet_forward", {"batch": 2}),
                                     ("ddim_sample_64", {"batch": 2, "steps": 2})])
def test_u_net_cases_move_model_and_data_to_the_device(name, kw):
    """device= another array module (the CuPy-like test backend, which refuses host arrays): the case's
    model, diffusion and data go there, so its call computes on the device."""
    from fakecupy import DeviceArray, xp
    case = bench.build_case(name, None, device=xp, **kw)
    out = case.minidiff()
    assert isinstance(out, DeviceArray)
    assert case.flop > 0


def test_first_call_table():
    row = {"case": "unet_forward", "first_call_s": {"minidiff_kernels": 2.5, "minidiff_reference": 0.5, "torch": 1.0},
           "numba_compile_s": 2.0, "minidiff_kernels_s": 0.004}
    table = bench.format_first_call_table([row]).splitlines()
    assert table[1].split() == ["unet_forward", "2500.0", "500.0", "1000.0", "2000.0", "4.00"]
