"""kill -9 a training process at random moments, several times: after every kill the last
checkpoint loads, and resuming to the end gives bit for bit the uninterrupted run.

The child prints each epoch once its checkpoint is written; the parent kills it a random
0-30 ms after a randomly chosen epoch (an epoch and its save take a few ms), so the kills land
in the batches, in the validation and inside saves."""
import importlib.util
import os
import random
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("h5py")

from minidiff.checkpoint import load_checkpoint  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, "crash_train_child.py")
EPOCHS = 120
KILLS = 6


def child_module():
    spec = importlib.util.spec_from_file_location("crash_train_child", CHILD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def start(path):
    return subprocess.Popen([sys.executable, CHILD, str(path), str(EPOCHS)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)


def kill_after(proc, epoch, delay):
    """Read the child's epochs until `epoch`, wait `delay` seconds, SIGKILL it."""
    for line in proc.stdout:
        if line.strip() == str(epoch):
            break
    time.sleep(delay)
    proc.kill()
    proc.wait(timeout=60)


def saved_state(path):
    ck = load_checkpoint(path)
    return ck, {k: v for k, v in ck.history.items() if k != "epoch_time"}


def test_kill_at_random_moments_then_resume_is_bit_identical(tmp_path, record_property):
    reference = tmp_path / "reference.h5"
    child_module().run(str(reference), EPOCHS)            # uninterrupted, in this process
    ref, ref_history = saved_state(reference)

    path = tmp_path / "killed.h5"
    moments = random.Random(0)
    targets = sorted(moments.sample(range(1, EPOCHS - 1), KILLS))
    epochs_at_kill, inside_save = [], 0
    for epoch in targets:
        kill_after(start(path), epoch, moments.uniform(0.0, 0.03))
        inside_save += any(n.startswith(".killed.h5.") for n in os.listdir(tmp_path))   # a temp file left
        ck, _ = saved_state(path)                         # always a complete, verified checkpoint
        epochs_at_kill.append(ck.extra["epoch"])
    assert all(t <= e < EPOCHS for t, e in zip(targets, epochs_at_kill)), (targets, epochs_at_kill)

    proc = start(path)                                    # now run to the end
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and out.split()[-1] == "done"
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    ck, history = saved_state(path)
    assert ck.extra["epoch"] == EPOCHS and history == ref_history
    for a, b in ((ck.model.flat()[0], ref.model.flat()[0]), (ck.ema.shadow, ref.ema.shadow),
                 (ck.optimizer.momentum_buffer, ref.optimizer.momentum_buffer)):
        assert np.array_equal(a, b)
    assert ck.rng.bit_generator.state == ref.rng.bit_generator.state
    record_property("kills", KILLS)
    print(f"{KILLS} kills after epochs {targets}; checkpoints then at epochs {epochs_at_kill}, "
          f"{inside_save} kills inside a save")
