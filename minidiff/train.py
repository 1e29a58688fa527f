"""The training loop: epochs of shuffled minibatches of the diffusion loss.

Per step: slice a batch, loss, d_out = diffusion.p_losses(x0, labels, rng),
zero_grad, model.backward(d_out), optional clipping, optimizer.step(),
optional ema.update(). One seeded Generator draws the shuffles, the label
drops and (inside p_losses) t and the noise; it is checkpointed with the
model, optimiser and EMA after every epoch, so a resumed run continues
bit-for-bit. Under an MPI launcher the rows of each batch are shared between
the ranks (minidiff.distributed; docs/distributed.md).
"""
import math
import os
import time

import numpy as np

from .backend import get_xp, to_device, to_host
from .checkpoint import save_checkpoint
from .distributed import data_parallel
from .optim.clip import clip_grad_norm


class NonFiniteError(FloatingPointError):
    """The loss or the gradient became NaN or infinite; training stopped."""


def _check_data(name, x):
    if not hasattr(x, "dtype") or not hasattr(x, "shape"):
        raise TypeError(f"{name}: expected a NumPy/CuPy array (N, ...), got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise TypeError(f"{name}: expected a float array, got dtype {x.dtype}")
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"{name}: expected shape (N, ...) with N >= 1, got {tuple(x.shape)}")
    if not bool(to_host(get_xp(x).isfinite(x).all())):
        raise ValueError(f"{name}: contains NaN or infinite values")


def _check_labels(name, labels, n):
    if not hasattr(labels, "dtype") or labels.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array, got {getattr(labels, 'dtype', type(labels))}")
    if labels.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},) to match the data, got {tuple(labels.shape)}")
    if n and int(to_host(labels.min())) < 1:
        raise ValueError(f"{name}: real classes must be 1..K (0 is reserved for 'unconditioned')")


def _split(data, labels, val_data, val_fraction, seed_seq):
    """(x, labels, x_val, labels_val), validated; val_fraction takes a seeded random subset."""
    _check_data("data", data)
    if labels is not None:
        _check_labels("labels", labels, data.shape[0])
    if val_data is not None and val_fraction is not None:
        raise ValueError("val_data, val_fraction: give at most one")
    val_labels = None
    if val_data is not None:
        if isinstance(val_data, (tuple, list)):
            val_data, val_labels = val_data
        _check_data("val_data", val_data)
        if (val_labels is None) != (labels is None):
            raise ValueError("val_data: pass (x, labels) exactly when labels are given")
        if val_labels is not None:
            _check_labels("val_data labels", val_labels, val_data.shape[0])
        return data, labels, val_data, val_labels
    if val_fraction is None:
        return data, labels, None, None
    if isinstance(val_fraction, bool) or not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction: expected a number in (0, 1), got {val_fraction!r}")
    n = data.shape[0]
    n_val = int(round(val_fraction * n))
    if not 1 <= n_val < n:
        raise ValueError(f"val_fraction: {val_fraction} of {n} samples leaves an empty split")
    perm = np.random.default_rng(seed_seq).permutation(n)
    tr, va = get_xp(data).asarray(perm[n_val:]), get_xp(data).asarray(perm[:n_val])
    return (data[tr], None if labels is None else labels[tr],
            data[va], None if labels is None else labels[va])


def _to_model_device(a, xp):
    """One explicit copy if an array is not on the model's device (None passes)."""
    return a if a is None or get_xp(a) is xp else to_device(a, xp)


def evaluate(diffusion, x, labels=None, *, batch_size, loss="mse", seed=0):
    """Mean loss over x with t and noise from a fixed seed (comparable across epochs)."""
    rng = np.random.default_rng(seed)
    total, n = 0.0, x.shape[0]
    for i in range(0, n, batch_size):
        lab = None if labels is None else labels[i:i + batch_size]
        value, _ = diffusion.p_losses(x[i:i + batch_size], labels=lab, loss=loss, rng=rng)
        total += float(to_host(value)) * min(batch_size, n - i)
    return total / n


def _callbacks(callbacks):
    """Split callbacks into per-batch hooks and per-epoch hooks.

    A plain callable is called as cb(epoch, history) after each epoch; an
    object may define on_batch_end(epoch, batch, loss) and/or
    on_epoch_end(epoch, history). `epoch` and `batch` are 0-based.
    """
    batch_hooks, epoch_hooks = [], []
    for cb in callbacks or ():
        if hasattr(cb, "on_batch_end"):
            batch_hooks.append(cb.on_batch_end)
        if hasattr(cb, "on_epoch_end"):
            epoch_hooks.append(cb.on_epoch_end)
        elif not hasattr(cb, "on_batch_end"):
            if not callable(cb):
                raise TypeError(f"callbacks: expected callables or objects with on_batch_end/"
                                f"on_epoch_end, got {type(cb).__name__}")
            epoch_hooks.append(cb)
    return batch_hooks, epoch_hooks


def _check_args(epochs, batch_size, prob_uncond, labels, grad_clip, checkpoint_every):
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("checkpoint_every", checkpoint_every)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {v!r}")
    if not 0.0 <= prob_uncond <= 1.0:
        raise ValueError(f"prob_uncond: expected a number in [0, 1], got {prob_uncond!r}")
    if prob_uncond > 0 and labels is None:
        raise ValueError("prob_uncond: > 0 needs labels")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip: expected None or a number > 0, got {grad_clip!r}")


def train(diffusion, data, *, epochs, batch_size, optimizer, val_data=None, val_fraction=None,
          labels=None, prob_uncond=0.0, loss="mse", ema=None, grad_clip=None, lr_schedule=None,
          checkpoint_path=None, checkpoint_every=1, resume=False, seed=0, progress=True,
          callbacks=None, world=None):
    """train(diffusion, data (N, ...), *, epochs, batch_size, optimizer, ...) -> history.

    history = {"train_loss": [per epoch], "val_loss": [per epoch, if validating],
               "batch_loss": [per batch], "epoch_time": [seconds per epoch]}.
    labels (N,) in 1..K: each epoch a label is replaced by 0 with probability prob_uncond.
    lr_schedule(step) -> factor: lr = base_lr * factor before each step, base_lr = optimizer.lr
    at the first call (kept in the checkpoint, so a resumed run continues the same schedule).
    checkpoint_path: saved every `checkpoint_every` epochs and after the last; resume=True
    continues from it (if it exists) at the next epoch, with the same rng stream.
    world: None = minidiff.distributed.get_world() (several ranks under mpiexec): batch_size is the
    global batch, shared between the ranks; rank 0 alone writes checkpoints and the progress bar;
    callbacks run on every rank (with the same history).
    """
    _check_args(epochs, batch_size, prob_uncond, labels, grad_clip, checkpoint_every)
    if resume and checkpoint_path is None:
        raise ValueError("resume: needs checkpoint_path")
    world = data_parallel.get_world(world)
    model = diffusion.model
    split_seq, train_seq, val_seq = np.random.SeedSequence(seed).spawn(3)
    x, y, x_val, y_val = _split(data, labels, val_data, val_fraction, split_seq)
    _, grad = model.flat()
    xp = get_xp(grad)
    x, y, x_val, y_val = (_to_model_device(a, xp) for a in (x, y, x_val, y_val))
    batch_hooks, epoch_hooks = _callbacks(callbacks)
    base_lr = optimizer.lr

    rng = np.random.default_rng(train_seq)
    history = {"train_loss": [], "val_loss": [], "batch_loss": [], "epoch_time": []}
    start_epoch, step = 0, 0
    if resume and data_parallel.checkpoint_exists(world, checkpoint_path):
        ck = data_parallel.load_checkpoint(world, checkpoint_path, model=model, optimizer=optimizer, ema=ema)
        if ck.rng is None or "epoch" not in ck.extra:
            raise ValueError(f"resume: {checkpoint_path} was not written by train()")
        rng, start_epoch, step = ck.rng, int(ck.extra["epoch"]), int(ck.extra["step"])
        base_lr = float(ck.extra.get("base_lr", base_lr))
        history.update(ck.history)
    data_parallel.broadcast_state(world, model, optimizer, ema)

    n = x.shape[0]
    num_batches = math.ceil(n / batch_size)
    bar = None
    if progress and world.is_root and start_epoch < epochs:
        from tqdm.auto import tqdm
        bar = tqdm(total=epochs * num_batches, initial=start_epoch * num_batches, unit="step",
                   desc="train", dynamic_ncols=True)
    try:
        for epoch in range(start_epoch, epochs):
            t0 = time.perf_counter()
            perm = xp.asarray(rng.permutation(n))                 # (N,)
            y_epoch = None
            if y is not None:
                y_epoch = y[perm]                                 # (N,)
                if prob_uncond > 0:
                    drop = xp.asarray(rng.random(n) < prob_uncond)  # (N,)
                    y_epoch = xp.where(drop, 0, y_epoch)
            epoch_losses = []
            for b in range(num_batches):
                idx = perm[b * batch_size:(b + 1) * batch_size]   # (B,)
                lab = None if y_epoch is None else y_epoch[b * batch_size:(b + 1) * batch_size]
                value, d_out = data_parallel.p_losses(world, diffusion, x, idx, lab, loss, rng)
                loss_value = float(to_host(value))
                if not math.isfinite(loss_value):
                    raise NonFiniteError(f"train: non-finite loss ({loss_value}) at epoch {epoch + 1}, "
                                         f"batch {b + 1}/{num_batches}; weights not updated, "
                                         f"last checkpoint left untouched")
                model.zero_grad()
                model.backward(d_out)
                data_parallel.average_gradient(world, grad, len(idx))
                if grad_clip is not None:
                    ok = math.isfinite(float(to_host(clip_grad_norm(grad, grad_clip))))
                else:
                    ok = bool(to_host(xp.isfinite(grad).all()))
                if not ok:
                    raise NonFiniteError(f"train: non-finite gradient at epoch {epoch + 1}, "
                                         f"batch {b + 1}/{num_batches}; weights not updated, "
                                         f"last checkpoint left untouched")
                if lr_schedule is not None:
                    optimizer.lr = base_lr * lr_schedule(step)
                optimizer.step()
                if ema is not None:
                    ema.update()
                step += 1
                epoch_losses.append(loss_value)
                for hook in batch_hooks:
                    hook(epoch, b, loss_value)
                if bar is not None:
                    bar.update(1)
                    if b % 32 == 0:
                        bar.set_postfix(epoch=epoch + 1, loss=f"{loss_value:.4f}", refresh=False)

            history["batch_loss"].extend(epoch_losses)
            history["train_loss"].append(float(np.mean(epoch_losses)))
            if x_val is not None:
                history["val_loss"].append(data_parallel.evaluate(world, diffusion, x_val, y_val,
                                                                  batch_size=batch_size, loss=loss, seed=val_seq))
            history["epoch_time"].append(time.perf_counter() - t0)
            if bar is not None:
                post = {"epoch": epoch + 1, "loss": f"{history['train_loss'][-1]:.4f}"}
                if x_val is not None:
                    post["val"] = f"{history['val_loss'][-1]:.4f}"
                bar.set_postfix(post)
            last = epoch + 1 == epochs
            if checkpoint_path is not None and world.is_root and ((epoch + 1) % checkpoint_every == 0 or last):
                save_checkpoint(checkpoint_path, model, optimizer=optimizer, ema=ema, rng=rng,
                                history=history,
                                extra={"epoch": epoch + 1, "step": step, "seed": seed, "base_lr": base_lr,
                                       "world_size": world.size})
            for hook in epoch_hooks:
                hook(epoch, history)
    finally:
        if bar is not None:
            bar.close()
    return history
