"""Central-difference gradient checks for any layer, in float64.

The loss is L = sum(forward(x) * R) with a fixed random R, so dL/dy = R and
the analytic gradients are whatever backward(R) returns / adds into grads.
"""
import numpy as np


def rel_error(a, b):
    """max |a - b| / max(|a|, |b|, tiny): the worst entry relative to the scale."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0), 1e-12)
    return float(np.abs(a - b).max(initial=0.0) / scale)


def numerical_grad(f, x, h=1e-6, entries=None):
    """d f / d x by central differences; f() returns a scalar and reads x in place.

    entries: flat indices to differentiate (default: all) -> g[entries] (len(entries),)
    """
    flat = range(x.size) if entries is None else entries
    g = np.zeros(x.size if entries is None else len(entries))
    for k, fi in enumerate(flat):
        i = np.unravel_index(fi, x.shape)
        old = x[i]
        x[i] = old + h
        fp = f()
        x[i] = old - h
        fm = f()
        x[i] = old
        g[k] = (fp - fm) / (2 * h)
    return g.reshape(x.shape) if entries is None else g


def check_gradients(layer, x, *cond, seed=0, h=1e-6, check_input=True, max_entries=None,
                    max_input_entries=None):
    """Compare backward() with central differences for x and every parameter.

    Returns {name: relative error}; 'input' is the gradient w.r.t. x.
    max_entries / max_input_entries: check at most this many random entries
    of each parameter / of x (big models); default all.
    The layer must already be float64 (layer.astype(np.float64)).
    """
    assert x.dtype == np.float64, "gradient checks run in float64"
    rng = np.random.default_rng(seed)
    y = layer.forward(x, *cond)
    R = rng.standard_normal(y.shape)

    def loss():
        return float(np.sum(layer.forward(x, *cond) * R))

    def error(analytic, array, limit):
        if limit is None or array.size <= limit:
            return rel_error(analytic, numerical_grad(loss, array, h))
        picks = rng.choice(array.size, size=limit, replace=False)
        return rel_error(np.asarray(analytic).reshape(-1)[picks], numerical_grad(loss, array, h, picks))

    layer.zero_grad()
    layer.forward(x, *cond)
    dx = layer.backward(R)
    errors = {}
    if check_input:
        errors["input"] = error(dx, x, max_input_entries)
    for name, p, g in layer.named_parameters():
        errors[name] = error(g.copy(), p, max_entries)
    return errors


def assert_gradients(layer, x, *cond, tol=1e-6, **kw):
    errors = check_gradients(layer, x, *cond, **kw)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= tol, f"gradient check failed: {worst} rel error {errors[worst]:.2e} (all: {errors})"
    return errors
