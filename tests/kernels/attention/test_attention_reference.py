"""The attention reference's pieces (kernels/attention/reference.py)."""
import numpy as np

from minidiff.kernels.attention.reference import softmax


def test_softmax_rows_sum_to_one_and_stable():
    s = np.array([[1000.0, 1000.0, -1000.0], [0.0, 1.0, 2.0]])
    p = softmax(s)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0)
    np.testing.assert_allclose(p[0], [0.5, 0.5, 0.0])
