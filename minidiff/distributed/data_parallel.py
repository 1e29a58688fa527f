"""What train() does on several ranks; with one rank every function here is what train() did before.

Data parallelism over N ranks, each holding the whole model and data set. Per step
of a global batch x[idx] of B rows (one seeded permutation per epoch, as for one process):

    t, eps ~ the shared Generator, for all B rows        (draw_t_noise: p_losses' own draws, in its order)
    rank r: rows share(B, r, N) = [lo_r, hi_r), B_r = hi_r - lo_r
            loss_r, g_r = p_losses(x[idx[lo_r:hi_r]], t[lo_r:hi_r], eps[lo_r:hi_r])
    loss = sum_r (B_r / B) loss_r                         (sum_scalars: a host float)
    g    = sum_r (B_r / B) g_r                            (average_gradient: one in-place all-reduce)

loss and g are the mean loss over the B rows and its gradient, as one process
computes them, up to the order of float sums. Every rank then clips and steps
identically. The Generator (its shuffles, label drops, t and noise) is the same
on every rank and advances as in one process, so a run does not depend on the
number of ranks, and a checkpoint (which keeps that Generator) written by N
ranks resumes on M. The price: every rank draws the t and noise of all B rows
(for a 32-image MNIST batch, 25,088 normals per step), not only of its own.
"""
import os

import numpy as np

from ..backend import get_xp, randn, to_host
from .launch import get_world  # noqa: F401  (train() takes the world from here)

_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def draw_t_noise(rng, num_timesteps, batch, row_shape, dtype):
    """The draws GaussianDiffusion.p_losses makes when given neither t nor noise, in its order:
    t (B,) ~ U{0..T-1}, then eps (B, *row_shape) ~ N(0, I) in `dtype`. Host arrays."""
    t = rng.integers(0, num_timesteps, size=batch)                 # (B,)
    return t, randn(rng, (batch,) + tuple(row_shape), dtype)       # (B, ...)


def p_losses(world, diffusion, x, idx, labels, loss, rng):
    """(loss, d_out) for the global batch x[idx] (B rows; labels (B,) or None).

    One rank: diffusion.p_losses(x[idx], labels, loss, rng). Several: this rank's rows with
    their share of the shared draws; loss is the mean over all B rows (a 0-d host float64,
    one small all-reduce), d_out the gradient of this rank's own mean (see average_gradient).
    A rank with no rows (B < N) computes row 0 with weight 0.
    """
    if world.size == 1:
        return diffusion.p_losses(x[idx], labels=labels, loss=loss, rng=rng)
    B = len(idx)
    t, noise = draw_t_noise(rng, diffusion.num_timesteps, B, x.shape[1:], x.dtype)
    lo, hi = world.share(B)
    rows = slice(lo, hi) if hi > lo else slice(0, 1)
    xp = get_xp(x)
    value, d_out = diffusion.p_losses(x[idx[rows]], t=xp.asarray(t[rows]), noise=xp.asarray(noise[rows]),
                                      labels=None if labels is None else labels[rows], loss=loss)
    local = float(to_host(value)) * (hi - lo) / B
    return np.asarray(world.sum_scalars([local], "allreduce(loss)")[0]), d_out


def average_gradient(world, grad, batch):
    """grad <- sum_r (B_r / B) grad_r, in place (one all-reduce; the plain mean when shares are equal)."""
    if world.size == 1:
        return grad
    lo, hi = world.share(batch)
    grad *= (hi - lo) / batch
    return world.allreduce_sum_(grad, "allreduce(gradient)")


def evaluate(world, diffusion, x, labels=None, *, batch_size, loss="mse", seed=0):
    """train.evaluate over the ranks: each batch's rows are shared as in training; the mean over all rows."""
    if world.size == 1:
        from ..train import evaluate
        return evaluate(diffusion, x, labels, batch_size=batch_size, loss=loss, seed=seed)
    rng = np.random.default_rng(seed)
    xp, n, total = get_xp(x), x.shape[0], 0.0
    for i in range(0, n, batch_size):
        B = min(batch_size, n - i)
        t, noise = draw_t_noise(rng, diffusion.num_timesteps, B, x.shape[1:], x.dtype)
        lo, hi = world.share(B)
        if hi == lo:
            continue
        value, _ = diffusion.p_losses(x[i + lo:i + hi], t=xp.asarray(t[lo:hi]), noise=xp.asarray(noise[lo:hi]),
                                      labels=None if labels is None else labels[i + lo:i + hi], loss=loss)
        total += float(to_host(value)) * (hi - lo)
    return float(world.sum_scalars([total], "allreduce(validation loss)")[0]) / n


# --- the same state on every rank ---------------------------------------------------------
def _same_everywhere(world, what, value):
    """Raise on every rank (the same error) unless `value` (JSON-able) is rank 0's on every rank."""
    root = world.bcast_json(value, f"broadcast({what})")
    bad = world.sum_scalars([0.0 if root == value else 1.0], f"allreduce({what} check)")[0]
    if bad:
        raise ValueError(f"distributed: {what} differs between ranks ({int(bad)} of {world.size} differ from "
                         f"rank 0's {root}; this rank has {value}): every rank must build the same model")


def broadcast_state(world, model, optimizer=None, ema=None):
    """Rank 0's parameters, optimiser state (arrays, step count, hyperparameters) and EMA on every rank."""
    if world.size == 1:
        return
    theta, _ = model.flat()
    _same_everywhere(world, "model, optimiser and EMA", {
        "parameters": int(theta.size), "dtype": np.dtype(theta.dtype).name, "model": type(model).__name__,
        "optimizer": None if optimizer is None else type(optimizer).__name__, "ema": ema is not None})
    world.bcast_(theta, "broadcast(parameters)")
    if optimizer is not None:
        state = optimizer.state_dict()
        for name in optimizer.state_names:
            world.bcast_(getattr(optimizer, name), f"broadcast(optimizer {name})")
        meta = world.bcast_json({"hyper": state["hyper"], "step_count": state["step_count"]},
                                "broadcast(optimizer)")
        if not world.is_root:
            optimizer.load_state_dict(dict(state, hyper=meta["hyper"], step_count=meta["step_count"]))
    if ema is not None:
        world.bcast_(ema.shadow, "broadcast(EMA)")
        state = ema.state_dict()
        meta = world.bcast_json({k: state[k] for k in ("decay", "warmup", "num_updates")}, "broadcast(EMA)")
        if not world.is_root:
            ema.load_state_dict(dict(state, **meta))


# --- checkpoints: rank 0 reads, every rank resumes ----------------------------------------------
def checkpoint_exists(world, path):
    """Whether rank 0 sees the file (the other ranks may have no shared file system)."""
    return bool(world.bcast_json(os.path.exists(path) if world.is_root else None, "broadcast(checkpoint exists)"))


def generator_from_state(state):
    """A numpy Generator with exactly this bit_generator.state."""
    name = state.get("bit_generator")
    if name not in _BIT_GENERATORS:
        raise ValueError(f"rng state: unknown bit generator {name!r}")
    bit_gen = getattr(np.random, name)()
    bit_gen.state = state
    return np.random.Generator(bit_gen)


def resume_on_root(world, resume):
    """resume() -> (rng, start_epoch, step, base_lr, history), run on rank 0 alone (which reads the
    checkpoint: the other ranks may have no shared file system); the other ranks get the same
    values, and a refusal raises the same error on every rank. The weights, optimiser and EMA
    reach the other ranks with broadcast_state, which train() calls next."""
    from ..checkpoint import CheckpointError
    if world.size == 1:
        return resume()
    meta = None
    if world.is_root:
        try:
            rng, start_epoch, step, base_lr, history = values = resume()
            meta = {"error": None, "rng": rng.bit_generator.state, "start_epoch": start_epoch, "step": step,
                    "base_lr": base_lr, "history": history}
        except (CheckpointError, ValueError) as e:
            meta = {"error": str(e), "kind": type(e).__name__}
    meta = world.bcast_json(meta, "broadcast(checkpoint)")
    if meta["error"] is not None:
        raise (CheckpointError if meta["kind"] == "CheckpointError" else ValueError)(meta["error"])
    if world.is_root:
        return values
    return (generator_from_state(meta["rng"]), int(meta["start_epoch"]), int(meta["step"]),
            float(meta["base_lr"]), meta["history"])