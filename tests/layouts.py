"""Memory layouts of one array's values, shared by the tests that check every public function
gives the same result whatever the layout of its inputs.

    as_layout(a, name)   the values of `a` in layout `name`, a new array (or a view of one)

    C        C-contiguous (the reference every other layout is compared with)
    F        Fortran-ordered (a C-contiguous transpose's transpose: the axes' strides reversed)
    permuted a view with the axes' strides in another order (a C array of the axes rolled, viewed back)
    strided  a view taking every second entry of the last axis
    reversed a view with a negative stride along the first axis

Every layout but C is not C-contiguous for arrays with more than one entry along two axes.
"""
import numpy as np

LAYOUTS = ("C", "F", "permuted", "strided", "reversed")
NON_C = LAYOUTS[1:]


def as_layout(a, name):
    """The values of a (NumPy) in layout `name` (see the module docstring)."""
    a = np.asarray(a)
    if name == "C":
        out = np.ascontiguousarray(a)
    elif name == "F":
        out = np.asfortranarray(a)
    elif name == "permuted":
        roll = tuple(range(1, a.ndim)) + (0,)                    # (1, 2, ..., 0)
        back = tuple(np.argsort(roll))
        out = np.ascontiguousarray(a.transpose(roll)).transpose(back) if a.ndim > 1 else a.copy()
    elif name == "strided":
        wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)   # (..., 2n)
        wide[..., ::2] = a
        wide[..., 1::2] = np.nan if a.dtype.kind == "f" else 0   # poison: a read of a gap shows
        out = wide[..., ::2]
    elif name == "reversed":
        out = np.ascontiguousarray(a[::-1])[::-1]
    else:
        raise ValueError(f"layout: expected one of {LAYOUTS}, got {name!r}")
    assert out.shape == a.shape and out.dtype == a.dtype and np.array_equal(out, a, equal_nan=True)
    return out


def _arrays(out, to_array):
    """A result's arrays in order (tuples and lists unpacked, None kept)."""
    if isinstance(out, (tuple, list)):
        return [a for o in out for a in _arrays(o, to_array)]
    return [None if out is None else to_array(out)]


def assert_same_results(got, want, what, to_array=np.asarray, rtol=1e-12, atol=1e-12):
    """Two results (an array, None, or tuples / lists of them) hold the same shapes, dtypes and values."""
    got, want = _arrays(got, to_array), _arrays(want, to_array)
    assert len(got) == len(want), f"{what}: {len(got)} outputs, expected {len(want)}"
    for k, (g, w) in enumerate(zip(got, want)):
        if w is None:
            assert g is None, f"{what}: output {k} is not None"
            continue
        assert g.shape == w.shape and g.dtype == w.dtype, \
            f"{what}: output {k} is {g.dtype} {g.shape}, expected {w.dtype} {w.shape}"
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"{what}: output {k}")


def assert_any_layout(fn, args, which=None, layouts=NON_C, name="", **kw):
    """fn(*args) with argument i (each i in `which`, default every array) in each layout gives
    what it gives on the C-contiguous args (assert_same_results; kw: to_array, rtol, atol)."""
    want = fn(*args)
    which = [i for i, a in enumerate(args) if isinstance(a, np.ndarray)] if which is None else which
    for i in which:
        for layout in layouts:
            changed = list(args)
            changed[i] = as_layout(args[i], layout)
            assert_same_results(fn(*changed), want, f"{name} argument {i} {layout}", **kw)
    return want
