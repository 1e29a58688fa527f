"""Training checkpoints in HDF5 (h5py, imported on use): plain arrays and JSON, nothing executable.

Layout of one file:
    /                attrs: format="minidiff-checkpoint", format_version, model_class,
                     model_config (JSON), dtype, rng_state (JSON), extra (JSON)
    /history/<key>   one float64 dataset per list of numbers (losses ...); attrs: other (JSON)
    /model/<name>    one dataset per dotted parameter name (model.state_dict())
    /ema/<name>      the EMA weights, same names;        attrs: decay, warmup, num_updates
    /optimizer/<s>   flat (P,) state arrays (m, v, ...); attrs: type, hyper (JSON), step_count

`save_checkpoint` writes a temporary file in the same directory, flushes and
fsyncs it, then `os.replace`s it over `path`: a crash mid-write leaves the
previous checkpoint intact.
"""
import json
import os
import tempfile
from dataclasses import dataclass, field

import numpy as np

from .backend import to_host

FORMAT = "minidiff-checkpoint"
FORMAT_VERSION = 1
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, foreign, of another version or another model."""


@dataclass
class Checkpoint:
    """What `load_checkpoint` returns."""
    path: str
    model: object
    model_class: str
    model_config: dict
    optimizer: object = None          # the given or a rebuilt optimiser, or None if none was saved
    ema: object = None                # the given or a rebuilt EMA, or None if none was saved
    rng: np.random.Generator = None   # restored exactly, or None if none was saved
    history: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def _h5py():
    import h5py
    return h5py


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def _dumps(obj):
    return json.dumps(obj, default=_json_default)


def _unflatten(model, flat):
    """(P,) flat vector -> {dotted name: host array} in the model's flat order."""
    flat = to_host(flat)
    out, offset = {}, 0
    for name, p, _ in model.named_parameters():
        out[name] = flat[offset:offset + p.size].reshape(p.shape)
        offset += p.size
    return out


def _flatten(model, named):
    return np.concatenate([np.asarray(named[name]).reshape(-1) for name, _, _ in model.named_parameters()])


# --- writing ---------------------------------------------------------------
def _write_weights(group, named):
    for name, a in named.items():
        group.create_dataset(name, data=to_host(a))


def _write_optimizer(f, optimizer):
    state = optimizer.state_dict()
    g = f.create_group("optimizer")
    g.attrs["type"] = state["type"]
    g.attrs["hyper"] = _dumps(state["hyper"])
    g.attrs["step_count"] = int(state["step_count"])
    for key, a in state["state"].items():
        g.create_dataset(key, data=to_host(a))


def _write_ema(f, model, ema):
    state = ema.state_dict()
    g = f.create_group("ema")
    g.attrs["decay"] = state["decay"]
    g.attrs["warmup"] = bool(state["warmup"])
    g.attrs["num_updates"] = int(state["num_updates"])
    _write_weights(g, _unflatten(model, state["shadow"]))


def _write_history(f, history):
    """Lists of numbers as datasets (fast for long per-batch logs), the rest as JSON."""
    g, other = f.create_group("history"), {}
    for key, value in (history or {}).items():
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            arr = None
        if isinstance(value, (list, tuple)) and arr is not None and arr.ndim == 1:
            g.create_dataset(key, data=arr)
        else:
            other[key] = value
    g.attrs["other"] = _dumps(other)


def _write(f, model, optimizer, ema, rng, history, extra):
    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["model_class"] = type(model).__name__
    f.attrs["model_config"] = _dumps(getattr(model, "config", {}))
    f.attrs["dtype"] = np.dtype(model.dtype).name
    f.attrs["extra"] = _dumps(extra or {})
    if rng is not None:
        f.attrs["rng_state"] = _dumps(rng.bit_generator.state)
    _write_weights(f.create_group("model"), model.state_dict())
    _write_history(f, history)
    if optimizer is not None:
        _write_optimizer(f, optimizer)
    if ema is not None:
        _write_ema(f, model, ema)


def save_checkpoint(path, model, optimizer=None, ema=None, rng=None, history=None, extra=None):
    """Write model (+ optimiser, EMA, rng state, history, extra) to `path`, atomically."""
    if not hasattr(model, "state_dict"):
        raise TypeError(f"save_checkpoint: model must be a minidiff Layer, got {type(model).__name__}")
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"save_checkpoint: rng must be a numpy Generator, got {type(rng).__name__}")
    h5py = _h5py()
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            _write(f, model, optimizer, ema, rng, history, extra)
            f.flush()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


# --- reading ---------------------------------------------------------------
def _read_weights(group):
    return {name: group[name][()] for name in group}


def _check_weights(path, what, named, model):
    own = {name: tuple(p.shape) for name, p, _ in model.named_parameters()}
    missing, extra = sorted(set(own) - set(named)), sorted(set(named) - set(own))
    if missing or extra:
        raise CheckpointError(f"{path}: {what} do not match the model {type(model).__name__}: "
                              f"missing {missing[:5]}, unexpected {extra[:5]}")
    for name, shape in own.items():
        if tuple(named[name].shape) != shape:
            raise CheckpointError(f"{path}: {what} {name} has shape {tuple(named[name].shape)}, "
                                  f"the model expects {shape}")


def _read_history(g):
    history = {key: g[key][()].tolist() for key in g}
    history.update(json.loads(g.attrs["other"]))
    return history


def _restore_rng(path, text):
    state = json.loads(text)
    name = state.get("bit_generator")
    if name not in _BIT_GENERATORS:
        raise CheckpointError(f"{path}: unknown bit generator {name!r} in rng_state")
    bit_gen = getattr(np.random, name)()
    bit_gen.state = state
    return np.random.Generator(bit_gen)


def _load_optimizer(path, g, model, optimizer):
    from .optim import OPTIMIZERS
    kind, hyper = str(g.attrs["type"]), json.loads(g.attrs["hyper"])
    state = {"type": kind, "hyper": hyper, "step_count": int(g.attrs["step_count"]),
             "state": {key: g[key][()] for key in g}}
    if optimizer is None:
        if kind not in OPTIMIZERS:
            raise CheckpointError(f"{path}: unknown optimiser type {kind!r}")
        optimizer = OPTIMIZERS[kind](model, **{k: tuple(v) if isinstance(v, list) else v
                                               for k, v in hyper.items()})
    elif type(optimizer).__name__ != kind:
        raise CheckpointError(f"{path}: the checkpoint holds {kind} state, "
                              f"the optimiser given is {type(optimizer).__name__}")
    try:
        optimizer.load_state_dict(state)
    except ValueError as e:
        raise CheckpointError(f"{path}: optimiser state: {e}") from e
    return optimizer


def _load_ema(path, g, model, ema):
    from .optim import EMA
    named = _read_weights(g)
    _check_weights(path, "EMA weights", named, model)
    if ema is None:
        ema = EMA(model, decay=float(g.attrs["decay"]))
    ema.load_state_dict({"decay": float(g.attrs["decay"]), "warmup": bool(g.attrs["warmup"]),
                         "num_updates": int(g.attrs["num_updates"]), "shadow": _flatten(model, named)})
    return ema


def _read(path, f, model, optimizer, ema):
    if f.attrs.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a minidiff checkpoint (no format={FORMAT!r} attribute)")
    version = int(f.attrs.get("format_version", -1))
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version}, "
                              f"this minidiff reads version {FORMAT_VERSION}")
    model_class, config = str(f.attrs["model_class"]), json.loads(f.attrs["model_config"])
    if model is None:
        from .models import MODELS
        if model_class not in MODELS:
            raise CheckpointError(f"{path}: unknown model class {model_class!r}; known: {sorted(MODELS)}")
        model = MODELS[model_class](**config).astype(str(f.attrs["dtype"]))
    named = _read_weights(f["model"])
    _check_weights(path, "weights", named, model)
    model.load_state_dict(named)
    if "optimizer" in f:
        optimizer = _load_optimizer(path, f["optimizer"], model, optimizer)
    if "ema" in f:
        ema = _load_ema(path, f["ema"], model, ema)
    rng = _restore_rng(path, f.attrs["rng_state"]) if "rng_state" in f.attrs else None
    return Checkpoint(path=path, model=model, model_class=model_class, model_config=config,
                      optimizer=optimizer, ema=ema, rng=rng, history=_read_history(f["history"]),
                      extra=json.loads(f.attrs["extra"]))


def load_checkpoint(path, model=None, optimizer=None, ema=None):
    """load_checkpoint(path, model=None, optimizer=None, ema=None) -> Checkpoint.

    Loads weights into `model` (or rebuilds it as MODELS[model_class](**config)),
    and the saved optimiser / EMA state into the ones given (or rebuilt ones).
    Raises CheckpointError (a ValueError) naming the path and the reason.
    """
    h5py = _h5py()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise CheckpointError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {e}") from e
    try:
        with f:
            return _read(path, f, model, optimizer, ema)
    except CheckpointError:
        raise
    except (OSError, KeyError, TypeError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupt or incomplete checkpoint: {e}") from e
