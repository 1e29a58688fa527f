"""The CuPy-like test backend itself refuses what CuPy refuses (else the
device-path tests would prove nothing)."""
import numpy as np
import pytest

from fakecupy import DeviceArray, HostDeviceError, xp
from minidiff.backend import get_xp, to_host


@pytest.fixture
def d():
    return xp.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))


@pytest.mark.parametrize("conversion", [
    lambda a: np.asarray(a), lambda a: np.array(a), lambda a: float(a.sum()), lambda a: int(a[0, 0]),
    lambda a: bool(xp.any(a > 0)), lambda a: a.sum().item(), lambda a: list(a), lambda a: a.tolist(),
])
def test_implicit_device_to_host_raises(d, conversion):
    with pytest.raises(HostDeviceError):
        conversion(d)


@pytest.mark.parametrize("mix", [
    lambda a, h: a + h, lambda a, h: h * a, lambda a, h: xp.concatenate([a, h]), lambda a, h: np.maximum(a, h),
    lambda a, h: a[np.array([0, 1])], lambda a, h: a.__setitem__(slice(None), h),
])
def test_mixing_host_and_device_raises(d, mix):
    with pytest.raises(HostDeviceError):
        mix(d, np.ones((2, 3), np.float32))


def test_explicit_copies_and_device_results(d):
    assert get_xp(d) is xp
    assert isinstance(d.sum(), DeviceArray) and d.sum().shape == ()
    assert isinstance(np.exp(d), DeviceArray) and isinstance(d @ d.T, DeviceArray)
    np.testing.assert_array_equal(to_host(d * 2 + 1), np.arange(6).reshape(2, 3) * 2 + 1)
    v = xp.zeros(6, dtype=np.float32)
    view = v[2:4].reshape(2, 1)
    view += 5                                   # views share memory, as on a device
    np.testing.assert_array_equal(to_host(v), [0, 0, 5, 5, 0, 0])
    assert float(to_host(d.sum())) == 15.0      # explicit sync is fine
