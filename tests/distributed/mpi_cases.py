"""Run by tests/distributed/test_distributed_mpi.py under `mpiexec -n 2`: python mpi_cases.py SCENARIO OUT

    train   (A) 2 epochs from scratch, float64, checkpoint OUT/ckpt_2r.h5, every p_losses call recorded;
            (B) resume OUT/ckpt_1r.h5 (written by one process) to epoch 4, float64;
            (C) 2 epochs, float32.  Rank 0 writes OUT/train.npz.
    kill    checkpoints every epoch; rank 1 SIGKILLs itself in epoch 3 (after writing OUT/killed_at)
    stall   rank 1 sleeps in epoch 2 (OUT/stalled_at); rank 0 must give up after MINIDIFF_DIST_TIMEOUT
    raise   rank 1 raises in epoch 2 (OUT/raised_at); every rank must stop at once
"""
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import numpy as np  # noqa: E402

import dist_cases as dc  # noqa: E402
from minidiff.distributed import get_world  # noqa: E402


def scenario_train(world, out):
    log = []
    model, opt, ema, hist = dc.run(epochs=2, checkpoint=os.path.join(out, "ckpt_2r.h5"), log=log)
    a = dc.state(model, opt, ema)
    thetas = world.gather_rows(a["theta"][None], "gather(theta)")         # (ranks, P): all must agree
    rows = world.gather_rows(np.array([[len(x), 0 if lab is None else len(lab)] for x, lab in log]))
    xs = world.gather_rows(np.concatenate([x for x, _ in log]))          # every call's rows, rank after rank
    labs = world.gather_rows(np.concatenate([lab for _, lab in log]))
    b = dc.state(*dc.run(epochs=4, checkpoint=os.path.join(out, "ckpt_1r.h5"), resume=True)[:3])
    c = dc.state(*dc.run(dtype=np.float32, epochs=2)[:3])
    if world.is_root:
        np.savez(os.path.join(out, "train.npz"), thetas=thetas, rows=rows, xs=xs, labels=labs,
                 batch_loss=np.array(hist["batch_loss"]), val_loss=np.array(hist["val_loss"]),
                 **{f"a_{k}": v for k, v in a.items()}, **{f"b_{k}": v for k, v in b.items()},
                 **{f"c_{k}": v for k, v in c.items()})


class Stop:
    """A callback that makes rank 1 misbehave at (epoch, batch) and first writes the time to a file."""

    def __init__(self, world, out, epoch, action):
        self.world, self.out, self.epoch, self.action = world, out, epoch, action

    def on_batch_end(self, epoch, batch, loss):
        if self.world.rank != 1 or epoch != self.epoch or batch != 1:
            return
        with open(os.path.join(self.out, f"{self.action}_at"), "w") as f:
            f.write(repr(time.time()))
        if self.action == "killed":
            os.kill(os.getpid(), signal.SIGKILL)
        elif self.action == "stalled":
            time.sleep(600)
        else:
            raise RuntimeError("rank 1 fails on purpose")


def scenario_fault(world, out, action, epoch):
    dc.run(epochs=6, checkpoint=os.path.join(out, "ckpt.h5"), callbacks=[Stop(world, out, epoch, action)])


if __name__ == "__main__":
    name, out = sys.argv[1], sys.argv[2]
    world = get_world()
    assert world.size == 2, world
    if name == "train":
        scenario_train(world, out)
    else:
        scenario_fault(world, out, {"kill": "killed", "stall": "stalled", "raise": "raised"}[name],
                       2 if name == "kill" else 1)
    print(f"rank {world.rank}: done", flush=True)
