"""Check any kernel against its reference on the same (random) inputs.

    check_kernel(conv2d_forward_cpu, conv2d_forward_reference, conv_case(rng, ...))

runs both on copies of the arguments, then asserts that every output has the
reference's shape and dtype and agrees within a dtype-appropriate tolerance
(relative to the largest reference entry). The case builders below make the
random inputs; `to_host` turns CuPy outputs into NumPy for the comparison.
"""
import numpy as np

from .xp import get_xp, to_host

# (rtol, atol relative to max |reference|) per dtype
TOLERANCE = {np.dtype(np.float32): (1e-4, 1e-5), np.dtype(np.float64): (1e-10, 1e-12)}


def _copy(a):
    return get_xp(a).array(a, copy=True) if hasattr(a, "dtype") and hasattr(a, "shape") else a


def _as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


def check_kernel(kernel, reference, args, kwargs=None, rtol=None, atol=None):
    """Assert kernel(*args, **kwargs) matches reference(*args, **kwargs); returns the kernel outputs."""
    kwargs = kwargs or {}
    want = _as_tuple(reference(*map(_copy, args), **{k: _copy(v) for k, v in kwargs.items()}))
    got = _as_tuple(kernel(*map(_copy, args), **{k: _copy(v) for k, v in kwargs.items()}))
    assert len(got) == len(want), f"{len(got)} outputs, reference has {len(want)}"
    for n, (g, r) in enumerate(zip(got, want)):
        if r is None:
            assert g is None, f"output {n}: expected None, got {type(g).__name__}"
            continue
        g, r = to_host(g), to_host(r)
        assert g.shape == r.shape, f"output {n}: shape {g.shape}, reference {r.shape}"
        assert g.dtype == r.dtype, f"output {n}: dtype {g.dtype}, reference {r.dtype}"
        rt, at = TOLERANCE.get(r.dtype, (1e-4, 1e-5))
        rt, at = rtol if rtol is not None else rt, atol if atol is not None else at
        scale = max(1.0, float(np.abs(r).max(initial=0.0)))
        np.testing.assert_allclose(g, r, rtol=rt, atol=at * scale, err_msg=f"output {n}")
    return got if len(got) > 1 else got[0]


# --- random cases --------------------------------------------------------------
def _randn(rng, shape, dtype, xp=np, scale=1.0):
    return xp.asarray((scale * rng.standard_normal(shape)).astype(dtype))


def conv_case(rng, B, Cin, Cout, H, W, k, stride, padding, dtype=np.float32, bias=True, xp=np):
    """(x, w, b, stride, padding) for conv2d_forward; k an int or (kh, kw)."""
    kh, kw = (k, k) if np.isscalar(k) else k
    x = _randn(rng, (B, Cin, H, W), dtype, xp)                         # (B, Cin, H, W)
    w = _randn(rng, (Cout, Cin, kh, kw), dtype, xp, 1 / np.sqrt(Cin * kh * kw))
    b = _randn(rng, (Cout,), dtype, xp) if bias else None
    return x, w, b, stride, padding


def conv_backward_case(rng, B, Cin, Cout, H, W, k, stride, padding, dtype=np.float32, xp=np):
    """(dy, x, w, stride, padding) for conv2d_backward, dy shaped like the forward output."""
    from .conv.reference import conv_output_size
    x, w, _, stride, padding = conv_case(rng, B, Cin, Cout, H, W, k, stride, padding, dtype, False, xp)
    Ho, Wo = conv_output_size(H, W, w.shape[2], w.shape[3], stride, padding)
    return _randn(rng, (B, Cout, Ho, Wo), dtype, xp), x, w, stride, padding


def _abar_pair(rng, B):
    """Per-sample abar_t < abar_prev in (0, 1): the (B,) pair a reverse step goes between."""
    abar = rng.uniform(0.05, 0.95, B)
    return abar, abar + (1 - abar) * rng.uniform(0.1, 0.9, B)


def ddpm_case(rng, shape, dtype=np.float32, noise=True, xp=np):
    """(x_t, eps_hat, sqrt_recip_abar, sqrt_recipm1_abar, c1, c2, sigma, z) for ddpm_step."""
    B = shape[0]
    abar, abar_prev = _abar_pair(rng, B)
    beta = 1 - abar / abar_prev
    coefs = (1 / np.sqrt(abar), np.sqrt(1 / abar - 1),
             beta * np.sqrt(abar_prev) / (1 - abar),
             (1 - abar_prev) * np.sqrt(1 - beta) / (1 - abar),
             np.sqrt(beta * (1 - abar_prev) / (1 - abar)))
    x_t = _randn(rng, shape, dtype, xp, 1.5)                          # (B, ...), some x0_hat clip
    eps = _randn(rng, shape, dtype, xp)
    z = _randn(rng, shape, dtype, xp) if noise else None
    return (x_t, eps, *(xp.asarray(c.astype(dtype)) for c in coefs), z)


def ddim_case(rng, shape, dtype=np.float32, eta=1.0, noise=True, xp=np):
    """(x_t, eps_hat, abar, abar_next, sigma, z) for ddim_step."""
    B = shape[0]
    abar, abar_next = _abar_pair(rng, B)
    sigma = eta * np.sqrt((1 - abar_next) / (1 - abar)) * np.sqrt(1 - abar / abar_next)
    x_t = _randn(rng, shape, dtype, xp, 1.5)
    eps = _randn(rng, shape, dtype, xp)
    z = _randn(rng, shape, dtype, xp) if noise else None
    return (x_t, eps, *(xp.asarray(c.astype(dtype)) for c in (abar, abar_next, sigma)), z)


def solver_case(rng, shape, dtype=np.float32, n_hist=2, noise=True, separate_eval=False, xp=np):
    """(x_eval, model_out, x, x0_prev, a, b, cx, c0, c1, c2, sigma, z) for solver_step, per-sample (B,)
    coefficients; x is x_eval itself unless separate_eval (Heun's corrector)."""
    B = shape[0]
    x_eval = _randn(rng, shape, dtype, xp, 1.5)                       # (B, ...), some x0_hat clip
    x = _randn(rng, shape, dtype, xp) if separate_eval else x_eval
    out = _randn(rng, shape, dtype, xp)
    hist = tuple(_randn(rng, shape, dtype, xp, 0.5) for _ in range(n_hist))
    coefs = [xp.asarray(rng.uniform(lo, hi, B).astype(dtype)) for lo, hi in
             ((0.5, 2.0), (-1.5, 1.5), (0.1, 1.0), (0.2, 1.2), (-0.8, 0.8), (-0.4, 0.4), (0.0, 0.6))]
    z = _randn(rng, shape, dtype, xp) if noise else None
    return (x_eval, out, x, hist, *coefs, z)


def _assert_raises(exc, match, fn, *args):
    """fn(*args) raises exc whose message contains `match`."""
    try:
        fn(*args)
    except exc as e:
        assert match in str(e), f"{exc.__name__} message {str(e)!r} does not name {match!r}"
    else:
        raise AssertionError(f"{getattr(fn, '__name__', fn)} did not raise {exc.__name__} ({match})")


def check_attention_errors(forward, backward, xp=np):
    """Assert an attention forward(qkv, heads, scale) / backward(d_out, qkv, P, heads, scale)
    pair rejects each mis-shaped argument with a ValueError that names it."""
    qkv = xp.zeros((2, 4, 6), np.float32)                                    # C = 2
    _assert_raises(ValueError, "qkv", forward, xp.zeros((2, 4, 5), np.float32), 1, 1.0)
    _assert_raises(ValueError, "heads", forward, qkv, 3, 1.0)
    _assert_raises(ValueError, "d_out", backward, xp.zeros((2, 4, 3), np.float32), qkv,
                   xp.zeros((2, 2, 4, 4), np.float32), 2, 1.0)
    _assert_raises(ValueError, "P", backward, xp.zeros((2, 4, 2), np.float32), qkv,
                   xp.zeros((2, 1, 4, 4), np.float32), 2, 1.0)
