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
Format version 1 (minidiff up to c83fd3d: no checksums, variable-length strings) is refused by
load_checkpoint; `python -m minidiff.checkpoint --upgrade PATH` converts a file you trust.
"""
import hashlib
import inspect
import json
import math
import os
import re
import secrets
from dataclasses import dataclass, field

import numpy as np

from .backend import get_xp, to_host

FORMAT = "minidiff-checkpoint"
FORMAT_VERSION = 2
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
MAX_CHUNK_BYTES = 2 ** 20            # h5py's automatic chunks stay below 1 MiB
MAX_NDIM = 4                         # conv weights (out, in, kh, kw)


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


# --- the file's schema: the only groups and attributes a checkpoint has ------------------
_ATTRS = {                            # where -> {attribute: its type}
    "/": {"format": str, "format_version": int, "model_class": str, "model_config": str, "dtype": str,
          "extra": str, "rng_state": str, "sha256": str},
    "/model": {},
    "/ema": {"decay": float, "warmup": bool, "num_updates": int},
    "/optimizer": {"type": str, "hyper": str, "step_count": int},
    "/history": {"other": str},
}
_REQUIRED = {"/": ("format", "format_version", "model_class", "model_config", "dtype", "extra"),
             "/ema": ("decay", "warmup", "num_updates"), "/optimizer": ("type", "hyper", "step_count"),
             "/history": ("other",)}


# --- writing ---------------------------------------------------------------
def _write_array(group, name, a):
    group.create_dataset(name, data=np.ascontiguousarray(to_host(a)), fletcher32=True)


def _write_weights(group, named):
    for name, a in named.items():
        _write_array(group, name, a)


def _set_attr(obj, name, value):
    """Strings as fixed-length UTF-8, kept in the object header (which HDF5 1.10 checksums): a
    variable-length string lives in HDF5's global heap, unchecksummed, and a corrupt global heap
    can make HDF5 (2.0.0) loop forever when it is read."""
    if isinstance(value, str):
        b = value.encode("utf-8")
        obj.attrs.create(name, data=np.array(b, dtype=f"S{max(1, len(b))}"),
                         dtype=_h5py().string_dtype("utf-8", max(1, len(b))))
    else:
        obj.attrs[name] = value


def _write_optimizer(f, optimizer):
    state = optimizer.state_dict()
    g = f.create_group("optimizer")
    _set_attr(g, "type", state["type"])
    _set_attr(g, "hyper", _dumps(state["hyper"]))
    _set_attr(g, "step_count", int(state["step_count"]))
    for key, a in state["state"].items():
        _write_array(g, key, a)


def _write_ema(f, model, ema):
    state = ema.state_dict()
    g = f.create_group("ema")
    _set_attr(g, "decay", float(state["decay"]))
    _set_attr(g, "warmup", bool(state["warmup"]))
    _set_attr(g, "num_updates", int(state["num_updates"]))
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
    _set_attr(g, "other", _dumps(other))


def _write(f, model, optimizer, ema, rng, history, extra):
    _set_attr(f, "format", FORMAT)
    _set_attr(f, "format_version", FORMAT_VERSION)
    _set_attr(f, "model_class", type(model).__name__)
    _set_attr(f, "model_config", _dumps(getattr(model, "config", {})))
    _set_attr(f, "dtype", np.dtype(model.dtype).name)
    _set_attr(f, "extra", _dumps(extra or {}))
    if rng is not None:
        _set_attr(f, "rng_state", _dumps(rng.bit_generator.state))
    _write_weights(f.create_group("model"), model.state_dict())
    _write_history(f, history)
    if optimizer is not None:
        _write_optimizer(f, optimizer)
    if ema is not None:
        _write_ema(f, model, ema)


def _sign(f):
    """Store the SHA-256 of the file's contents (read back through the same checks as a load)."""
    attrs, arrays = _read_contents("<checkpoint being written>", f, max_bytes=math.inf, version=FORMAT_VERSION)
    _set_attr(f, "sha256", _digest(attrs, arrays))


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
    name = f"minidiff-checkpoint-{os.getpid()}-{secrets.token_hex(8)}"   # unique: HDF5 tracks open names
    with h5py.File(name, "w", driver="core", backing_store=False, libver=("v110", "v110")) as f:
        _write(f, model, optimizer, ema, rng, history, extra)
        _sign(f)
        f.flush()
        return f.id.get_file_image()


def _temp_pattern(name):
    """`.<name>.<random>.tmp`: our temp files, and mkstemp's of earlier versions."""
    return re.compile(r"\." + re.escape(name) + r"\.[A-Za-z0-9_]+\.tmp")


def remove_stale_temps(path):
    """Remove the temp files `.<name>.*.tmp` that interrupted saves of `path` left; their names."""
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    pattern, removed = _temp_pattern(name), []
    for entry in os.listdir(directory):
        if pattern.fullmatch(entry):
            try:
                os.remove(os.path.join(directory, entry))
                removed.append(entry)
            except FileNotFoundError:
                pass
    return removed


def _fsync_directory(directory):
    """Make the rename durable; not every platform can open a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomically(path, image):
    """Write `image` to a new temp file beside `path` (mode from the umask), fsync, rename over path."""
    directory, name = os.path.split(os.path.abspath(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:
            continue
    try:
        try:
            view = memoryview(image)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


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
    _write_atomically(path, image)
    return path


# --- reading, 1: the file's structure, every declaration bounded, before any data ----------
def _fail(path, message):
    raise CheckpointError(f"{path}: {message}")


def _members(path, group, where):
    """[(name, object)] of a group; soft and external links (which open other files) are refused."""
    h5py = _h5py()
    out = []
    for name in group:
        link = group.get(name, getlink=True)
        if not isinstance(link, h5py.HardLink):
            _fail(path, f"{where}/{name} is a {type(link).__name__}: a checkpoint has no links")
        out.append((name, group[name]))
    return out


def _check_attribute(path, obj, where, name, max_bytes, version=FORMAT_VERSION):
    """The attribute's declared type and size, without reading it; returns its Python type.
    Variable-length strings (in the global heap, see _set_attr) only in format 1."""
    h5py = _h5py()
    allowed = _ATTRS[where]
    if name not in allowed:
        _fail(path, f"unexpected attribute {name!r} on {where}; expected some of {sorted(allowed)}")
    kind, aid = allowed[name], obj.attrs.get_id(name)
    if aid.shape != ():
        _fail(path, f"attribute {where}:{name} declares shape {aid.shape}, expected a single {kind.__name__}")
    dt = aid.dtype
    info = h5py.check_string_dtype(dt)
    ok = {str: info is not None and (info.length is not None or version < 2), int: dt.kind in "iu" and dt.itemsize <= 8,
          float: dt.kind == "f" and dt.itemsize <= 8, bool: dt.kind == "b"}[kind]
    if not ok:
        _fail(path, f"attribute {where}:{name} has dtype {dt}, expected a {kind.__name__}")
    if max(dt.itemsize, aid.get_storage_size()) > max_bytes:
        _fail(path, f"attribute {where}:{name} declares more bytes than the whole file ({max_bytes:,})")
    return kind


def _check_dataset(path, ds, where, max_bytes, version):
    """dtype, shape, storage, chunks and filters of one dataset, without reading it; its bytes."""
    h5py = _h5py()
    if ds.dtype not in _FLOATS:
        _fail(path, f"{where} has dtype {ds.dtype}, expected float32 or float64 (little-endian)")
    shape = ds.shape
    if shape is None or len(shape) > MAX_NDIM:
        _fail(path, f"{where} declares shape {shape}, expected at most {MAX_NDIM} dimensions")
    nbytes = math.prod(shape) * ds.dtype.itemsize
    if nbytes > max_bytes:
        _fail(path, f"{where} declares shape {shape} ({nbytes:,} bytes), more than the whole file "
                    f"({max_bytes:,} bytes)")
    dcpl = ds.id.get_create_plist()
    if dcpl.get_external_count():
        _fail(path, f"{where} keeps its data in external files; a checkpoint holds its own data")
    if dcpl.get_layout() == h5py.h5d.VIRTUAL:
        _fail(path, f"{where} is a virtual dataset; a checkpoint holds its own data")
    filters = [dcpl.get_filter(i) for i in range(dcpl.get_nfilters())]
    codes = [flt[0] for flt in filters]
    if version >= 2 and codes != [h5py.h5z.FILTER_FLETCHER32]:
        names = [flt[3].decode(errors="replace") for flt in filters]
        _fail(path, f"{where} has filters {names}, expected the fletcher32 checksum alone" if filters
              else f"{where} has no fletcher32 checksum")
    if version < 2 and codes:
        _fail(path, f"{where} has filters {codes}; version-1 checkpoints have none")
    if ds.chunks is not None:
        chunk_bytes = math.prod(ds.chunks) * ds.dtype.itemsize
        if chunk_bytes > MAX_CHUNK_BYTES:
            _fail(path, f"{where} declares chunks {ds.chunks} ({chunk_bytes:,} bytes), "
                        f"at most {MAX_CHUNK_BYTES:,} are allowed")
    stored = ds.id.get_storage_size()
    if nbytes and stored < nbytes:
        _fail(path, f"{where} declares {nbytes:,} bytes but stores {stored:,} (truncated?)")
    return nbytes


def _inventory(path, f, max_bytes, version):
    """(datasets [(where, ds)], attributes [(where, obj, name, type)], groups) of the whole file,
    each checked: only the schema's groups and attributes, float datasets within the file's size."""
    h5py = _h5py()
    attributes = [("/", f, name, _check_attribute(path, f, "/", name, max_bytes, version)) for name in f.attrs]
    datasets, groups, total = [], set(), 0
    for name, group in _members(path, f, ""):
        where = "/" + name
        if where not in _ATTRS or not isinstance(group, h5py.Group):
            _fail(path, f"unexpected {where} ({type(group).__name__}); a checkpoint holds only the groups "
                        f"{sorted(k for k in _ATTRS if k != '/')}")
        groups.add(where)
        attributes += [(where, group, a, _check_attribute(path, group, where, a, max_bytes, version))
                       for a in group.attrs]
        for key, ds in _members(path, group, where):
            if not isinstance(ds, h5py.Dataset):
                kind = "group" if isinstance(ds, h5py.Group) else type(ds).__name__
                _fail(path, f"{where}/{key} is a {kind}; {where} holds only datasets")
            total += _check_dataset(path, ds, f"{where}/{key}", max_bytes, version)
            if total > max_bytes:
                _fail(path, f"the datasets declare {total:,} bytes, more than the whole file ({max_bytes:,})")
            datasets.append((f"{where}/{key}", ds))
    for where in ("/model", "/history"):
        if where not in groups:
            _fail(path, f"no {where} group")
    present = {(where, name) for where, _, name, _ in attributes}
    for where, names in _REQUIRED.items():
        missing = [n for n in names if where in groups | {"/"} and (where, n) not in present]
        if missing:
            _fail(path, f"{where} lacks the attributes {missing}")
    return datasets, attributes, groups


# --- reading, 2: the values --------------------------------------------------------------
def _read_attribute(path, obj, where, name, kind):
    value = obj.attrs[name]
    if kind is str:
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        if not isinstance(value, str):
            _fail(path, f"attribute {where}:{name} is not a string")
        return value
    return kind(value)


def _read_dataset(path, where, ds):
    try:
        return np.asarray(ds[()])
    except OSError as e:
        _fail(path, f"reading {where} failed (a fletcher32 checksum error means a corrupt file): {e}")


def _read_contents(path, f, max_bytes, version):
    """({(where, attribute): value}, {dataset path: array}) of the whole file, each declaration
    checked before anything is read; the sha256 attribute itself is left out."""
    datasets, attributes, _ = _inventory(path, f, max_bytes, version)
    attrs = {(where, name): _read_attribute(path, obj, where, name, kind)
             for where, obj, name, kind in attributes if name != "sha256"}
    return attrs, {where: _read_dataset(path, where, ds) for where, ds in datasets}


def _canonical(value):
    if isinstance(value, (bool, np.bool_)):
        return b"b1" if value else b"b0"
    if isinstance(value, (int, np.integer)):
        return b"i" + str(int(value)).encode()
    if isinstance(value, (float, np.floating)):
        return b"f" + repr(float(value)).encode()
    return b"s" + value.encode("utf-8")


def _digest(attrs, arrays):
    """SHA-256 over every attribute and every dataset (name, dtype, shape, bytes), in a fixed order."""
    h = hashlib.sha256()

    def put(b):
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)

    for (where, name), value in sorted(attrs.items()):
        if name != "sha256":
            put(b"attribute"), put(where.encode()), put(name.encode()), put(_canonical(value))
    for where, a in sorted(arrays.items()):
        a = np.ascontiguousarray(a)
        put(b"dataset"), put(where.encode()), put(a.dtype.str.encode()), put(repr(a.shape).encode())
        put(a.tobytes())
    return h.hexdigest()


def _json(path, where, text, kind=dict):
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as e:
        _fail(path, f"{where} is not valid JSON ({type(e).__name__}: {str(e)[:200]})")
    if not isinstance(value, kind):
        _fail(path, f"{where} must be a JSON {'object' if kind is dict else kind.__name__}, "
                    f"got {type(value).__name__}")
    return value


def _count(path, what, value):
    if not 0 <= value <= 2 ** 53:
        _fail(path, f"{what} {value}: expected an integer in [0, 2**53]")
    return int(value)


def _format_version(path, f, legacy=False):
    """The format version, after checking that the file says it is a minidiff checkpoint. Format 1
    (variable-length strings, no checksums) is read only when `legacy` (upgrade_checkpoint)."""
    h5py = _h5py()
    if "format" not in f.attrs:
        _fail(path, f"not a minidiff checkpoint (no format={FORMAT!r} attribute)")
    aid = f.attrs.get_id("format")
    info = h5py.check_string_dtype(aid.dtype)
    if aid.shape != () or info is None:
        _fail(path, "not a minidiff checkpoint (its format attribute is not a string)")
    version = None
    if "format_version" in f.attrs:
        version = _read_attribute(path, f, "/", "format_version", _check_attribute(path, f, "/", "format_version", 8))
    if info.length is None and not legacy:       # not read: see _set_attr
        if version == 1:
            _fail(path, f"checkpoint format version 1 (minidiff up to c83fd3d, no checksums); this minidiff loads "
                        f"version {FORMAT_VERSION}. If you trust the file, convert it once with "
                        f"`python -m minidiff.checkpoint --upgrade {path}`")
        _fail(path, "not a minidiff checkpoint (a variable-length format attribute)")
    if _read_attribute(path, f, "/", "format", _check_attribute(path, f, "/", "format", 2 ** 10, 1)) != FORMAT:
        _fail(path, f"not a minidiff checkpoint (format is not {FORMAT!r})")
    if version is None:
        _fail(path, "no format_version attribute")
    if version not in ((1, FORMAT_VERSION) if legacy else (FORMAT_VERSION,)):
        _fail(path, f"checkpoint format version {version}, this minidiff reads version {FORMAT_VERSION}")
    return version


def _restore_rng(path, text):
    if text is None:
        return None
    state = _json(path, "rng_state", text)
    name = state.get("bit_generator")
    if name not in _BIT_GENERATORS:
        _fail(path, f"unknown bit generator {name!r} in rng_state")
    bit_gen = getattr(np.random, name)()
    try:
        bit_gen.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        _fail(path, f"rng_state is not a valid {name} state: {type(e).__name__}: {e}")
    return np.random.Generator(bit_gen)


def _history(path, arrays, text):
    other = _json(path, "history other", text)
    history = {}
    for key, a in arrays.items():
        if a.ndim != 1 or a.dtype != np.float64:
            _fail(path, f"/history/{key} must be a 1-D float64 dataset, got {a.dtype} {a.shape}")
        history[key] = a.tolist()
    if set(history) & set(other):
        _fail(path, f"history keys {sorted(set(history) & set(other))} are both datasets and JSON")
    history.update(other)
    return history


def _read(path, f, max_bytes, legacy):
    version = _format_version(path, f, legacy)
    datasets, attributes, groups = _inventory(path, f, max_bytes, version)
    attrs = {(where, name): _read_attribute(path, obj, where, name, kind) for where, obj, name, kind in attributes}
    if version >= 2 and ("/", "sha256") not in attrs:
        _fail(path, "no sha256 digest (a format-2 checkpoint has one)")
    if version < 2 and ("/", "sha256") in attrs:
        _fail(path, "says format version 1 but carries a digest: corrupt")
    model_class, dtype_name = attrs[("/", "model_class")], attrs[("/", "dtype")]
    if dtype_name not in ("float32", "float64"):
        _fail(path, f"dtype {dtype_name!r}, expected 'float32' or 'float64'")
    config = _json(path, "model_config", attrs[("/", "model_config")])
    declared = sum(math.prod(ds.shape) for where, ds in datasets if where.startswith("/model/"))
    check_model_config(model_class, config, declared, path=path)
    arrays = {where: _read_dataset(path, where, ds) for where, ds in datasets}   # now bounded
    if version >= 2 and _digest(attrs, arrays) != attrs[("/", "sha256")]:
        _fail(path, "the contents do not match their sha256 digest: the file is corrupt "
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
            _fail(path, f"EMA decay {decay}, expected a number in [0, 1)")
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


def _mlp_numbers(a):
    """An upper bound on the numbers MLP(**a) allocates: weights + the sinusoid tables (T, d)."""
    i, d, T, L = a["in_dim"], a["d_hid"], a["num_timesteps"], a["num_layers"]
    return L * (max(i, d) * d + d * d + 2 * d + T * d) + d * i + i


def _unet_numbers(a):
    """An upper bound on the numbers UNet(**a) allocates (every conv counted at the widest level)."""
    mc, i, T, nb, L = a["model_channels"], a["in_channels"], a["num_timesteps"], a["num_blocks_per_level"], \
        len(a["channel_multipliers"])
    C, E, K = mc * max(a["channel_multipliers"]), 4 * mc, a["num_classes"] or 0
    block = 45 * C * C + E * C + 10 * C        # two 3x3 convs (in <= 2C) + a 3x3 skip, norms, emb Dense
    return ((2 * L * nb + 2) * block + L * (25 * C * C + 2 * C) + 15 * C * C + 11 * C
            + T * mc + mc * E + E * E + 2 * E + (K + 1) * E + 18 * i * C + 2 * C + 2 * i)


def _lenet_numbers(a):
    return 61_000 + 85 * a["num_classes"]


MODEL_NUMBERS = {"MLP": _mlp_numbers, "UNet": _unet_numbers, "LeNet5": _lenet_numbers}


def _check_config_value(path, key, value):
    where = f"model_config {key}={value!r}"[:200]
    if key in SIZE_LIMITS:
        limit = SIZE_LIMITS[key]
        items = value if key == "channel_multipliers" and isinstance(value, list) and 1 <= len(value) <= 16 \
            else [value]
        if key == "num_classes" and value is None:
            return
        if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= limit for v in items):
            _fail(path, f"{where}: expected {'a list of 1 to 16 integers' if key == 'channel_multipliers' else 'an integer'}"
                        f" in [1, {limit}]")
    elif key == "seed":
        if not (value is None or isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 63):
            _fail(path, f"{where}: expected None or an integer in [0, 2**63)")
    elif not (isinstance(value, (bool, str)) and len(str(value)) <= 64):
        _fail(path, f"{where}: expected a bool or a short string")


def check_model_config(model_class, config, weights, path="checkpoint"):
    """Refuse a model_config that would build something other or bigger than the file's weights allow:
    an unknown class or argument, a value of the wrong type or out of SIZE_LIMITS, or a model of more
    than 16 x `weights` + SLACK_NUMBERS numbers (MODEL_NUMBERS bounds each class from its config)."""
    from .models import MODELS

    if model_class not in MODELS or model_class not in MODEL_NUMBERS:
        _fail(path, f"unknown model class {model_class!r}; known: {sorted(MODELS)}")
    signature = inspect.signature(MODELS[model_class])
    names = [n for n, p in signature.parameters.items() if n != "dtype" and p.kind == p.POSITIONAL_OR_KEYWORD]
    for key, value in config.items():
        if key not in names:
            _fail(path, f"model_config has {key!r}, not an argument of {model_class}; expected some of {names}")
        _check_config_value(path, key, value)
    try:
        arguments = signature.bind(**config)
    except TypeError as e:
        _fail(path, f"model_config {config} does not fit {model_class}: {e}")
    arguments.apply_defaults()
    numbers = MODEL_NUMBERS[model_class](arguments.arguments)
    if numbers > 16 * weights + SLACK_NUMBERS:
        _fail(path, f"model_config {config} would build a {model_class} of up to {numbers:,} numbers, "
                    f"the file holds {weights:,} weights: too large")


# --- building and filling the model, optimiser and EMA -------------------------------------
def _check_arrays(path, what, named, model, dtype):
    own = {name: tuple(p.shape) for name, p, _ in model.named_parameters()}
    missing, extra = sorted(set(own) - set(named)), sorted(set(named) - set(own))
    if missing or extra:
        _fail(path, f"{what} do not match the model {type(model).__name__}: missing {missing[:5]}, "
                    f"unexpected {extra[:5]}")
    for name, shape in own.items():
        a = named[name]
        if tuple(a.shape) != shape:
            _fail(path, f"{what} {name} has shape {tuple(a.shape)}, the model expects {shape}")
        if a.dtype != dtype:
            _fail(path, f"{what} {name} has dtype {a.dtype}, the checkpoint says {dtype}")
        if not np.isfinite(a).all():
            _fail(path, f"{what} {name} contain NaN or inf")


def _build_model(data):
    from .models import MODELS

    try:
        return MODELS[data.model_class](**data.model_config, dtype=data.dtype)
    except (TypeError, ValueError) as e:
        _fail(data.path, f"model_config {data.model_config}: {e}")


def _check_given_model(data, model):
    """A model passed in must be the saved one: class, config (but the init seed) and dtype."""
    path, name = data.path, type(model).__name__
    if name != data.model_class:
        _fail(path, f"the checkpoint holds a {data.model_class}, the model given is a {name}")
    given = json.loads(_dumps(getattr(model, "config", {})))
    for key in sorted((set(given) | set(data.model_config)) - {"seed"}):
        saved, mine = data.model_config.get(key, "(absent)"), given.get(key, "(absent)")
        if saved != mine:
            _fail(path, f"model_config {key}={saved!r} in the checkpoint, {key}={mine!r} in the model given")
    if np.dtype(model.dtype) != data.dtype:
        _fail(path, f"the checkpoint holds {data.dtype.name} weights, the model given is {np.dtype(model.dtype).name}")


def _rebuild_optimizer(data, model, given):
    """A new optimiser holding the saved state (checked by the optimiser's own validation)."""
    from .optim import OPTIMIZERS

    path, saved = data.path, data.optimizer
    kind = saved["type"]
    if kind not in OPTIMIZERS:
        _fail(path, f"unknown optimiser type {kind!r}; known: {sorted(OPTIMIZERS)}")
    if given is not None and type(given).__name__ != kind:
        _fail(path, f"the checkpoint holds {kind} state, the optimiser given is {type(given).__name__}")
    cls, P = OPTIMIZERS[kind], model.num_params()
    unknown = sorted(set(saved["hyper"]) - set(cls.hyper_names))
    if unknown:
        _fail(path, f"optimiser {kind}: unknown hyperparameters {unknown}; expected {list(cls.hyper_names)}")
    if set(saved["state"]) != set(cls.state_names):
        _fail(path, f"optimiser {kind}: state arrays {sorted(saved['state'])}, expected {list(cls.state_names)}")
    for key, a in saved["state"].items():
        if a.shape != (P,) or a.dtype != data.dtype:
            _fail(path, f"optimiser state {key} is {a.dtype} {a.shape}, expected {data.dtype} ({P},)")
        if not np.isfinite(a).all():
            _fail(path, f"optimiser state {key} contains NaN or inf")
    hyper = {k: tuple(v) if isinstance(v, list) else v for k, v in saved["hyper"].items()}
    try:
        lr = hyper.pop("lr", 1.0)
        optimizer = cls(model, lr=lr if isinstance(lr, (int, float)) and lr != 0 else 1.0, **hyper)
        optimizer.load_state_dict({**saved, "hyper": saved["hyper"]})   # sets a saved lr of 0 too
    except (TypeError, ValueError) as e:
        _fail(path, f"optimiser {kind} hyperparameters {saved['hyper']}: {e}")
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
    if model is None:
        model = _build_model(data)
        _check_arrays(data.path, "weights", data.weights, model, data.dtype)
    else:
        _check_arrays(data.path, "weights", data.weights, model, data.dtype)   # names the weight first
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
