"""The CUDA convolution (kernels/conv/cuda.py: GEMM, row sum, im2col / col2im, conv forward and
backward) vs the NumPy references under Numba's CUDA simulator.

Not collected by the default run (the name does not match test_*.py): the
simulator must be switched on before Numba is imported, so
tests/kernels/test_cuda_simulator.py runs every tests/kernels/**/*_cuda_check.py
in its own process with NUMBA_ENABLE_CUDASIM=1. The simulator runs every thread
in Python, so the shapes are tiny (a few hundred threads per launch).
"""
import os

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("needs NUMBA_ENABLE_CUDASIM=1 (run tests/kernels/test_cuda_simulator.py)", allow_module_level=True)

from numba import config  # noqa: E402

from layouts import assert_any_layout  # noqa: E402
from minidiff.kernels.check import check_kernel, conv_backward_case, conv_case  # noqa: E402
from minidiff.kernels.conv import cuda as conv_cuda  # noqa: E402
from minidiff.kernels.conv import reference as conv_reference  # noqa: E402

DTYPES = [np.float32, np.float64]
# (B, Cin, Cout, H, W, k, stride, padding)
CONV_SHAPES = [(1, 2, 3, 5, 4, 3, 1, 1), (2, 2, 2, 6, 5, 4, 2, 1), (1, 3, 2, 4, 4, 1, 1, 0)]


def test_simulator_is_on():
    assert config.ENABLE_CUDASIM


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tile", [4, 8])
def test_gemm_matches_numpy(dtype, tile):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((5, 11)).astype(dtype)
    B = rng.standard_normal((11, 9)).astype(dtype)
    C = check_kernel(lambda a, b: conv_cuda.matmul_cuda(a, b, tile), np.matmul, (A, B))
    assert C.dtype == dtype and C.shape == (5, 9)
    check_kernel(lambda a, b: conv_cuda.matmul_cuda(a, b, tile), np.matmul, (A.T.copy().T, B[:, ::2]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_sum_matches_numpy(dtype):
    X = np.random.default_rng(1).standard_normal((3, 70)).astype(dtype)
    s = check_kernel(conv_cuda.row_sum_cuda, lambda a: a.sum(axis=1), (X,))
    assert s.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_col2im_match_reference(dtype):
    x = np.random.default_rng(2).standard_normal((1, 2, 5, 4)).astype(dtype)
    cols = check_kernel(conv_cuda.im2col_cuda, conv_reference.im2col, (x, 3, 3, 2, 1))
    assert cols.dtype == dtype
    dx = check_kernel(conv_cuda.col2im_cuda, conv_reference.col2im, (cols, x.shape, 3, 3, 2, 1))
    assert dx.dtype == dtype and dx.shape == x.shape


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", CONV_SHAPES)
def test_conv_forward_matches_reference(shape, dtype):
    rng = np.random.default_rng(3)
    y = check_kernel(conv_cuda.conv2d_forward_cuda, conv_reference.conv2d_forward_reference,
                     conv_case(rng, *shape, dtype=dtype))
    assert y.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", CONV_SHAPES)
def test_conv_backward_matches_reference(shape, dtype):
    rng = np.random.default_rng(4)
    dx, dw, db = check_kernel(conv_cuda.conv2d_backward_cuda, conv_reference.conv2d_backward_reference,
                              conv_backward_case(rng, *shape, dtype=dtype))
    assert dx.dtype == dw.dtype == db.dtype == dtype


def test_conv_cuda_any_layout():
    """x and dy in Fortran order or a strided view: the C result. (Few calls: the simulator runs
    each GEMM thread in Python; tests/kernels/test_ops_layouts.py sweeps every layout of every
    argument through the face.)"""
    rng = np.random.default_rng(7)
    x, w, b, _, _ = conv_case(rng, 1, 2, 2, 3, 3, 3, 1, 1, np.float64)
    assert_any_layout(lambda x: conv_cuda.conv2d_forward_cuda(x, w, b, 1, 1), [x], layouts=("F", "strided"),
                      name="conv2d_forward_cuda")
    dy, x, w, _, _ = conv_backward_case(rng, 1, 2, 2, 4, 4, 4, 2, 1, np.float64)
    assert_any_layout(lambda dy: conv_cuda.conv2d_backward_cuda(dy, x, w, 2, 1), [dy], layouts=("F",),
                      name="conv2d_backward_cuda")
