"""Smoke tests of the benchmark suite (python -m minidiff.bench): tiny cases, no timing assertions."""
import json
import subprocess
import sys

import numpy as np
import pytest

from minidiff import bench, bench_torch
from minidiff.models import UNet

ROW_KEYS = {"case", "minidiff_reference_s", "minidiff_kernels_s", "torch_s", "ratio_vs_torch",
            "gflop", "gflops", "torch_gflops", "gemm_gflops", "torch_gemm_gflops", "peak_mb",
            "min_s", "repeats", "rounds", "ratio_by_round", "note"}


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
    bt = bench_torch.load()
    bt.set_threads(2)
    row = bench.run_case("mlp_train_step", bt=bt, repeats=1, warmup=0, memory=False)
    _check_row(row, "mlp_train_step", with_torch=True)


def test_rounds_alternate_the_paths_and_give_one_ratio_each(monkeypatch):
    pytest.importorskip("torch")
    bt = bench_torch.load()
    bt.set_threads(2)
    order = []
    real = bench.call_samples
    monkeypatch.setattr(bench, "call_samples", lambda fn, *a, **k: order.append(fn) or real(fn, *a, **k))
    row = bench.run_case("mlp_train_step", bt=bt, repeats=2, warmup=0, memory=False, rounds=3)
    _check_row(row, "mlp_train_step", with_torch=True)
    assert row["rounds"] == 3 and len(row["ratio_by_round"]) == 3
    assert all(r > 0 for r in row["ratio_by_round"])
    n_paths = 3 if bench.numba_kernels_available() else 2
    assert len(order) == 3 * n_paths and order[n_paths - 1] is not order[n_paths]   # torch, then minidiff again


def test_torch_mirror_matches_unet():
    torch = pytest.importorskip("torch")
    bt = bench_torch.load()
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
