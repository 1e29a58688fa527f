"""The small training run every distributed test repeats on 1, 2 or 3 ranks (threads or mpiexec).

An MLP on 97 spiral points with labels (the MLP declares 3 classes and ignores them, but
train() shuffles and drops them, so their split between ranks is visible), global batch 32: batches of
32, 32, 32 and 1 rows per epoch, so the last one leaves rank 1 of 2 without rows.
Adam with a large learning rate, clipping that acts, an EMA, a validation set.
"""
import numpy as np

from minidiff.backend import to_host
from minidiff.data.toy2d import make_spiral
from minidiff.diffusion import GaussianDiffusion
from minidiff.models import MLP
from minidiff.optim import EMA, Adam
from minidiff.train import train

N, BATCH, T = 97, 32, 20


def data(dtype):
    x = make_spiral(N, rng=0).astype(dtype)                      # (97, 2)
    labels = 1 + np.arange(N) % 3                                  # (97,) in 1..3
    val = (make_spiral(40, rng=1).astype(dtype), 1 + np.arange(40) % 3)
    return x, labels, val


def recorder(diffusion, log):
    """Wrap diffusion.p_losses to append (x0 rows, labels) of every call to log (host arrays)."""
    inner = diffusion.p_losses

    def p_losses(x0, *args, **kwargs):
        lab = kwargs.get("labels")
        log.append((to_host(x0).copy(), None if lab is None else to_host(lab).copy()))
        return inner(x0, *args, **kwargs)
    diffusion.p_losses = p_losses


def run(world=None, dtype=np.float64, epochs=2, checkpoint=None, resume=False, log=None, callbacks=None,
        checkpoint_every=1, device=None):
    """-> (model, optimizer, ema, history) after `epochs` epochs (from `checkpoint` if resume);
    device: an array module (tests/fakecupy.py's xp) to train on instead of NumPy."""
    model = MLP(d_hid=16, num_timesteps=T, seed=0, dtype=dtype)
    model.num_classes = 3                                          # a stand-in that takes labels and ignores them
    model.forward = lambda x, t, labels=None: MLP.forward(model, x, t)
    diffusion = GaussianDiffusion(model, T, schedule="cosine", data_shape=(2,), dtype=dtype)
    if device is not None:
        model.to(device)
        diffusion.to(device)
    if log is not None:
        recorder(diffusion, log)
    optimizer = Adam(model, lr=2e-2)
    ema = EMA(model, decay=0.9)
    x, labels, val = data(dtype)
    history = train(diffusion, x, labels=labels, prob_uncond=0.3, val_data=val, epochs=epochs,
                    batch_size=BATCH, optimizer=optimizer, ema=ema, grad_clip=0.05, seed=3, progress=False,
                    checkpoint_path=checkpoint, checkpoint_every=checkpoint_every, resume=resume,
                    callbacks=callbacks, world=world)
    return model, optimizer, ema, history


def state(model, optimizer, ema):
    """{name: host array}: everything a step depends on."""
    return {"theta": to_host(model.flat()[0]).copy(), "m": to_host(optimizer.m).copy(),
            "v": to_host(optimizer.v).copy(), "ema": to_host(ema.shadow).copy()}


def max_diff(a, b):
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
