"""The training process that test_crash_resume.py kills: a tiny MLP on 64 points, a checkpoint
after every epoch, resuming from the checkpoint when there is one; SGD with momentum rather than
Adam, whose Numba kernel would take a second to load in every new process.

    python crash_train_child.py CHECKPOINT EPOCHS    # prints each epoch number once it is saved, then "done"
"""
import sys

import numpy as np

from minidiff.diffusion import GaussianDiffusion
from minidiff.models import MLP
from minidiff.optim import EMA, SGD
from minidiff.train import train


def run(path, epochs, report=None):
    model = MLP(in_dim=2, d_hid=16, num_timesteps=20, num_layers=2, seed=0)
    diffusion = GaussianDiffusion(model, 20, schedule="cosine", data_shape=(2,))
    x = np.random.default_rng(0).standard_normal((64, 2)).astype(np.float32)     # (N, 2)
    opt, ema = SGD(model, lr=1e-2, momentum=0.9), EMA(model, decay=0.9)   # no Numba: a quick start
    return train(diffusion, x, epochs=epochs, batch_size=16, optimizer=opt, ema=ema, val_fraction=0.25,
                 checkpoint_path=path, resume=True, seed=1, progress=False, callbacks=report and [report])


if __name__ == "__main__":
    run(sys.argv[1], int(sys.argv[2]), report=lambda epoch, history: print(epoch + 1, flush=True))
    print("done", flush=True)
