"""Adam's one-pass update (kernels/adam/cpu.py) against the NumPy reference (kernels/adam/reference.py)."""
import numpy as np
import pytest

pytest.importorskip("numba")

from minidiff.kernels import adam_step, reference_mode  # noqa: E402
from minidiff.kernels.adam import cpu as adam_cpu  # noqa: E402
from minidiff.kernels.adam import reference as adam  # noqa: E402

VARIANTS = [(0.0, False), (0.05, False), (0.05, True)]          # (weight_decay, decoupled)
LENGTHS = [1, 7, adam_cpu.CHUNK + 3, 3 * adam_cpu.CHUNK - 1]    # partial and several chunks


def _vectors(rng, P, dtype):
    theta, g = rng.standard_normal(P), rng.standard_normal(P)
    m, v = 0.1 * rng.standard_normal(P), 0.01 * rng.random(P)
    return [a.astype(dtype) for a in (theta, g, m, v)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("P", LENGTHS)
@pytest.mark.parametrize("weight_decay,decoupled", VARIANTS)
def test_cpu_step_equals_reference(P, dtype, weight_decay, decoupled):
    """Same operations in the same order and dtype, no fused multiply-adds: equal to the last bit."""
    vecs = _vectors(np.random.default_rng(P), P, dtype)
    want, got = [a.copy() for a in vecs], [a.copy() for a in vecs]
    for t in (1, 2, 30):
        adam.adam_step_reference(*want, 2e-3, 0.9, 0.999, 1e-8, t, weight_decay, decoupled)
        adam_cpu.adam_step_cpu(*got, 2e-3, 0.9, 0.999, 1e-8, t, weight_decay, decoupled)
    for name, w, g in zip(("theta", "g", "m", "v"), want, got):
        assert g.dtype == dtype
        np.testing.assert_array_equal(g, w, err_msg=name)
    np.testing.assert_array_equal(got[1], vecs[1], err_msg="the gradient must not change")
    assert not np.array_equal(got[0], vecs[0])


def test_first_step_moves_every_parameter_by_lr():
    """Derived by hand: at t = 1 the bias corrections make m/sqrt(v) = g/|g|, so with eps -> 0
    and no weight decay every parameter moves by lr against the sign of its gradient."""
    rng = np.random.default_rng(1)
    theta, g = rng.standard_normal(1000), rng.standard_normal(1000)
    m, v = np.zeros(1000), np.zeros(1000)
    new = adam_step(theta.copy(), g, m, v, 0.01, 0.9, 0.999, 1e-12, 1)
    np.testing.assert_allclose(new, theta - 0.01 * np.sign(g), rtol=0, atol=1e-9)
    np.testing.assert_allclose(m, 0.1 * g, rtol=1e-12)
    np.testing.assert_allclose(v, 0.001 * g * g, rtol=1e-12)


def test_dispatch_and_errors():
    vecs = _vectors(np.random.default_rng(2), 50, np.float32)
    a, b = [x.copy() for x in vecs], [x.copy() for x in vecs]
    adam_step(*a, 1e-3, 0.9, 0.999, 1e-8, 3)
    with reference_mode():
        adam_step(*b, 1e-3, 0.9, 0.999, 1e-8, 3)
    np.testing.assert_array_equal(a[0], b[0])
    theta, g, m, v = vecs
    with pytest.raises(ValueError, match="flat vectors of one length"):
        adam_cpu.adam_step_cpu(theta, g[:-1], m, v, 1e-3, 0.9, 0.999, 1e-8, 1)
    with pytest.raises(TypeError, match="one float dtype"):
        adam_cpu.adam_step_cpu(theta, g.astype(np.float64), m, v, 1e-3, 0.9, 0.999, 1e-8, 1)
    with pytest.raises(ValueError, match="starts at 1"):
        adam_cpu.adam_step_cpu(theta, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0)
