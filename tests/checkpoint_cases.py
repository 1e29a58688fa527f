"""Checkpoints shared by the checkpoint tests: a small trained setup, where each dataset's bytes
lie in a file, and `resign` (a tampered file given a valid digest again, as a hostile writer would)."""
import numpy as np

from minidiff.models import MLP
from minidiff.optim import EMA, Adam


def trained_setup(seed=0, dtype=np.float32):
    """A tiny model with a few Adam + EMA steps taken, so every piece of state is non-trivial."""
    model = MLP(in_dim=2, d_hid=8, num_timesteps=10, num_layers=2, seed=seed, dtype=dtype)
    opt, ema = Adam(model, lr=1e-2), EMA(model, decay=0.9)
    _, grad = model.flat()
    rng = np.random.default_rng(seed)
    for _ in range(3):
        grad[...] = rng.standard_normal(grad.shape)
        opt.step()
        ema.update()
    return model, opt, ema, rng


HISTORY = {"train_loss": [1.0, 0.5], "batch_loss": [1.5, 0.25], "val_loss": [], "notes": {"run": "a"}}


def save_full(path, seed=0):
    """Save every kind of state (model, Adam, EMA, rng, history, extra) to `path`; returns the setup."""
    from minidiff.checkpoint import save_checkpoint

    model, opt, ema, rng = trained_setup(seed)
    save_checkpoint(path, model, optimizer=opt, ema=ema, rng=rng, history=HISTORY, extra={"epoch": 2})
    return model, opt, ema, rng


def dataset_spans(path):
    """[(offset, length)] of every dataset's stored bytes in the file (chunks included)."""
    import h5py

    spans = []
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.size:
                if obj.chunks is None:
                    spans.append((obj.id.get_offset(), obj.id.get_storage_size()))
                else:
                    for i in range(obj.id.get_num_chunks()):
                        info = obj.id.get_chunk_info(i)
                        spans.append((info.byte_offset, info.size))
        f.visititems(visit)
    return spans


def resign(path):
    """Recompute the digest of a tampered checkpoint, so that only the other checks can catch it.
    False when those checks refuse to read the file at all (then no digest is needed to refuse it)."""
    import h5py

    from minidiff import checkpoint_file

    with h5py.File(path, "a") as f:
        try:
            checkpoint_file.sign(f)
        except checkpoint_file.CheckpointError:
            return False
    return True


def set_attr(obj, name, value):
    """Write an attribute as save_checkpoint does (strings fixed-length)."""
    from minidiff.checkpoint_file import set_attr as write

    write(obj, name, value)


def assert_same_state(ck, model, opt, ema, rng_state):
    """The loaded checkpoint holds exactly the saved weights, optimiser, EMA and rng."""
    np.testing.assert_array_equal(ck.model.flat()[0], model.flat()[0])
    assert ck.model.flat()[0].dtype == model.flat()[0].dtype
    np.testing.assert_array_equal(ck.optimizer.m, opt.m)
    np.testing.assert_array_equal(ck.optimizer.v, opt.v)
    assert ck.optimizer.step_count == opt.step_count and ck.optimizer.hyperparameters() == opt.hyperparameters()
    np.testing.assert_array_equal(ck.ema.shadow, ema.shadow)
    assert (ck.ema.decay, ck.ema.num_updates) == (ema.decay, ema.num_updates)
    assert ck.rng.bit_generator.state == rng_state
    assert ck.history == HISTORY and ck.extra == {"epoch": 2}
