"""Which implementation family an operation's arrays take (kernels/route.py): by array type,
dtype and device, the forced reference path, the test backend."""
import numpy as np
import pytest

pytest.importorskip("numba")

import minidiff.kernels as K
from minidiff.kernels import route
from minidiff.kernels.check import conv_case, ddpm_case
from minidiff.kernels.conv.reference_3x3 import conv3x3_forward_reference


def test_backend_name_routes_by_type_and_dtype():
    x = np.zeros((1, 2, 3, 3), np.float32)
    assert K.backend_name(x) == "numba-cpu"
    assert K.backend_name(x.astype(np.float64)) == "numba-cpu"
    assert K.backend_name(x.astype(np.float16)) == "reference"

    class Other(np.ndarray):                     # an array type with __minidiff_xp__: reference
        __minidiff_xp__ = np
    assert K.backend_name(x.view(Other)) == "reference"
    assert route.route(x) == "cpu" and route.route(x, x.astype(np.float64)) == "reference"
    assert route.route(K.to_lanes(np.zeros((16, 2, 3, 3), np.float32))) == "lines"


def test_reference_switches(monkeypatch):
    x = np.zeros((1, 2, 3, 3), np.float32)
    K.use_reference(True)
    try:
        assert K.backend_name(x) == "reference"
    finally:
        K.use_reference(False)
    assert K.backend_name(x) == "numba-cpu"
    with K.reference_mode():
        assert K.reference_forced() and K.backend_name(x) == "reference"
    assert not K.reference_forced()
    monkeypatch.setenv("MINIDIFF_KERNELS", "reference")
    assert K.backend_name(x) == "reference"
    monkeypatch.setenv("MINIDIFF_KERNELS", "numbaa")
    with pytest.raises(ValueError, match="MINIDIFF_KERNELS"):
        K.backend_name(x)


def test_mixed_dtypes_fall_back_to_reference():
    rng = np.random.default_rng(11)
    x, w, b, s, p = conv_case(rng, 1, 2, 3, 5, 5, 3, 1, 1)
    y = K.conv2d_forward(x, w.astype(np.float64), b, s, p)
    np.testing.assert_allclose(y, conv3x3_forward_reference(x, w.astype(np.float64), b))   # 3x3 s1 p1
    assert y.dtype == np.float64


def test_test_backend_arrays_take_the_reference_path():
    fakecupy = pytest.importorskip("fakecupy")
    xp, rng = fakecupy.xp, np.random.default_rng(13)
    x, w, b, s, p = conv_case(rng, 2, 3, 4, 6, 6, 3, 1, 1)
    xd = xp.asarray(x)
    assert K.backend_name(xd) == "reference"
    y = K.conv2d_forward(xd, xp.asarray(w), xp.asarray(b), s, p)
    assert type(y) is type(xd)
    np.testing.assert_allclose(xp.asnumpy(y) if hasattr(xp, "asnumpy") else y.get(),
                               conv3x3_forward_reference(x, w, b), rtol=1e-6)            # 3x3 s1 p1
    x_prev, x0 = K.ddpm_step(*[xp.asarray(a) for a in ddpm_case(rng, (2, 1, 4, 4))])
    assert type(x_prev) is type(xd) and type(x0) is type(xd)
