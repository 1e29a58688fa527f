"""The HDF5 side of a checkpoint: its schema, the checks of everything a file declares (bounded by
the file's size, before any data is read), reading the values, and the SHA-256 digest over them.

    inventory(path, f, max_bytes, version) -> (datasets, attributes, groups), every one checked:
        only the schema's groups and attributes, hard links only, float32/float64 datasets of at
        most MAX_NDIM dimensions, fletcher32 alone as filter, chunks of at most MAX_CHUNK_BYTES, no
        external or virtual storage, all within the file's size; attributes scalars of their type
    read_contents(...) -> ({(where, name): value}, {dataset path: array}), after inventory
    digest(attrs, arrays) -> hex SHA-256;  sign(f) stores it as the root attribute sha256
    set_attr(obj, name, value): strings fixed-length UTF-8 (see its docstring)
"""
import hashlib
import math

import numpy as np

FORMAT = "minidiff-checkpoint"
FORMAT_VERSION = 2

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
MAX_CHUNK_BYTES = 2 ** 20            # h5py's automatic chunks stay below 1 MiB
MAX_NDIM = 4                         # conv weights (out, in, kh, kw)


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, foreign, of another version or another model."""


def _h5py():
    import h5py
    return h5py


# --- the schema: the only groups and attributes a checkpoint has ----------------------------
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


def fail(path, message):
    raise CheckpointError(f"{path}: {message}")


# --- writing attributes and the digest -----------------------------------------------------
def set_attr(obj, name, value):
    """Strings as fixed-length UTF-8, kept in the object header (which HDF5 1.10 checksums): a
    variable-length string lives in HDF5's global heap, unchecksummed, and a corrupt global heap
    can make HDF5 (2.0.0) loop forever when it is read."""
    if isinstance(value, str):
        b = value.encode("utf-8")
        obj.attrs.create(name, data=np.array(b, dtype=f"S{max(1, len(b))}"),
                         dtype=_h5py().string_dtype("utf-8", max(1, len(b))))
    else:
        obj.attrs[name] = value


def sign(f):
    """Store the SHA-256 of the file's contents (read back through the same checks as a load)."""
    attrs, arrays = read_contents("<checkpoint being written>", f, max_bytes=math.inf, version=FORMAT_VERSION)
    set_attr(f, "sha256", digest(attrs, arrays))


# --- the structure, every declaration bounded, before any data -----------------------------
def _members(path, group, where):
    """[(name, object)] of a group; soft and external links (which open other files) are refused."""
    h5py = _h5py()
    out = []
    for name in group:
        link = group.get(name, getlink=True)
        if not isinstance(link, h5py.HardLink):
            fail(path, f"{where}/{name} is a {type(link).__name__}: a checkpoint has no links")
        out.append((name, group[name]))
    return out


def _check_attribute(path, obj, where, name, max_bytes, version=FORMAT_VERSION):
    """The attribute's declared type and size, without reading it; returns its Python type.
    Variable-length strings (in the global heap, see set_attr) only in format 1."""
    h5py = _h5py()
    allowed = _ATTRS[where]
    if name not in allowed:
        fail(path, f"unexpected attribute {name!r} on {where}; expected some of {sorted(allowed)}")
    kind, aid = allowed[name], obj.attrs.get_id(name)
    if aid.shape != ():
        fail(path, f"attribute {where}:{name} declares shape {aid.shape}, expected a single {kind.__name__}")
    dt = aid.dtype
    info = h5py.check_string_dtype(dt)
    ok = {str: info is not None and (info.length is not None or version < 2),
          int: dt.kind in "iu" and dt.itemsize <= 8, float: dt.kind == "f" and dt.itemsize <= 8,
          bool: dt.kind == "b"}[kind]
    if not ok:
        fail(path, f"attribute {where}:{name} has dtype {dt}, expected a {kind.__name__}")
    if max(dt.itemsize, aid.get_storage_size()) > max_bytes:
        fail(path, f"attribute {where}:{name} declares more bytes than the whole file ({max_bytes:,})")
    return kind


def _check_dataset(path, ds, where, max_bytes, version):
    """dtype, shape, storage, chunks and filters of one dataset, without reading it; its bytes."""
    h5py = _h5py()
    if ds.dtype not in _FLOATS:
        fail(path, f"{where} has dtype {ds.dtype}, expected float32 or float64 (little-endian)")
    shape = ds.shape
    if shape is None or len(shape) > MAX_NDIM:
        fail(path, f"{where} declares shape {shape}, expected at most {MAX_NDIM} dimensions")
    nbytes = math.prod(shape) * ds.dtype.itemsize
    if nbytes > max_bytes:
        fail(path, f"{where} declares shape {shape} ({nbytes:,} bytes), more than the whole file "
                    f"({max_bytes:,} bytes)")
    dcpl = ds.id.get_create_plist()
    if dcpl.get_external_count():
        fail(path, f"{where} keeps its data in external files; a checkpoint holds its own data")
    if dcpl.get_layout() == h5py.h5d.VIRTUAL:
        fail(path, f"{where} is a virtual dataset; a checkpoint holds its own data")
    filters = [dcpl.get_filter(i) for i in range(dcpl.get_nfilters())]
    codes = [flt[0] for flt in filters]
    if version >= 2 and codes != [h5py.h5z.FILTER_FLETCHER32]:
        names = [flt[3].decode(errors="replace") for flt in filters]
        fail(path, f"{where} has filters {names}, expected the fletcher32 checksum alone" if filters
             else f"{where} has no fletcher32 checksum")
    if version < 2 and codes:
        fail(path, f"{where} has filters {codes}; version-1 checkpoints have none")
    if ds.chunks is not None:
        chunk_bytes = math.prod(ds.chunks) * ds.dtype.itemsize
        if chunk_bytes > MAX_CHUNK_BYTES:
            fail(path, f"{where} declares chunks {ds.chunks} ({chunk_bytes:,} bytes), "
                        f"at most {MAX_CHUNK_BYTES:,} are allowed")
    stored = ds.id.get_storage_size()
    if nbytes and stored < nbytes:
        fail(path, f"{where} declares {nbytes:,} bytes but stores {stored:,} (truncated?)")
    return nbytes


def inventory(path, f, max_bytes, version):
    """(datasets [(where, ds)], attributes [(where, obj, name, type)], groups) of the whole file,
    each checked: only the schema's groups and attributes, float datasets within the file's size."""
    h5py = _h5py()
    attributes = [("/", f, name, _check_attribute(path, f, "/", name, max_bytes, version)) for name in f.attrs]
    datasets, groups, total = [], set(), 0
    for name, group in _members(path, f, ""):
        where = "/" + name
        if where not in _ATTRS or not isinstance(group, h5py.Group):
            fail(path, f"unexpected {where} ({type(group).__name__}); a checkpoint holds only the groups "
                        f"{sorted(k for k in _ATTRS if k != '/')}")
        groups.add(where)
        attributes += [(where, group, a, _check_attribute(path, group, where, a, max_bytes, version))
                       for a in group.attrs]
        for key, ds in _members(path, group, where):
            if not isinstance(ds, h5py.Dataset):
                kind = "group" if isinstance(ds, h5py.Group) else type(ds).__name__
                fail(path, f"{where}/{key} is a {kind}; {where} holds only datasets")
            total += _check_dataset(path, ds, f"{where}/{key}", max_bytes, version)
            if total > max_bytes:
                fail(path, f"the datasets declare {total:,} bytes, more than the whole file ({max_bytes:,})")
            datasets.append((f"{where}/{key}", ds))
    for where in ("/model", "/history"):
        if where not in groups:
            fail(path, f"no {where} group")
    present = {(where, name) for where, _, name, _ in attributes}
    for where, names in _REQUIRED.items():
        missing = [n for n in names if where in groups | {"/"} and (where, n) not in present]
        if missing:
            fail(path, f"{where} lacks the attributes {missing}")
    return datasets, attributes, groups


def format_version(path, f, legacy=False):
    """The format version, after checking that the file says it is a minidiff checkpoint. Format 1
    (variable-length strings, no checksums) is read only when `legacy` (upgrade_checkpoint)."""
    h5py = _h5py()
    if "format" not in f.attrs:
        fail(path, f"not a minidiff checkpoint (no format={FORMAT!r} attribute)")
    aid = f.attrs.get_id("format")
    info = h5py.check_string_dtype(aid.dtype)
    if aid.shape != () or info is None:
        fail(path, "not a minidiff checkpoint (its format attribute is not a string)")
    version = None
    if "format_version" in f.attrs:
        version = read_attribute(path, f, "/", "format_version", _check_attribute(path, f, "/", "format_version", 8))
    if info.length is None and not legacy:       # not read: see set_attr
        if version == 1:
            fail(path, f"checkpoint format version 1 (minidiff up to c83fd3d, no checksums); this minidiff loads "
                        f"version {FORMAT_VERSION}. If you trust the file, convert it once with "
                        f"`python -m minidiff.checkpoint --upgrade {path}`")
        fail(path, "not a minidiff checkpoint (a variable-length format attribute)")
    if read_attribute(path, f, "/", "format", _check_attribute(path, f, "/", "format", 2 ** 10, 1)) != FORMAT:
        fail(path, f"not a minidiff checkpoint (format is not {FORMAT!r})")
    if version is None:
        fail(path, "no format_version attribute")
    if version not in ((1, FORMAT_VERSION) if legacy else (FORMAT_VERSION,)):
        fail(path, f"checkpoint format version {version}, this minidiff reads version {FORMAT_VERSION}")
    return version


# --- the values and their digest -----------------------------------------------------------
def read_attribute(path, obj, where, name, kind):
    value = obj.attrs[name]
    if kind is str:
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        if not isinstance(value, str):
            fail(path, f"attribute {where}:{name} is not a string")
        return value
    return kind(value)


def read_dataset(path, where, ds):
    try:
        return np.asarray(ds[()])
    except OSError as e:
        fail(path, f"reading {where} failed (a fletcher32 checksum error means a corrupt file): {e}")


def read_contents(path, f, max_bytes, version):
    """({(where, attribute): value}, {dataset path: array}) of the whole file, each declaration
    checked before anything is read; the sha256 attribute itself is left out."""
    datasets, attributes, _ = inventory(path, f, max_bytes, version)
    attrs = {(where, name): read_attribute(path, obj, where, name, kind)
             for where, obj, name, kind in attributes if name != "sha256"}
    return attrs, {where: read_dataset(path, where, ds) for where, ds in datasets}


def _canonical(value):
    if isinstance(value, (bool, np.bool_)):
        return b"b1" if value else b"b0"
    if isinstance(value, (int, np.integer)):
        return b"i" + str(int(value)).encode()
    if isinstance(value, (float, np.floating)):
        return b"f" + repr(float(value)).encode()
    return b"s" + value.encode("utf-8")


def digest(attrs, arrays):
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
