"""Run the CUDA kernel checks (every tests/kernels/<operation>/<operation>_cuda_check.py, beside
that operation's tests) under Numba's CUDA simulator.

NUMBA_ENABLE_CUDASIM=1 has to be set before Numba is imported, so the checks
run in separate `python -m pytest` processes with that variable set: one per
operation, as many at once as there are cores (the simulator runs each thread
in Python, on one core), the largest files first.
"""
import glob
import importlib.util
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))              # tests/kernels
ROOT = os.path.dirname(os.path.dirname(HERE))                     # the repository


def test_cuda_kernels_under_simulator():
    if importlib.util.find_spec("numba") is None or importlib.util.find_spec("numba.cuda") is None:
        pytest.skip("needs numba and numba-cuda (pip install -e '.[dev]')")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")          # keeps OPENBLAS_* and the rest
    env.pop("MINIDIFF_KERNELS", None)
    checks = sorted(glob.glob(os.path.join(HERE, "**", "*_cuda_check.py"), recursive=True))
    assert checks, "no tests/kernels/**/*_cuda_check.py found"
    ops = {os.path.basename(c)[:-len("_cuda_check.py")] for c in checks}
    assert ops >= {"adam", "attention", "conv", "groupnorm", "sampling", "upconv"}, sorted(ops)

    def run(check):
        return subprocess.run([sys.executable, "-m", "pytest", check, "-q", "-o", "addopts=", "-p", "no:cacheprovider"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    checks.sort(key=os.path.getsize, reverse=True)
    with ThreadPoolExecutor(max_workers=max(1, min(len(checks), os.cpu_count() or 1))) as pool:
        procs = list(pool.map(run, checks))
    for check, proc in zip(checks, procs):
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{check}:\n{out[-4000:]}"
        counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|error|errors|skipped)", out)}
        assert counts.get("passed", 0) > 0, f"{check}:\n{out[-4000:]}"
        assert counts.get("failed", 0) == 0 and counts.get("skipped", 0) == 0, f"{check}:\n{out[-4000:]}"
