"""A CuPy-like test backend: device arrays that refuse to leave the device implicitly.

`DeviceArray` wraps a NumPy array the way `cupy.ndarray` wraps GPU memory, and
behaves like CuPy at the host/device boundary:

- `np.asarray(d)` / `np.array(d)` (implicit device -> host) raises TypeError;
- `float(d)`, `int(d)`, `bool(d)` (e.g. `if xp.any(...)`, `float(loss)`) raise;
- mixing a DeviceArray with a NumPy array (a host array on the device) raises,
  in arithmetic, ufuncs and xp functions;
- the explicit copies are allowed: `xp.asarray(host)` (host -> device) and
  `d.get()` / `minidiff.backend.to_host(d)` (device -> host).

`xp` (an instance of `FakeCupy`) plays the `cupy` module: every NumPy function
unwraps DeviceArrays, refuses host arrays, runs NumPy, and wraps the result.
Views stay views, so in-place updates work as on a real device.
"""
import numbers

import numpy as np


class HostDeviceError(TypeError):
    pass


def _refuse_host(a, where):
    if isinstance(a, np.ndarray) and a.ndim > 0:
        raise HostDeviceError(f"{where}: a host (NumPy) array {a.shape} was mixed with device arrays; "
                              "copy it explicitly with xp.asarray(...)")


def _unwrap(a, where):
    """DeviceArray -> its ndarray; refuse host arrays; recurse into lists/tuples."""
    if isinstance(a, DeviceArray):
        return a._data
    if isinstance(a, (list, tuple)):
        return type(a)(_unwrap(v, where) for v in a)
    if isinstance(a, dict):
        return {k: _unwrap(v, where) for k, v in a.items()}
    _refuse_host(a, where)
    return a


def _wrap(r):
    if isinstance(r, np.ndarray):
        return DeviceArray(r)
    if isinstance(r, np.generic):            # reductions stay on the device, 0-d
        return DeviceArray(np.asarray(r))
    if isinstance(r, tuple):
        return tuple(_wrap(v) for v in r)
    if isinstance(r, list):
        return [_wrap(v) for v in r]
    return r


class DeviceArray:
    """An array 'on the device'. Only explicit copies move it to the host."""
    __array_priority__ = 100

    def __init__(self, data):
        assert isinstance(data, np.ndarray)
        self._data = data

    # -- what CuPy refuses -----------------------------------------------
    def __array__(self, *args, **kwargs):
        raise HostDeviceError("implicit conversion of a device array to NumPy; use .get() or to_host()")

    def __float__(self):
        raise HostDeviceError("float() of a device array: an implicit device -> host sync; use to_host()")

    def __int__(self):
        raise HostDeviceError("int() of a device array: an implicit device -> host sync; use to_host()")

    def __bool__(self):
        raise HostDeviceError("bool() of a device array (e.g. `if xp.any(...)`): an implicit sync; use to_host()")

    def __index__(self):
        raise HostDeviceError("a device array used as a Python index; use to_host()")

    def item(self):
        raise HostDeviceError(".item() of a device array: an implicit sync; use to_host()")

    def tolist(self):
        raise HostDeviceError(".tolist() of a device array: an implicit sync; use to_host()")

    def __iter__(self):
        raise HostDeviceError("iterating over a device array syncs every element; use to_host()")

    # -- the explicit copy -------------------------------------------------
    def get(self):
        return self._data.copy()

    # -- NumPy protocol: ufuncs and functions run 'on the device' ----------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        where = f"np.{ufunc.__name__}"
        inputs = _unwrap(inputs, where)
        if "out" in kwargs:
            kwargs["out"] = _unwrap(kwargs["out"], where)
        return _wrap(getattr(ufunc, method)(*inputs, **kwargs))

    def __array_function__(self, func, types, args, kwargs):
        where = f"np.{func.__name__}"
        return _wrap(func(*_unwrap(args, where), **_unwrap(kwargs, where)))

    # -- attributes ----------------------------------------------------------
    shape = property(lambda self: self._data.shape)
    dtype = property(lambda self: self._data.dtype)
    ndim = property(lambda self: self._data.ndim)
    size = property(lambda self: self._data.size)
    nbytes = property(lambda self: self._data.nbytes)
    itemsize = property(lambda self: self._data.itemsize)
    strides = property(lambda self: self._data.strides)
    T = property(lambda self: DeviceArray(self._data.T))
    flags = property(lambda self: self._data.flags)

    def __len__(self):
        return len(self._data)

    def __repr__(self):
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype})"

    # -- indexing --------------------------------------------------------------
    @staticmethod
    def _index(idx):
        if isinstance(idx, tuple):
            return tuple(DeviceArray._index(i) for i in idx)
        if isinstance(idx, DeviceArray):
            return idx._data
        _refuse_host(idx, "indexing")
        return idx

    def __getitem__(self, idx):
        return _wrap(self._data[self._index(idx)])

    def __setitem__(self, idx, value):
        self._data[self._index(idx)] = _unwrap(value, "assignment")

    # -- methods that return arrays --------------------------------------------
    def __getattr__(self, name):
        if name.startswith("__"):            # no __array_interface__ & co: no hidden host path
            raise AttributeError(name)
        attr = getattr(self._data, name)
        if not callable(attr):
            return _wrap(attr)

        def method(*args, **kwargs):
            where = f"ndarray.{name}"
            return _wrap(attr(*_unwrap(args, where), **_unwrap(kwargs, where)))
        return method

    def copy(self):
        return DeviceArray(self._data.copy())

    def astype(self, dtype, copy=True):
        return DeviceArray(self._data.astype(dtype, copy=copy))


def _binary(name):
    def op(self, other):
        return _wrap(getattr(self._data, name)(_unwrap(other, name)))
    op.__name__ = name
    return op


for _name in ["__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
              "__rtruediv__", "__floordiv__", "__rfloordiv__", "__mod__", "__pow__", "__rpow__",
              "__matmul__", "__rmatmul__", "__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__",
              "__and__", "__rand__", "__or__", "__ror__", "__xor__"]:
    setattr(DeviceArray, _name, _binary(_name))


def _inplace(name):
    def op(self, other):
        getattr(self._data, name)(_unwrap(other, name))
        return self
    op.__name__ = name
    return op


for _name in ["__iadd__", "__isub__", "__imul__", "__itruediv__", "__ipow__"]:
    setattr(DeviceArray, _name, _inplace(_name))

for _name in ["__neg__", "__pos__", "__abs__", "__invert__"]:
    setattr(DeviceArray, _name, (lambda n: lambda self: _wrap(getattr(self._data, n)()))(_name))

DeviceArray.__hash__ = None


class FakeCupy:
    """The `cupy` module of the fake device: NumPy's functions on DeviceArrays."""
    __name__ = "fakecupy"
    ndarray = DeviceArray

    def asarray(self, a, dtype=None):
        """Explicit host -> device copy (or a device array, cast)."""
        if isinstance(a, DeviceArray):
            return a if dtype is None or a.dtype == dtype else a.astype(dtype)
        return DeviceArray(np.array(a, dtype=dtype))

    array = asarray

    def asnumpy(self, a):
        return a.get() if isinstance(a, DeviceArray) else np.asarray(a)

    def get_array_module(self, *arrays):
        return self

    def __getattr__(self, name):
        obj = getattr(np, name)
        if isinstance(obj, type) or isinstance(obj, (numbers.Number, np.dtype)):
            return obj                                   # np.float32, np.pi, ...
        if not callable(obj):
            return obj

        def fn(*args, **kwargs):
            where = f"xp.{name}"
            return _wrap(obj(*_unwrap(args, where), **_unwrap(kwargs, where)))
        fn.__name__ = name
        return fn


xp = FakeCupy()
DeviceArray.__minidiff_xp__ = xp


def assert_same_on_device(host, dev, x, dy, tol=1e-12):
    """Run layer `host` on NumPy and its twin `dev` (already .to(xp)) on the fake
    device: outputs, input gradients and parameter gradients must agree, and the
    device results must be device arrays."""
    from minidiff.backend import to_host
    y = dev.forward(xp.asarray(x))
    dx = dev.backward(xp.asarray(dy))
    assert isinstance(y, DeviceArray) and isinstance(dx, DeviceArray)
    np.testing.assert_allclose(to_host(y), host.forward(x), rtol=tol, atol=tol)
    np.testing.assert_allclose(to_host(dx), host.backward(dy), rtol=tol, atol=tol)
    for k in host.grads:
        np.testing.assert_allclose(to_host(dev.grads[k]), host.grads[k], rtol=tol, atol=tol)
