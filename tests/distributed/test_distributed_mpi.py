"""Two real MPI ranks (`mpiexec -n 2`, mpi4py + MPICH from the `dist` extra) against one process.

The runs are tests/distributed/mpi_cases.py; the one-process references are
computed here. Skipped, with the reason, when mpi4py or mpiexec is missing.
"""
import importlib.util
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import dist_cases as dc
from minidiff.checkpoint import load_checkpoint
from minidiff.distributed import LocalWorld, share

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "mpi_cases.py")
TIMEOUT = 4.0          # MINIDIFF_DIST_TIMEOUT for the fault runs (seconds)
BOUND = TIMEOUT + 6.0  # a rank's fault must end the whole run within this (abort and process exit included)


def mpiexec():
    """The mpiexec command for 2 ranks, or pytest.skip with the reason."""
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip("needs mpi4py and an MPI: pip install -e '.[dist]' (mpi4py, mpich)")
    exe = shutil.which("mpiexec") or os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.path.exists(exe):
        pytest.skip("needs mpiexec on PATH or beside the Python executable: pip install -e '.[dist]'")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    extra = ["--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else []) \
        if "Open MPI" in version or "OpenRTE" in version else []
    return [exe, *extra, "-n", "2"]


def launch(scenario, out, timeout=120, **env):
    env = dict(os.environ, **{k: str(v) for k, v in env.items()})
    start = time.monotonic()
    proc = subprocess.run([*mpiexec(), sys.executable, SCRIPT, scenario, str(out)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    return proc, start, time.monotonic()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """The 'train' scenario's results, and the one-process runs they are compared with."""
    out = tmp_path_factory.mktemp("mpi_train")
    one = {"a": dc.state(*dc.run(LocalWorld(), epochs=2, checkpoint=str(out / "ckpt_1r.h5"))[:3])}
    proc, _, _ = launch("train", out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with np.load(out / "train.npz") as f:
        got = dict(f)
    log = []
    model, opt, ema, hist = dc.run(LocalWorld(), epochs=2, log=log)
    one["log"], one["hist"] = log, hist
    one["four"] = dc.state(*dc.run(LocalWorld(), epochs=4)[:3])
    one["c"] = dc.state(*dc.run(LocalWorld(), dtype=np.float32, epochs=2)[:3])
    return out, got, one


def _part(got, prefix):
    return {k: got[f"{prefix}_{k}"] for k in ("theta", "m", "v", "ema")}


def test_two_ranks_of_16_equal_one_process_of_32_float64(two_ranks):
    out, got, one = two_ranks
    assert dc.max_diff(_part(got, "a"), one["a"]) < 1e-12           # measured 1.1e-16 (2026-12-06)
    assert np.array_equal(got["thetas"][0], got["thetas"][1])       # the ranks agree bit for bit
    np.testing.assert_allclose(got["batch_loss"], one["hist"]["batch_loss"], rtol=1e-12)
    np.testing.assert_allclose(got["val_loss"], one["hist"]["val_loss"], rtol=1e-12)


def test_two_ranks_float32_within_rounding(two_ranks):
    # float32 sums of 16 + 16 rows round differently from one sum of 32 rows (~6e-8 relative);
    # 8 Adam steps at lr 2e-2 carry that into the weights (measured 1.5e-7, weights up to 0.74):
    # 1e-6 bounds it with room. (Adam can move a weight whose gradient nearly cancels by up to lr:
    # this MLP has none, the U-Net does; docs/distributed.md.)
    out, got, one = two_ranks
    assert dc.max_diff(_part(got, "c"), one["c"]) < 1e-6


def test_global_batches_are_the_same_rows_and_labels(two_ranks):
    out, got, one = two_ranks
    calls = len(one["log"])
    rows = got["rows"].reshape(2, calls, 2)                        # (rank, call, [rows, labels])
    xs = np.split(got["xs"], np.cumsum(rows[:, :, 0].reshape(-1))[:-1])
    labs = np.split(got["labels"], np.cumsum(rows[:, :, 1].reshape(-1))[:-1])
    for k, (x1, lab1) in enumerate(one["log"]):                    # every train and validation batch
        B = len(x1)
        parts = [share(B, r, 2) for r in range(2)]
        x2 = np.concatenate([xs[r * calls + k][:hi - lo] for r, (lo, hi) in enumerate(parts)])
        lab2 = np.concatenate([labs[r * calls + k][:hi - lo] for r, (lo, hi) in enumerate(parts)])
        assert np.array_equal(x2, x1) and np.array_equal(lab2, lab1), k
    assert any(len(x) == 1 for x, _ in one["log"])                 # a batch where rank 1 has no rows


def test_checkpoint_from_two_ranks_resumes_on_one_and_back(two_ranks):
    out, got, one = two_ranks
    ck = load_checkpoint(str(out / "ckpt_2r.h5"))
    assert ck.extra["world_size"] == 2 and ck.extra["epoch"] == 2
    resumed = dc.state(*dc.run(LocalWorld(), epochs=4, checkpoint=str(out / "ckpt_2r.h5"), resume=True)[:3])
    assert dc.max_diff(resumed, one["four"]) < 1e-12               # 2 ranks -> 1 process
    assert dc.max_diff(_part(got, "b"), one["four"]) < 1e-12       # 1 process -> 2 ranks
    assert load_checkpoint(str(out / "ckpt_1r.h5")).extra["world_size"] == 2   # rewritten by the 2 ranks


@pytest.mark.parametrize("scenario,action,epoch", [("kill", "killed", 2), ("stall", "stalled", 1),
                                                   ("raise", "raised", 1)])
def test_a_failing_rank_ends_the_run_in_bounded_time(tmp_path, scenario, action, epoch):
    proc, start, end = launch(scenario, tmp_path, timeout=60, MINIDIFF_DIST_TIMEOUT=TIMEOUT)
    with open(tmp_path / f"{action}_at") as f:
        failed_at = float(f.read())
    stopped_after = time.time() - (time.monotonic() - end) - failed_at
    err = proc.stdout + proc.stderr
    assert proc.returncode != 0, err[-3000:]
    assert "done" not in proc.stdout
    assert stopped_after < BOUND, (stopped_after, err[-3000:])
    if scenario == "stall":
        assert "rank 0 of 2 waited 4 s in " in err and "another rank has died, hung or raised" in err
        assert stopped_after > TIMEOUT - 0.5
    if scenario == "raise":
        assert "rank 1 of 2 stopped on an uncaught RuntimeError; aborting all 2 ranks" in err
    ck = load_checkpoint(str(tmp_path / "ckpt.h5"))                # intact: the last epoch before the fault
    assert ck.extra["epoch"] == epoch
    ref = dc.state(*dc.run(LocalWorld(), epochs=epoch)[:3])
    assert dc.max_diff({"theta": ck.model.flat()[0]}, {"theta": ref["theta"]}) < 1e-12
    print(f"{scenario}: stopped {stopped_after:.2f} s after the fault (bound {BOUND} s)")
