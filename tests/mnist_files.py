"""MNIST's IDX files written for the tests (tests/data/test_mnist_data.py, tests/examples/test_mnist_example.py)."""
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
