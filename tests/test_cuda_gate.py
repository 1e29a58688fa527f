"""minidiff.backend.cuda_unavailable_reason, the gate of tests/gpu and of `python -m minidiff.bench
--device cuda`: only CuPy seeing a real device counts, never the simulator."""
import os
import subprocess
import sys
import types

import pytest

from minidiff import backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fake_cupy(monkeypatch, get_count):
    runtime = types.SimpleNamespace(getDeviceCount=get_count)
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime)))


def test_the_simulator_is_not_a_gpu(monkeypatch):
    _fake_cupy(monkeypatch, lambda: 1)                       # even with a device, the simulator refuses
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    assert "simulator" in backend.cuda_unavailable_reason()


def test_cupy_missing_is_a_reason(monkeypatch):
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    monkeypatch.setitem(sys.modules, "cupy", None)          # import cupy raises ImportError
    assert backend.cuda_unavailable_reason().startswith("CuPy does not import")


def test_the_device_count_decides(monkeypatch):
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "0")
    pytest.importorskip("numba.cuda")

    def no_driver():
        raise RuntimeError("cudaErrorInsufficientDriver")
    _fake_cupy(monkeypatch, no_driver)
    assert "getDeviceCount() failed: RuntimeError: cudaErrorInsufficientDriver" in backend.cuda_unavailable_reason()
    _fake_cupy(monkeypatch, lambda: 0)
    assert "is 0" in backend.cuda_unavailable_reason()
    _fake_cupy(monkeypatch, lambda: 2)
    assert backend.cuda_unavailable_reason() is None


@pytest.mark.skipif(backend.cuda_unavailable_reason() is None, reason="a GPU is here: tests/gpu really run")
def test_gpu_tests_skip_here_with_the_reason_and_fail_when_required():
    cmd = [sys.executable, "-m", "pytest", "tests/gpu", "-rs", "-o", "addopts=", "-p", "no:cacheprovider"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 5, out.stdout[-2000:]                 # every module skipped: no test collected
    assert "3 skipped" in out.stdout and "needs CuPy and a CUDA device: " in out.stdout, out.stdout[-2000:]
    env = dict(os.environ, MINIDIFF_REQUIRE_GPU="1")
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode != 0 and "3 errors" in out.stdout, out.stdout[-2000:]
