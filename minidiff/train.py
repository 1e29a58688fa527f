"""The training loop: epochs of shuffled minibatches of the diffusion loss.

Per step: slice a batch, loss, d_out = diffusion.p_losses(x0, labels, rng),
zero_grad, model.backward(d_out), optional clipping, optimizer.step(),
optional ema.update(). One seeded Generator draws the shuffles, the label
drops and (inside p_losses) t and the noise; it is checkpointed with the
model, optimiser and EMA after every epoch, so a resumed run continues
bit-for-bit. Under an MPI launcher the rows of each batch are shared between
the ranks (minidiff.distributed; docs/distributed.md).

Resuming refuses a checkpoint whose maths would differ (another model config or
dtype, another T, schedule, objective, variance or loss weighting), naming both
values, before anything changes; optimiser hyperparameters (the learning rate
...), the EMA decay and the training settings may change: the new values are
applied, logged and listed in history["resume_changes"]. No NaN or inf reaches a
checkpoint: the loss and gradient are checked before each step, the weights
after it, and the weights, EMA and optimiser state before each save.
"""
import hashlib
import json
import logging
import math
import time

import numpy as np

from .backend import get_xp, to_device, to_host
from .checkpoint import CheckpointError, read_checkpoint, restore_checkpoint, save_checkpoint
from .distributed import data_parallel
from .optim.clip import clip_grad_norm

log = logging.getLogger(__name__)


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


# --- what a checkpoint records of the run, and resuming from it ---------------------------
def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def diffusion_config(diffusion):
    """{name: value} of what in the diffusion decides the maths: T, the schedule (as its betas),
    objective, variance, clipping, loss weighting, dtype, and a SHA-256 of every buffer (getattr:
    a stand-in with only p_losses gives its class name)."""
    cfg = {"class": type(diffusion).__name__}
    for name in ("num_timesteps", "objective", "variance", "clip_denoised", "min_snr_gamma", "data_shape"):
        if hasattr(diffusion, name):
            cfg[name] = getattr(diffusion, name)
    if hasattr(diffusion, "dtype"):
        cfg["dtype"] = np.dtype(diffusion.dtype).name
    if getattr(diffusion, "betas", None) is not None:
        cfg["betas"] = to_host(diffusion.betas).astype(np.float64).tolist()
    buffers = getattr(diffusion, "buffers", None)
    if isinstance(buffers, dict):
        h = hashlib.sha256()
        for name in sorted(buffers):
            a = np.ascontiguousarray(to_host(buffers[name]))
            h.update(f"{name} {a.dtype.str} {a.shape}".encode())
            h.update(a.tobytes())
        cfg["buffers_sha256"] = h.hexdigest()
    return _jsonable(cfg)


def _describe(schedule):
    """A learning-rate schedule as text that is the same for equal schedules (no addresses)."""
    if schedule is None:
        return None
    text = repr(schedule)
    return text if " at 0x" not in text else f"{type(schedule).__module__}.{type(schedule).__qualname__}"


def train_settings(n, batch_size, loss, prob_uncond, grad_clip, lr_schedule, ema):
    """The training settings a resume may change (reported when it does)."""
    return _jsonable({"num_train": int(n), "batch_size": int(batch_size), "loss": loss,
                      "prob_uncond": float(prob_uncond), "grad_clip": grad_clip, "lr_schedule": _describe(lr_schedule),
                      "ema_decay": None if ema is None else ema.decay,
                      "ema_warmup": None if ema is None else ema.warmup})


_DIFFUSION_ORDER = ("class", "num_timesteps", "objective", "variance", "clip_denoised", "min_snr_gamma", "dtype",
                    "data_shape", "betas", "buffers_sha256")


def _check_same_diffusion(path, saved, current):
    """Refuse a resume whose diffusion maths would differ, naming the setting and both values."""
    if saved is None:
        log.warning("train: %s records no diffusion settings; T and the schedule were not compared", path)
        return
    keys = sorted(set(saved) | set(current), key=lambda k: (_DIFFUSION_ORDER + (k,)).index(k))
    for key in keys:
        old, new = saved.get(key, "(absent)"), current.get(key, "(absent)")
        if old == new:
            continue
        if key == "betas" and isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
            t = next(i for i, (a, b) in enumerate(zip(old, new)) if a != b)
            what = f"the schedule: betas[{t}]={old[t]!r} (T={len(old)}), this run has betas[{t}]={new[t]!r}"
        elif key == "buffers_sha256":
            what = "diffusion buffers that differ (their SHA-256)"
        else:
            what = f"{key}={old!r}, this run has {key}={new!r}"
        raise CheckpointError(f"resume: {path} was trained with {what}; resuming would change the maths "
                              f"(use the same settings, or start a new run)")


def _resume(path, diffusion, model, optimizer, ema, settings):
    """(rng, start_epoch, step, base_lr, history, changes) from the checkpoint at `path`.

    Refuses (CheckpointError) a checkpoint whose maths would differ before anything changes;
    then loads it and puts back the optimiser hyperparameters, EMA settings and base lr that
    this call was given, returning what changed as {name: [saved, new]}.
    """
    data = read_checkpoint(path)
    if data.rng is None or "epoch" not in data.extra or data.optimizer is None:
        raise ValueError(f"resume: {path} was not written by train()")
    _check_same_diffusion(path, data.extra.get("diffusion"), diffusion_config(diffusion))
    hyper = _jsonable(optimizer.hyperparameters())
    ema_given = None if ema is None else (ema.decay, ema.warmup)
    ck = restore_checkpoint(data, model=model, optimizer=optimizer, ema=ema)   # refuses another model

    changes = {}
    saved_hyper, saved_lr = data.optimizer["hyper"], data.optimizer["hyper"].get("lr")
    base_lr = float(data.extra.get("base_lr", saved_lr))
    if hyper["lr"] not in (base_lr, saved_lr):          # the saved lr itself: the same optimiser passed again
        changes["lr"] = [base_lr, hyper["lr"]]
        base_lr = optimizer.lr = hyper["lr"]
    for key, value in hyper.items():
        if key != "lr" and saved_hyper.get(key, value) != value:
            changes[key] = [saved_hyper[key], value]
            setattr(optimizer, key, tuple(value) if isinstance(value, list) else value)
    if ema is not None and data.ema is None:            # an EMA begun at this resume: from the loaded weights
        ema.shadow[...] = model.flat()[0]
    elif ema is not None:                               # the saved shadow, the decay given now
        ema.decay, ema.warmup = ema_given
    for key, value in settings.items():
        old = data.extra.get("train", {}).get(key, value)
        if old != value:
            changes[key] = [old, value]
    history = dict(data.history)
    if changes:
        record = {"epoch": data.extra["epoch"], **changes}
        history["resume_changes"] = list(history.get("resume_changes", [])) + [record]
        log.warning("train: resuming %s at epoch %d with changed settings: %s", path, data.extra["epoch"],
                    "; ".join(f"{k}: {a} -> {b}" for k, (a, b) in changes.items()))
    return ck.rng, int(data.extra["epoch"]), int(data.extra["step"]), base_lr, history, changes


def _check_finite_after_step(theta, xp, epoch, b, num_batches, optimizer):
    if not bool(to_host(xp.isfinite(theta).all())):
        raise NonFiniteError(f"train: non-finite weights after the optimiser step at epoch {epoch + 1}, "
                             f"batch {b + 1}/{num_batches} (lr {optimizer.lr:g}); the last checkpoint was "
                             f"left untouched (the model in memory holds the NaN/inf weights)")


def _check_finite_state(model, optimizer, ema, epoch):
    """Before a save: the weights, the EMA and the optimiser state all finite."""
    arrays = [("model weights", model.flat()[0])] + ([("EMA weights", ema.shadow)] if ema is not None else [])
    arrays += [(f"optimiser state {k}", a) for k, a in optimizer.state_dict()["state"].items()]
    for what, a in arrays:
        if not bool(to_host(get_xp(a).isfinite(a).all())):
            raise NonFiniteError(f"train: the {what} hold NaN or inf after epoch {epoch + 1}; not saved, "
                                 f"the last checkpoint was left untouched")


def train(diffusion, data, *, epochs, batch_size, optimizer, val_data=None, val_fraction=None,
          labels=None, prob_uncond=0.0, loss="mse", ema=None, grad_clip=None, lr_schedule=None,
          checkpoint_path=None, checkpoint_every=1, resume=False, seed=0, progress=True,
          callbacks=None, world=None):
    """train(diffusion, data (N, ...), *, epochs, batch_size, optimizer, ...) -> history.

    history = {"train_loss": [per epoch], "val_loss": [per epoch, if validating],
               "batch_loss": [per batch], "epoch_time": [seconds per epoch]}, and after a resume
    that changed settings "resume_changes": [{"epoch": e, name: [saved, new], ...}].
    labels (N,) in 1..K: each epoch a label is replaced by 0 with probability prob_uncond.
    lr_schedule(step) -> factor: lr = base_lr * factor before each step, base_lr = optimizer.lr
    at the first call (kept in the checkpoint, so a resumed run continues the same schedule).
    checkpoint_path: saved every `checkpoint_every` epochs and after the last; resume=True
    continues from it (if it exists) at the next epoch, with the same rng stream; it refuses
    (CheckpointError) a checkpoint of another model or diffusion, and applies and reports a new
    lr or other optimiser, EMA or training setting. Raises NonFiniteError on NaN/inf.
    world: None = minidiff.distributed.get_world() (several ranks under mpiexec): batch_size is the
    global batch, shared between the ranks; rank 0 alone reads and writes checkpoints and shows
    the progress bar; callbacks run on every rank (with the same history).
    """
    _check_args(epochs, batch_size, prob_uncond, labels, grad_clip, checkpoint_every)
    if labels is not None and getattr(diffusion.model, "num_classes", "not declared") is None:
        raise ValueError(f"labels: given, but {type(diffusion.model).__name__} is unconditional (num_classes=None); "
                         "train it without labels")
    if resume and checkpoint_path is None:
        raise ValueError("resume: needs checkpoint_path")
    world = data_parallel.get_world(world)
    model = diffusion.model
    split_seq, train_seq, val_seq = np.random.SeedSequence(seed).spawn(3)
    x, y, x_val, y_val = _split(data, labels, val_data, val_fraction, split_seq)
    theta, grad = model.flat()
    xp = get_xp(grad)
    x, y, x_val, y_val = (_to_model_device(a, xp) for a in (x, y, x_val, y_val))
    batch_hooks, epoch_hooks = _callbacks(callbacks)
    base_lr = optimizer.lr

    rng = np.random.default_rng(train_seq)
    history = {"train_loss": [], "val_loss": [], "batch_loss": [], "epoch_time": []}
    start_epoch, step = 0, 0
    n = x.shape[0]
    settings = train_settings(n, batch_size, loss, prob_uncond, grad_clip, lr_schedule, ema)
    if resume and data_parallel.checkpoint_exists(world, checkpoint_path):
        rng, start_epoch, step, base_lr, saved_history = data_parallel.resume_on_root(
            world, lambda: _resume(checkpoint_path, diffusion, model, optimizer, ema, settings)[:5])
        history.update(saved_history)
    data_parallel.broadcast_state(world, model, optimizer, ema)

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
                _check_finite_after_step(theta, xp, epoch, b, num_batches, optimizer)
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
                _check_finite_state(model, optimizer, ema, epoch)
                save_checkpoint(checkpoint_path, model, optimizer=optimizer, ema=ema, rng=rng,
                                history=history,
                                extra={"epoch": epoch + 1, "step": step, "seed": seed, "base_lr": base_lr,
                                       "diffusion": diffusion_config(diffusion), "train": settings,
                                       "world_size": world.size})
            for hook in epoch_hooks:
                hook(epoch, history)
    finally:
        if bar is not None:
            bar.close()
    return history
