"""Hypothesis strategies and settings shared by the property tests (tests/properties/).

Every property draws a case (shapes, dtype, memory layout, batch size, timesteps, sampler
arguments), runs the public function on it, and checks the result against the same call on the
C-contiguous float64 copy of the inputs. Two profiles (HYPOTHESIS_PROFILE=...):

    ci    (default) few examples, the same ones every run (derandomize): the suite stays fast
          and a failure reproduces
    hunt  many random examples, for a developer looking for new failures
"""
import os

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from layouts import LAYOUTS, as_layout

settings.register_profile("ci", max_examples=20, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("hunt", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DTYPES = st.sampled_from([np.float32, np.float64])
LAYOUT = st.sampled_from(LAYOUTS)
# float32 results agree with the float64 computation to about this, relative to the largest entry
TOL = {np.float32: 2e-4, np.float64: 1e-10}


def batch(max_size=4):
    """A batch size 1..max_size."""
    return st.integers(1, max_size)


def sample_shapes(max_dims=3, max_size=5):
    """The shape of one sample: 0 to max_dims axes of 1 to max_size entries (images and vectors alike)."""
    return st.lists(st.integers(1, max_size), min_size=0, max_size=max_dims).map(tuple)


@st.composite
def arrays(draw, shape, dtype, scale=1.0):
    """(a in `dtype` and a drawn layout, the same values as a C-contiguous float64 array):
    normal entries of standard deviation `scale`."""
    seed = draw(st.integers(0, 2 ** 32 - 1))
    a = (scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)
    return as_layout(a, draw(LAYOUT)), a.astype(np.float64)


def close(got, want, dtype, factor=1.0, what=""):
    """got (any dtype) agrees with the float64 `want` to the dtype's tolerance relative to max |want|."""
    got = np.asarray(got)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    tol = TOL[np.dtype(dtype).type] * factor
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=tol, atol=tol * scale, err_msg=what)
