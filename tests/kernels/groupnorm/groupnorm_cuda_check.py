"""The fused GroupNorm + shift + SiLU CUDA kernels vs the NumPy reference, under the CUDA simulator.

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
from minidiff.kernels.groupnorm import cuda as groupnorm_cuda  # noqa: E402
from minidiff.kernels.check import check_kernel  # noqa: E402
from minidiff.kernels.groupnorm.reference import (groupnorm_silu_backward_reference,  # noqa: E402
                                                  groupnorm_silu_forward_reference)

# (x shape, num_groups, affine, shift, dtype): G = 1 and G = C, rows and groups
# longer than a block (TPB = 16), no spatial axes, 3-D spatial
CASES = [((1, 4, 3, 5), 2, True, True, np.float32), ((2, 3, 2, 3), 1, False, True, np.float64),
         ((2, 4, 3), 4, True, False, np.float64), ((1, 6, 3, 6), 3, True, True, np.float64),
         ((2, 4), 2, False, False, np.float32), ((1, 2, 2, 3, 2), 1, True, True, np.float32)]


def _case(rng, shape, G, affine, shift, dtype):
    B, C = shape[:2]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)                          # (B, C, ...)
    w = rng.uniform(0.5, 1.5, C).astype(dtype) if affine else None                    # (C,)
    b = rng.standard_normal(C).astype(dtype) if affine else None                      # (C,)
    sh = rng.standard_normal((B, C)).astype(dtype) if shift else None                 # (B, C)
    return x, w, b, sh, G


def test_simulator_is_on():
    assert config.ENABLE_CUDASIM and groupnorm_cuda.TPB == 16


@pytest.mark.parametrize("silu", [True, False])
@pytest.mark.parametrize("case", CASES)
def test_groupnorm_silu_cuda_matches_reference(case, silu):
    rng = np.random.default_rng(0)
    x, w, b, sh, G = _case(rng, *case)
    dtype = x.dtype
    y, mean, rstd = check_kernel(groupnorm_cuda.groupnorm_silu_forward_cuda, groupnorm_silu_forward_reference,
                                 (x, w, b, sh, G, 1e-5), {"silu": silu})
    assert y.dtype == rstd.dtype == dtype and y.shape == x.shape
    dy = rng.standard_normal(x.shape).astype(dtype)
    dx, dw, db, dsh = check_kernel(groupnorm_cuda.groupnorm_silu_backward_cuda,
                                   groupnorm_silu_backward_reference,
                                   (dy, x, mean, rstd, w, b, sh, G), {"silu": silu})
    assert dx.dtype == dtype and (dsh is None) == (sh is None) and (dw is None) == (w is None)
    r = rng.standard_normal(x.shape).astype(dtype)
    y_r, _, _ = check_kernel(groupnorm_cuda.groupnorm_silu_forward_cuda, groupnorm_silu_forward_reference,
                             (x, w, b, sh, G, 1e-5), {"silu": silu, "residual": r})
    np.testing.assert_allclose(y_r - y, r, rtol=1e-5, atol=1e-5)


def test_groupnorm_cuda_errors():
    with pytest.raises(ValueError, match="num_groups"):
        groupnorm_cuda.groupnorm_silu_forward_cuda(np.zeros((1, 4, 2, 2), np.float32), None, None, None, 3, 1e-5)
    with pytest.raises(ValueError, match="residual"):
        groupnorm_cuda.groupnorm_silu_forward_cuda(np.zeros((1, 4, 2, 2), np.float32), None, None, None, 2, 1e-5,
                                                   residual=np.zeros((1, 4, 2), np.float32))


def test_groupnorm_cuda_any_layout():
    """x, the residual and dy in Fortran order or a strided view: the C result. (One block: the
    simulator runs each thread in Python; tests/kernels/test_ops_layouts.py sweeps every layout
    of every argument through the face.)"""
    rng = np.random.default_rng(4)
    x, w, b, sh, G = _case(rng, (1, 2, 2, 3), 1, True, True, np.float64)
    r = rng.standard_normal(x.shape)
    _, mean, rstd = groupnorm_cuda.groupnorm_silu_forward_cuda(x, w, b, sh, G, 1e-5)
    assert_any_layout(lambda x, r: groupnorm_cuda.groupnorm_silu_forward_cuda(x, w, b, sh, G, 1e-5, residual=r),
                      [x, r], layouts=("F", "strided"), name="groupnorm_silu_forward_cuda")
    assert_any_layout(lambda dy, x: groupnorm_cuda.groupnorm_silu_backward_cuda(dy, x, mean, rstd, w, b, sh, G),
                      [rng.standard_normal(x.shape), x], layouts=("F",), name="groupnorm_silu_backward_cuda")
