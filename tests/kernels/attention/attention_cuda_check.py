"""The multi-head attention CUDA kernels vs the array-module reference, under the CUDA simulator.

Run by tests/kernels/test_cuda_simulator.py in a process with NUMBA_ENABLE_CUDASIM=1
(see conv/conv_cuda_check.py). Tiny shapes: the simulator runs every thread in Python.
"""
import os

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("needs NUMBA_ENABLE_CUDASIM=1 (run tests/kernels/test_cuda_simulator.py)", allow_module_level=True)

from numba import config  # noqa: E402

from layouts import assert_any_layout  # noqa: E402
from minidiff.kernels.attention import cuda as attention_cuda  # noqa: E402
from minidiff.kernels.attention.reference import (attention_backward_reference,  # noqa: E402
                                                  attention_forward_reference)
from minidiff.kernels.check import check_attention_errors, check_kernel  # noqa: E402

# (B, N, heads, d, dtype): one token, odd N, one and two heads, d = 1 .. 3, and
# B * heads * N = 18 > TPB = 16 so a second, partly idle block runs too
CASES = [(1, 1, 1, 2, np.float64), (1, 3, 1, 1, np.float32), (1, 5, 2, 3, np.float64),
         (2, 3, 2, 2, np.float32), (1, 4, 2, 1, np.float64), (2, 3, 3, 1, np.float64),
         (1, 5, 1, 3, np.float32)]


def _qkv(rng, B, N, heads, d, dtype):
    """qkv (B, N, 3C), spread out so the softmax is far from uniform, and scale = 1 / sqrt(d).

    scale is a Python float: an np.float64 scale would promote the reference's float32 to float64.
    """
    return (2 * rng.standard_normal((B, N, 3 * heads * d))).astype(dtype), float(1 / np.sqrt(d))


def test_simulator_is_on():
    assert config.ENABLE_CUDASIM and attention_cuda.TPB == 16


@pytest.mark.parametrize("case", CASES)
def test_attention_cuda_matches_reference(case):
    B, N, heads, d, dtype = case
    rng = np.random.default_rng(sum(case[:4]))
    qkv, scale = _qkv(rng, B, N, heads, d, dtype)
    out, P = check_kernel(attention_cuda.attention_forward_cuda, attention_forward_reference, (qkv, heads, scale))
    assert out.dtype == P.dtype == dtype
    assert out.shape == (B, N, heads * d) and P.shape == (B, heads, N, N)
    np.testing.assert_allclose(P.sum(axis=-1), 1, rtol=1e-5)                   # rows are softmaxes
    _, P_ref = attention_forward_reference(qkv, heads, scale)
    d_out = rng.standard_normal((B, N, heads * d)).astype(dtype)               # (B, N, C)
    d_qkv = check_kernel(attention_cuda.attention_backward_cuda, attention_backward_reference,
                         (d_out, qkv, P_ref, heads, scale))
    assert d_qkv.dtype == dtype and d_qkv.shape == qkv.shape


def test_attention_cuda_backward_is_the_gradient():
    """<d_out, out(qkv + e t)> changes at rate <d_qkv, t>: centred differences, float64."""
    rng = np.random.default_rng(1)
    qkv, scale = _qkv(rng, 1, 3, 2, 2, np.float64)
    d_out = rng.standard_normal((1, 3, 4))
    t = rng.standard_normal(qkv.shape)
    _, P = attention_cuda.attention_forward_cuda(qkv, 2, scale)
    d_qkv = attention_cuda.attention_backward_cuda(d_out, qkv, P, 2, scale)
    e = 1e-6
    f = [np.sum(d_out * attention_cuda.attention_forward_cuda(qkv + s * e * t, 2, scale)[0]) for s in (1, -1)]
    np.testing.assert_allclose((f[0] - f[1]) / (2 * e), np.sum(d_qkv * t), rtol=1e-6)


def test_attention_cuda_errors():
    check_attention_errors(attention_cuda.attention_forward_cuda, attention_cuda.attention_backward_cuda)
    with pytest.raises(TypeError, match="float32 or float64"):
        attention_cuda.attention_forward_cuda(np.zeros((1, 3, 12), np.int64), 2, 1.0)


def test_attention_cuda_any_layout():
    """qkv, d_out and P in Fortran order, permuted, strided or reversed: the C result."""
    rng = np.random.default_rng(5)
    qkv, scale = _qkv(rng, 2, 3, 2, 1, np.float64)
    _, P = assert_any_layout(lambda q: attention_cuda.attention_forward_cuda(q, 2, scale), [qkv],
                             name="attention_forward_cuda")
    assert_any_layout(lambda d, q, P: attention_cuda.attention_backward_cuda(d, q, P, 2, scale),
                      [rng.standard_normal((2, 3, 2)), qkv, P], name="attention_backward_cuda")
