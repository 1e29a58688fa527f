"""fast_exp (kernels/runtime/fast_exp.py) against np.exp: within a few ulps in float32 and float64."""
import numpy as np
import pytest

pytest.importorskip("numba")
from numba import njit

from minidiff.kernels.runtime.fast_exp import fast_exp


@njit
def _apply(z):
    out = np.empty_like(z)
    one = z.dtype.type(1)
    for i in range(z.size):
        out[i] = fast_exp(z[i], one)
    return out


@pytest.mark.parametrize("dtype, max_rel", [(np.float32, 4 * np.finfo(np.float32).eps),
                                            (np.float64, 8 * np.finfo(np.float64).eps)])
def test_fast_exp_is_exp_to_a_few_ulps(dtype, max_rel):
    z = np.concatenate([np.linspace(-80, 80, 20001), np.random.default_rng(0).uniform(-5, 5, 20000),
                        [0.0, np.log(2) / 2, -np.log(2) / 2]]).astype(dtype)
    got = _apply(z)
    want = np.exp(z.astype(np.float64))
    assert got.dtype == dtype
    assert np.max(np.abs(got - want) / want) <= max_rel


def test_fast_exp_clamps_instead_of_overflowing():
    got = _apply(np.array([-1000.0, 1000.0], np.float32))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, np.exp(np.float64([-80, 80])), rtol=1e-6)
