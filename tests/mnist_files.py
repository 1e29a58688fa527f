"""MNIST's IDX files written for the tests (tests/data/test_mnist_data.py, tests/examples/test_mnist_example.py,
tests/examples/test_sampler_flags.py)."""
import gzip
import struct

import numpy as np


def idx_bytes(a, code=0x08):
    """The IDX encoding of array a: 0x0000, type code, ndim, big-endian dims, data."""
    dtype = {0x08: ">u1", 0x0D: ">f4", 0x0C: ">i4"}[code]
    return struct.pack(">HBB", 0, code, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) \
        + np.asarray(a).astype(dtype).tobytes()


def write_split(tmp_path, prefix, images, labels, gz):
    for kind, a in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
        data = idx_bytes(a)
        name = f"{prefix}-{kind}" + (".gz" if gz else "")
        (tmp_path / name).write_bytes(gzip.compress(data) if gz else data)


def tiny_mnist_with_judge(root, n_train, n_test, high=255, class_squares=False):
    """A data dir of n_train / n_test random 28x28 'digits' (uint8 in [0, high); with class_squares a bright
    square per class) and a one-epoch judge trained on it -> (root, root / "judge.h5")."""
    from minidiff.judge import build_judge
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = rng.integers(0, high, (n, 28, 28)).astype(np.uint8)
        for i, d in enumerate(labels if class_squares else ()):
            r, c = divmod(int(d), 5)
            images[i, 4 + 10 * r:12 + 10 * r, 2 + 5 * c:6 + 5 * c] = 255
        write_split(root, prefix, images, labels, gz=False)
    judge = root / "judge.h5"
    build_judge(out=str(judge), data_dir=str(root), epochs=1, progress=False, log=None)
    return root, judge
