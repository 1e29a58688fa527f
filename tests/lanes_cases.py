"""Shared by the tests of the image-lanes layout and its layers: dtypes, tolerances, random arrays."""
import numpy as np

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 2e-5, np.float64: 1e-12}


def rand(rng, shape, dtype, scale=1.0, offset=0.0):
    """Normal(offset, scale^2) entries of `dtype`."""
    return (rng.standard_normal(shape) * scale + offset).astype(dtype)


def close(got, want, dtype, factor=1):
    """assert_allclose with the dtype's tolerance times `factor`, relative and absolute."""
    np.testing.assert_allclose(got, want, rtol=TOL[dtype] * factor, atol=TOL[dtype] * factor)
