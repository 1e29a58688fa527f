"""Training checkpoints in HDF5 (h5py, imported on use): plain arrays and JSON, nothing executable.

Layout of one file (format_version 2):
    /                attrs: format="minidiff-checkpoint", format_version, model_class,
                     model_config (JSON), dtype, rng_state (JSON), extra (JSON), sha256
    /history/<key>   one float64 dataset per list of numbers (losses ...); attrs: other (JSON)
    /model/<name>    one dataset per dotted parameter name (model.state_dict())
    /ema/<name>      the EMA weights, same names;        attrs: decay, warmup, num_updates
    /optimizer/<s>   flat (P,) state arrays (m, v, ...); attrs: type, hyper (JSON), step_count

Integrity: every dataset carries HDF5's fletcher32 checksum, and `sha256` is the SHA-256 of
everything else (each attribute, each dataset's name, dtype, shape and bytes, in a fixed order).

Writing: the file is built in memory (h5py's core driver, no backing store), then its bytes go
with plain os calls to `.<name>.<random>.tmp` beside `path`, are fsynced and renamed over `path`:
a crash or a full disk leaves the previous checkpoint, and a write error is an OSError.
Temp files of earlier interrupted saves are removed by the next save of the same path.

Reading checks, before anything is read: the file's structure (only the groups, datasets and
attributes above, hard links only), every dataset's dtype, shape, chunks and filters, every
attribute's type and size, all bounded by the file's size; then the model_config (known keys,
bounded values, the size of the model it would build); then reads and verifies the digest; and
only then builds or fills a model, optimiser and EMA. docs/guarantees.md says what that buys.
The file-level checks and the digest live in checkpoint_file.py, the atomic write in
atomic_write.py, the size bounds of each model class in models/sizes.py.
Format version 1 (minidiff up to c83fd3d: no checksums, variable-length strings) is refused by
load_checkpoint; `python -m minidiff.checkpoint --upgrade PATH` converts a file you trust.
"""
import inspect
import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from .atomic_write import remove_stale_temps, write_atomically
from .backend import get_xp, to_host
from .checkpoint_file import (FORMAT, FORMAT_VERSION, CheckpointError, _h5py, digest, fail, format_version,
                              inventory, read_attribute, read_dataset, set_attr, sign)

_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


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


@dataclass
class CheckpointData:
    """What `read_checkpoint` returns: the file's contents, checked and verified; nothing built."""
    path: str
    version: int
    model_class: str
    model_config: dict
    dtype: np.dtype
    weights: dict                     # {dotted name: host array}
    optimizer: dict = None            # {"type", "hyper", "step_count", "state": {name: (P,)}}
    ema: dict = None                  # {"decay", "warmup", "num_updates", "weights": {name: array}}
    rng: np.random.Generator = None
    history: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


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
def _write_array(group, name, a):
    group.create_dataset(name, data=np.ascontiguousarray(to_host(a)), fletcher32=True)


def _write_weights(group, named):
    for name, a in named.items():
        _write_array(group, name, a)


def _write_optimizer(f, optimizer):
    state = optimizer.state_dict()
    g = f.create_group("optimizer")
    set_attr(g, "type", state["type"])
    set_attr(g, "hyper", _dumps(state["hyper"]))
    set_attr(g, "step_count", int(state["step_count"]))
    for key, a in state["state"].items():
        _write_array(g, key, a)


def _write_ema(f, model, ema):
    state = ema.state_dict()
    g = f.create_group("ema")
    set_attr(g, "decay", float(state["decay"]))
    set_attr(g, "warmup", bool(state["warmup"]))
    set_attr(g, "num_updates", int(state["num_updates"]))
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
            _write_array(g, key, arr)
        else:
            other[key] = value
    set_attr(g, "other", _dumps(other))


def _write(f, model, optimizer, ema, rng, history, extra):
    set_attr(f, "format", FORMAT)
    set_attr(f, "format_version", FORMAT_VERSION)
    set_attr(f, "model_class", type(model).__name__)
    set_attr(f, "model_config", _dumps(getattr(model, "config", {})))
    set_attr(f, "dtype", np.dtype(model.dtype).name)
    set_attr(f, "extra", _dumps(extra or {}))
    if rng is not None:
        set_attr(f, "rng_state", _dumps(rng.bit_generator.state))
    _write_weights(f.create_group("model"), model.state_dict())
    _write_history(f, history)
    if optimizer is not None:
        _write_optimizer(f, optimizer)
    if ema is not None:
        _write_ema(f, model, ema)


def _all_finite(a):
    return bool(to_host(get_xp(a).isfinite(a).all()))


def _check_finite_state(model, optimizer, ema):
    """save_checkpoint writes no NaN or inf: not in the weights, the EMA or the optimiser state."""
    arrays = [("model weights", model.flat()[0])]
    if ema is not None:
        arrays.append(("EMA weights", ema.shadow))
    if optimizer is not None:
        arrays += [(f"optimiser state {k}", a) for k, a in optimizer.state_dict()["state"].items()]
    for what, a in arrays:
        if not _all_finite(a):
            raise ValueError(f"save_checkpoint: the {what} contain NaN or inf; nothing was written")


def _file_image(model, optimizer, ema, rng, history, extra):
    """The whole HDF5 file as bytes, built in memory: no h5py call touches the disk. The HDF5 1.10
    format (read by h5py >= 2.8) keeps checksums on its own metadata too, and is four times
    smaller than the 1.8 one for many small chunked datasets."""
    h5py = _h5py()
    name = f"minidiff-checkpoint-{os.getpid()}-{os.urandom(8).hex()}"   # unique: HDF5 tracks open names
    with h5py.File(name, "w", driver="core", backing_store=False, libver=("v110", "v110")) as f:
        _write(f, model, optimizer, ema, rng, history, extra)
        sign(f)
        f.flush()
        return f.id.get_file_image()


def save_checkpoint(path, model, optimizer=None, ema=None, rng=None, history=None, extra=None):
    """Write model (+ optimiser, EMA, rng state, history, extra) to `path`, atomically.

    Raises OSError (ENOSPC, EIO ...) when the file cannot be written, with `path` as it was, and
    ValueError when the weights, the EMA or the optimiser state hold NaN or inf (nothing written).
    """
    if not hasattr(model, "state_dict"):
        raise TypeError(f"save_checkpoint: model must be a minidiff Layer, got {type(model).__name__}")
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"save_checkpoint: rng must be a numpy Generator, got {type(rng).__name__}")
    _check_finite_state(model, optimizer, ema)
    path = os.fspath(path)
    image = _file_image(model, optimizer, ema, rng, history, extra)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    remove_stale_temps(path)
    write_atomically(path, image)
    return path


# --- reading ---------------------------------------------------------------------------------
def _json(path, where, text, kind=dict):
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as e:
        fail(path, f"{where} is not valid JSON ({type(e).__name__}: {str(e)[:200]})")
    if not isinstance(value, kind):
        fail(path, f"{where} must be a JSON {'object' if kind is dict else kind.__name__}, "
                    f"got {type(value).__name__}")
    return value


def _count(path, what, value):
    if not 0 <= value <= 2 ** 53:
        fail(path, f"{what} {value}: expected an integer in [0, 2**53]")
    return int(value)


def _restore_rng(path, text):
    if text is None:
        return None
    state = _json(path, "rng_state", text)
    name = state.get("bit_generator")
    if name not in _BIT_GENERATORS:
        fail(path, f"unknown bit generator {name!r} in rng_state")
    bit_gen = getattr(np.random, name)()
    try:
        bit_gen.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        fail(path, f"rng_state is not a valid {name} state: {type(e).__name__}: {e}")
    return np.random.Generator(bit_gen)


def _history(path, arrays, text):
    other = _json(path, "history other", text)
    history = {}
    for key, a in arrays.items():
        if a.ndim != 1 or a.dtype != np.float64:
            fail(path, f"/history/{key} must be a 1-D float64 dataset, got {a.dtype} {a.shape}")
        history[key] = a.tolist()
    if set(history) & set(other):
        fail(path, f"history keys {sorted(set(history) & set(other))} are both datasets and JSON")
    history.update(other)
    return history


def _read(path, f, max_bytes, legacy):
    version = format_version(path, f, legacy)
    datasets, attributes, groups = inventory(path, f, max_bytes, version)
    attrs = {(where, name): read_attribute(path, obj, where, name, kind) for where, obj, name, kind in attributes}
    if version >= 2 and ("/", "sha256") not in attrs:
        fail(path, "no sha256 digest (a format-2 checkpoint has one)")
    if version < 2 and ("/", "sha256") in attrs:
        fail(path, "says format version 1 but carries a digest: corrupt")
    model_class, dtype_name = attrs[("/", "model_class")], attrs[("/", "dtype")]
    if dtype_name not in ("float32", "float64"):
        fail(path, f"dtype {dtype_name!r}, expected 'float32' or 'float64'")
    config = _json(path, "model_config", attrs[("/", "model_config")])
    declared = sum(math.prod(ds.shape) for where, ds in datasets if where.startswith("/model/"))
    check_model_config(model_class, config, declared, path=path)
    arrays = {where: read_dataset(path, where, ds) for where, ds in datasets}   # now bounded
    if version >= 2 and digest(attrs, arrays) != attrs[("/", "sha256")]:
        fail(path, "the contents do not match their sha256 digest: the file is corrupt "
                    "(or was changed after it was saved)")

    def group(prefix):
        return {where[len(prefix):]: a for where, a in arrays.items() if where.startswith(prefix)}

    optimizer = ema = None
    if "/optimizer" in groups:
        optimizer = {"type": attrs[("/optimizer", "type")],
                     "hyper": _json(path, "optimizer hyper", attrs[("/optimizer", "hyper")]),
                     "step_count": _count(path, "optimizer step_count", attrs[("/optimizer", "step_count")]),
                     "state": group("/optimizer/")}
    if "/ema" in groups:
        decay = attrs[("/ema", "decay")]
        if not 0.0 <= decay < 1.0:
            fail(path, f"EMA decay {decay}, expected a number in [0, 1)")
        ema = {"decay": decay, "warmup": attrs[("/ema", "warmup")],
               "num_updates": _count(path, "EMA num_updates", attrs[("/ema", "num_updates")]),
               "weights": group("/ema/")}
    return CheckpointData(path=path, version=version, model_class=model_class, model_config=config,
                          dtype=np.dtype(dtype_name), weights=group("/model/"), optimizer=optimizer, ema=ema,
                          rng=_restore_rng(path, attrs.get(("/", "rng_state"))),
                          history=_history(path, group("/history/"), attrs[("/history", "other")]),
                          extra=_json(path, "extra", attrs[("/", "extra")]))


def read_checkpoint(path, _legacy=False):
    """read_checkpoint(path) -> CheckpointData: everything checked and verified, nothing built.

    Raises CheckpointError (a ValueError) naming the path and the reason.
    """
    h5py = _h5py()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    size = os.path.getsize(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise CheckpointError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {e}") from e
    try:
        with f:
            return _read(path, f, size, _legacy)
    except CheckpointError:
        raise
    except (OSError, KeyError, TypeError, RuntimeError, ValueError, OverflowError, RecursionError) as e:
        raise CheckpointError(f"{path}: corrupt or incomplete checkpoint: {type(e).__name__}: {e}") from e


# --- the model config: checked before a model is built from it ------------------------------
SIZE_LIMITS = {              # the largest value a checkpoint's model_config may give each size
    "in_dim": 2 ** 16, "d_hid": 2 ** 16, "num_layers": 2 ** 10, "num_timesteps": 2 ** 20,
    "in_channels": 2 ** 16, "model_channels": 2 ** 16, "channel_multipliers": 2 ** 10,
    "num_blocks_per_level": 2 ** 10, "groups": 2 ** 16, "attention_heads": 2 ** 16, "num_classes": 2 ** 20,
}
SLACK_NUMBERS = 2 ** 24      # a rebuilt model may hold 16 x the file's weights + this many numbers


def _check_config_value(path, key, value):
    where = f"model_config {key}={value!r}"[:200]
    if key in SIZE_LIMITS:
        limit = SIZE_LIMITS[key]
        if key == "num_classes" and value is None:
            return
        if key == "channel_multipliers":
            items, what = (value if isinstance(value, list) and 1 <= len(value) <= 16 else [None]), \
                "a list of 1 to 16 integers"
        else:
            items, what = [value], "an integer"
        if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= limit for v in items):
            fail(path, f"{where}: expected {what} in [1, {limit}]")
    elif key == "seed":
        if not (value is None or isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 63):
            fail(path, f"{where}: expected None or an integer in [0, 2**63)")
    elif not (isinstance(value, (bool, str)) and len(str(value)) <= 64):
        fail(path, f"{where}: expected a bool or a short string")


def check_model_config(model_class, config, weights, path="checkpoint"):
    """Refuse a model_config that would build something other or bigger than the file's weights allow:
    an unknown class or argument, a value of the wrong type or out of SIZE_LIMITS, or a model of more
    than 16 x `weights` + SLACK_NUMBERS numbers (MODEL_NUMBERS bounds each class from its config)."""
    from .models import MODELS
    from .models.sizes import MODEL_NUMBERS

    if model_class not in MODELS or model_class not in MODEL_NUMBERS:
        fail(path, f"unknown model class {model_class!r}; known: {sorted(MODELS)}")
    signature = inspect.signature(MODELS[model_class])
    names = [n for n, p in signature.parameters.items() if n != "dtype" and p.kind == p.POSITIONAL_OR_KEYWORD]
    for key, value in config.items():
        if key not in names:
            fail(path, f"model_config has {key!r}, not an argument of {model_class}; expected some of {names}")
        _check_config_value(path, key, value)
    try:
        arguments = signature.bind(**config)
    except TypeError as e:
        fail(path, f"model_config {config} does not fit {model_class}: {e}")
    arguments.apply_defaults()
    numbers = MODEL_NUMBERS[model_class](arguments.arguments)
    if numbers > 16 * weights + SLACK_NUMBERS:
        fail(path, f"model_config {config} would build a {model_class} of up to {numbers:,} numbers, "
                    f"the file holds {weights:,} weights: too large")


# --- building and filling the model, optimiser and EMA -------------------------------------
def _check_arrays(path, what, named, model, dtype):
    own = {name: tuple(p.shape) for name, p, _ in model.named_parameters()}
    missing, extra = sorted(set(own) - set(named)), sorted(set(named) - set(own))
    if missing or extra:
        fail(path, f"{what} do not match the model {type(model).__name__}: missing {missing[:5]}, "
                    f"unexpected {extra[:5]}")
    for name, shape in own.items():
        a = named[name]
        if tuple(a.shape) != shape:
            fail(path, f"{what} {name} has shape {tuple(a.shape)}, the model expects {shape}")
        if a.dtype != dtype:
            fail(path, f"{what} {name} has dtype {a.dtype}, the checkpoint says {dtype}")
        if not np.isfinite(a).all():
            fail(path, f"{what} {name} contain NaN or inf")


def _build_model(data):
    from .models import MODELS

    try:
        return MODELS[data.model_class](**data.model_config, dtype=data.dtype)
    except (TypeError, ValueError) as e:
        fail(data.path, f"model_config {data.model_config}: {e}")


def _check_given_model(data, model):
    """A model passed in must be the saved one: class, config (but the init seed) and dtype."""
    path, name = data.path, type(model).__name__
    if name != data.model_class:
        fail(path, f"the checkpoint holds a {data.model_class}, the model given is a {name}")
    given = json.loads(_dumps(getattr(model, "config", {})))
    for key in sorted((set(given) | set(data.model_config)) - {"seed"}):
        saved, mine = data.model_config.get(key, "(absent)"), given.get(key, "(absent)")
        if saved != mine:
            fail(path, f"model_config {key}={saved!r} in the checkpoint, {key}={mine!r} in the model given")
    if np.dtype(model.dtype) != data.dtype:
        fail(path, f"the checkpoint holds {data.dtype.name} weights, the model given is {np.dtype(model.dtype).name}")


def _rebuild_optimizer(data, model, given):
    """A new optimiser holding the saved state (checked by the optimiser's own validation)."""
    from .optim import OPTIMIZERS

    path, saved = data.path, data.optimizer
    kind = saved["type"]
    if kind not in OPTIMIZERS:
        fail(path, f"unknown optimiser type {kind!r}; known: {sorted(OPTIMIZERS)}")
    if given is not None and type(given).__name__ != kind:
        fail(path, f"the checkpoint holds {kind} state, the optimiser given is {type(given).__name__}")
    cls, P = OPTIMIZERS[kind], model.num_params()
    unknown = sorted(set(saved["hyper"]) - set(cls.hyper_names))
    if unknown:
        fail(path, f"optimiser {kind}: unknown hyperparameters {unknown}; expected {list(cls.hyper_names)}")
    if set(saved["state"]) != set(cls.state_names):
        fail(path, f"optimiser {kind}: state arrays {sorted(saved['state'])}, expected {list(cls.state_names)}")
    for key, a in saved["state"].items():
        if a.shape != (P,) or a.dtype != data.dtype:
            fail(path, f"optimiser state {key} is {a.dtype} {a.shape}, expected {data.dtype} ({P},)")
        if not np.isfinite(a).all():
            fail(path, f"optimiser state {key} contains NaN or inf")
    hyper = {k: tuple(v) if isinstance(v, list) else v for k, v in saved["hyper"].items()}
    try:
        lr = hyper.pop("lr", 1.0)
        optimizer = cls(model, lr=lr if isinstance(lr, (int, float)) and lr != 0 else 1.0, **hyper)
        optimizer.load_state_dict({**saved, "hyper": saved["hyper"]})   # sets a saved lr of 0 too
    except (TypeError, ValueError) as e:
        fail(path, f"optimiser {kind} hyperparameters {saved['hyper']}: {e}")
    return optimizer


def _rebuild_ema(data, model):
    from .optim import EMA

    _check_arrays(data.path, "EMA weights", data.ema["weights"], model, data.dtype)
    ema = EMA(model, decay=data.ema["decay"])
    ema.load_state_dict({"decay": data.ema["decay"], "warmup": data.ema["warmup"],
                         "num_updates": data.ema["num_updates"], "shadow": _flatten(model, data.ema["weights"])})
    return ema


def restore_checkpoint(data, model=None, optimizer=None, ema=None):
    """restore_checkpoint(CheckpointData, model=None, optimizer=None, ema=None) -> Checkpoint.

    Builds the model from the checked config (or checks the one given: class, config, dtype),
    checks every array against it, builds the optimiser and EMA from the saved state; only when
    all of that holds does it copy the state into the objects given.
    """
    given = model is not None
    model = model if given else _build_model(data)
    _check_arrays(data.path, "weights", data.weights, model, data.dtype)   # a wrong shape named first
    if given:
        _check_given_model(data, model)
    new_opt = None if data.optimizer is None else _rebuild_optimizer(data, model, optimizer)
    new_ema = None if data.ema is None else _rebuild_ema(data, model)
    model.load_state_dict(data.weights)                          # everything checked: now change things
    if new_opt is not None and optimizer is not None:
        optimizer.load_state_dict(new_opt.state_dict())
        new_opt = optimizer
    if new_ema is not None and ema is not None:
        ema.load_state_dict(new_ema.state_dict())
        new_ema = ema
    return Checkpoint(path=data.path, model=model, model_class=data.model_class, model_config=data.model_config,
                      optimizer=new_opt if new_opt is not None else optimizer,
                      ema=new_ema if new_ema is not None else ema,
                      rng=data.rng, history=data.history, extra=data.extra)


def load_checkpoint(path, model=None, optimizer=None, ema=None):
    """load_checkpoint(path, model=None, optimizer=None, ema=None) -> Checkpoint.

    Loads weights into `model` (or rebuilds it as MODELS[model_class](**config) from the checked
    config), and the saved optimiser / EMA state into the ones given (or rebuilt ones).
    Raises CheckpointError (a ValueError) naming the path and the reason; on an error, nothing
    given has changed.
    """
    return restore_checkpoint(read_checkpoint(path), model=model, optimizer=optimizer, ema=ema)


def upgrade_checkpoint(path, out=None):
    """upgrade_checkpoint(path, out=None) -> out: rewrite a format-1 checkpoint (minidiff up to
    c83fd3d) as format 2, in place unless `out` is given. Format 1 has no checksums and keeps its
    strings where a corrupt file can hang HDF5: convert only files you trust."""
    ck = restore_checkpoint(read_checkpoint(path, _legacy=True))
    return save_checkpoint(out or path, ck.model, optimizer=ck.optimizer, ema=ck.ema, rng=ck.rng,
                           history=ck.history, extra=ck.extra)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m minidiff.checkpoint",
                                     description="Convert format-1 checkpoints (no checksums) to format 2, in place.")
    parser.add_argument("--upgrade", nargs="+", metavar="PATH", required=True, help="checkpoints you trust")
    for p in parser.parse_args().upgrade:
        print(f"{upgrade_checkpoint(p)}: format {FORMAT_VERSION}")
