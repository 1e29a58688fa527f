"""tools/gpu_check.sh without a GPU: the dry run, the auto-detection, and the step machinery (a fake
nvidia-smi and a fake venv python make it take the GPU path and fail where it must)."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tools", "gpu_check.sh")
STEPS = ["detect", "install", "device", "compile", "tests", "bench", "spiral", "judge", "mnist"]


def load_tool():
    spec = importlib.util.spec_from_file_location("gpu_check", os.path.join(ROOT, "tools", "gpu_check.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(tmp_path, *args, fake_smi=None):
    """Run the script into tmp_path/out -> (exit status, stdout, summary dict)."""
    env = dict(os.environ)
    if fake_smi is not None:                           # a stand-in nvidia-smi first on PATH
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        smi = bin_dir / "nvidia-smi"
        smi.write_text("#!/bin/sh\n" + fake_smi + "\n")
        smi.chmod(0o755)
        env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    out = tmp_path / "out"
    res = subprocess.run(["bash", SCRIPT, "--out", str(out), *args], capture_output=True, text=True, env=env,
                         timeout=120)
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "summary.md").read_text().startswith("# GPU check")
    return res.returncode, res.stdout, summary


def test_dry_run_skips_every_step_with_its_reason_and_writes_the_summary(tmp_path):
    code, stdout, s = run(tmp_path, "--dry-run")
    assert code == 0 and s["mode"] == "dry run" and s["dry_run_reason"] == "--dry-run"
    assert [st["name"] for st in s["steps"]] == STEPS and s["failed"] == []
    assert s["steps"][0]["status"] == "passed"
    for st in s["steps"][1:]:
        assert st["status"] == "skipped" and st["reason"] == "dry run: --dry-run", st
        assert st["command"] and st["estimate_s"] > 0
    commands = {st["name"]: st["command"] for st in s["steps"]}
    assert ".[gpu]" in commands["install"] and "torch==2.10.*" in commands["install"]
    assert "tests/gpu" in commands["tests"] and "--device cuda" in commands["bench"]
    assert "--device cuda" in commands["spiral"] and "--conditional" in commands["mnist"]
    assert s["numba_cache_dir"].endswith(os.path.join(".gpu-cache", "numba"))
    assert set(s["time_split_s"]) == {"install", "compile", "tests", "bench", "examples", "other"}
    assert s["estimate_total_s"] <= 480                 # designed for an 8-minute slot
    assert "failed: none" in stdout


def test_without_a_gpu_it_is_a_dry_run_by_itself(tmp_path):
    code, _, s = run(tmp_path, fake_smi="echo 'NVIDIA-SMI has failed'; exit 9")
    assert code == 0 and s["mode"] == "dry run" and "lists no GPU" in s["dry_run_reason"]
    assert all(st["status"] == "skipped" for st in s["steps"][1:])


def test_on_the_gpu_path_a_failing_step_fails_and_blocks_what_needs_it(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    py = venv / "bin" / "python"
    py.write_text("#!/bin/sh\necho \"fake python: $1 $2\"\nexit 3\n")
    py.chmod(0o755)
    code, _, s = run(tmp_path, "--no-install", "--venv", str(venv),
                     fake_smi="echo 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)'")
    status = {st["name"]: (st["status"], st["reason"]) for st in s["steps"]}
    assert code == 1 and s["mode"] == "gpu" and s["machine"].startswith("GPU 0: NVIDIA H100")
    assert status["detect"][0] == "passed" and status["install"][0] == "passed"      # --no-install
    assert status["device"] == ("failed", "exit status 3")
    for name in ("compile", "tests", "bench", "spiral", "mnist"):
        assert status[name][0] == "skipped" and "needs device" in status[name][1], name
    assert status["judge"] == ("failed", "exit status 3")                            # needs only the venv
    assert s["failed"] == ["device", "judge"]
    log = (tmp_path / "out" / "logs" / "device.log").read_text()
    assert "fake python: -c" in log and log.startswith("$ ")


def test_a_step_that_runs_too_long_is_stopped(tmp_path):
    tool = load_tool()
    args = tool.parse_args(["--out", str(tmp_path)])
    step = tool.Step("slow", "other", [[sys.executable, "-c", "import time; print('started', flush=True); "
                                                              "time.sleep(30)"]], "sleeps", timeout=1)
    status, seconds, output, reason = tool.run_step(step, args, dict(os.environ), str(tmp_path / "slow.log"))
    assert status == "failed" and reason == "timed out after 1 s" and seconds < 10
    ok = tool.Step("ok", "other", [[sys.executable, "-c", "print('hello')"]], "prints", timeout=30)
    status, _, output, reason = tool.run_step(ok, args, dict(os.environ), str(tmp_path / "ok.log"))
    assert (status, reason) == ("passed", "") and output.endswith("hello")


def test_the_summary_shows_the_benchmark_rows(tmp_path):
    tool = load_tool()
    args = tool.parse_args(["--out", str(tmp_path)])
    row = {"case": "unet_forward", "minidiff_kernels_s": 0.004, "minidiff_reference_s": 0.009, "torch_s": 0.002,
           "ratio_vs_torch": 2.0, "paired_ratio_vs_torch": 1.9, "gflops": 1257.0,
           "peak_mb": {"minidiff": 150.0, "torch": 90.0}, "first_call_s": {"minidiff_kernels": 0.8},
           "numba_compile_s": 0.5}
    (tmp_path / "bench.json").write_text(json.dumps([row]))
    state = {"started": "2026-12-06T00:00:00", "commit": "abc1234", "mode": "gpu", "dry_run_reason": None,
             "machine": "GPU 0: H100", "steps": [{"name": "bench", "category": "bench", "status": "passed",
                                                   "seconds": 61.0, "estimate_s": 75, "what": "the benchmark",
                                                   "command": "python -m minidiff.bench", "reason": "",
                                                   "output": "done"}]}
    s = tool.write_summary(state, args)
    assert s["time_split_s"]["bench"] == 61.0 and s["total_s"] == 61.0
    md = (tmp_path / "summary.md").read_text()
    assert "| unet_forward | 4.0 | 9.0 | 2.0 | 2.00 | 1.90 | 1257 | 150.0 | 90.0 | 800.0 | 500.0 |" in md


def test_bad_arguments_exit_2(tmp_path):
    res = subprocess.run(["bash", SCRIPT, "--installer", "conda", "--out", str(tmp_path)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2 and "--installer" in res.stderr
