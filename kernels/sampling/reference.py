"""Fused reverse-step updates: the plain `xp` references.

One reverse step reads x_t and the model's output once and writes x_prev and
x0_hat once (docs/equations.md writes them out). Numba CPU and CUDA versions of
the same updates are in sampling/cpu.py and sampling/cuda.py; all three share
the argument handling below. Per-sample coefficients are (B,) arrays (or
scalars); x is (B, ...) and is viewed as (B, D) inside.

    x0_hat = clip(sqrt_recip_abar x_t - sqrt_recipm1_abar eps_hat, -1, 1)
    DDPM:  x_prev = c1 x0_hat + c2 x_t + sigma z
    DDIM:  eps    = (x_t - sqrt(abar) x0_hat) / sqrt(1 - abar)      (when clipped)
           x_next = sqrt(abar_next) x0_hat + sqrt(1 - abar_next - sigma^2) eps + sigma z
    solver (DPM-Solver++, Euler, Heun, Euler ancestral; coefficients from sampling/solvers.py):
           x0_hat = clip(a x_eval + b out, -1, 1)
           x_next = cx x + c0 x0_hat + c1 x0_1 + c2 x0_2 + sigma z

Outputs: `out` (x_prev / x_next) may be x_t itself (the update is elementwise,
so it runs in place); `x0_out` must not alias an input. z=None: no noise.
"""
from ..xp import get_xp


def per_sample(c, B, like, name):
    """A scalar or (B,) coefficient -> contiguous (B,) array in the dtype and module of `like`."""
    xp = get_xp(like)
    c = xp.asarray(c, dtype=like.dtype)
    if c.ndim == 0:
        c = xp.full(B, c, dtype=like.dtype)
    if c.shape != (B,):
        raise ValueError(f"{name}: expected a scalar or shape ({B},), got {tuple(c.shape)}")
    return xp.ascontiguousarray(c)


def prepare_step(x_t, eps_hat, z, out, x0_out):
    """Validate and flatten: (x_t, eps_hat, z, out, x0_out), then the outputs' (B, D) views.
    The inputs become C-contiguous (B, D) arrays (a copy only when they are not C-contiguous);
    `out` and `x0_out` are allocated C-ordered when None, else must be C-contiguous."""
    xp = get_xp(x_t)
    if x_t.dtype.kind != "f":
        raise TypeError(f"x_t: expected a float array, got {x_t.dtype}")
    if x_t.ndim < 1:
        raise ValueError("x_t: expected shape (B, ...), got a scalar")
    if x_t.shape[0] == 0:
        raise ValueError(f"x_t: expected a batch of B >= 1 samples, got an empty batch {tuple(x_t.shape)}")
    for name, a in (("eps_hat", eps_hat), ("z", z), ("out", out), ("x0_out", x0_out)):
        if a is not None and (tuple(a.shape) != tuple(x_t.shape) or a.dtype != x_t.dtype):
            raise ValueError(f"{name}: expected shape {tuple(x_t.shape)} and dtype {x_t.dtype}, "
                             f"got {tuple(a.shape)} and {a.dtype}")
    for name, a in (("out", out), ("x0_out", x0_out)):
        if a is not None and not a.flags.c_contiguous:
            raise ValueError(f"{name}: expected a C-contiguous array")
    if x0_out is not None and (x0_out is x_t or x0_out is eps_hat):
        raise ValueError("x0_out: must not be x_t or eps_hat (x_t is read after x0_hat is written)")
    # Fresh outputs are C-ordered whatever x_t's layout: the kernels write their (B, D) views,
    # which for any other order would be copies, leaving the returned arrays unwritten.
    out = xp.empty(x_t.shape, dtype=x_t.dtype) if out is None else out
    x0_out = xp.empty(x_t.shape, dtype=x_t.dtype) if x0_out is None else x0_out
    B = x_t.shape[0]
    flat = lambda a: None if a is None else xp.ascontiguousarray(a).reshape(B, -1)   # (B, D)
    return flat(x_t), flat(eps_hat), flat(z), out, x0_out, out.reshape(B, -1), x0_out.reshape(B, -1)


def ddpm_coefficients(sqrt_recip_abar, sqrt_recipm1_abar, c1, c2, sigma, B, like):
    """The five DDPM coefficients as (B,) arrays: (1/sqrt(abar), sqrt(1/abar - 1), c1, c2, sigma)."""
    return [per_sample(c, B, like, n) for c, n in (
        (sqrt_recip_abar, "sqrt_recip_abar"), (sqrt_recipm1_abar, "sqrt_recipm1_abar"),
        (c1, "c1"), (c2, "c2"), (sigma, "sigma"))]


def ddim_coefficients(abar, abar_next, sigma, B, like):
    """(B,) arrays (1/sqrt(abar), sqrt(1/abar - 1), sqrt(abar), sqrt(1 - abar),
    sqrt(abar_next), sqrt(1 - abar_next - sigma^2), sigma)."""
    xp = get_xp(like)
    abar = per_sample(abar, B, like, "abar")
    abar_next = per_sample(abar_next, B, like, "abar_next")
    sigma = per_sample(sigma, B, like, "sigma")
    return (1 / xp.sqrt(abar), xp.sqrt(1 / abar - 1), xp.sqrt(abar), xp.sqrt(1 - abar),
            xp.sqrt(abar_next), xp.sqrt(xp.maximum(1 - abar_next - sigma ** 2, 0)), sigma)


def ddpm_step_reference(x_t, eps_hat, sqrt_recip_abar, sqrt_recipm1_abar, c1, c2, sigma,
                        z=None, clip=True, out=None, x0_out=None):
    """(x_prev, x0_hat): x_prev = c1 x0_hat + c2 x_t + sigma z, x0_hat from eps_hat (clipped)."""
    xp = get_xp(x_t)
    x, eps, z, out, x0_out, x_prev, x0 = prepare_step(x_t, eps_hat, z, out, x0_out)
    B = x.shape[0]
    a, bm, c1, c2, sigma = (c[:, None] for c in                                          # (B, 1)
                            ddpm_coefficients(sqrt_recip_abar, sqrt_recipm1_abar, c1, c2, sigma, B, x))
    x0[...] = a * x - bm * eps                                         # (B, D)
    if clip:
        xp.clip(x0, -1, 1, out=x0)
    mean = c1 * x0 + c2 * x                                            # (B, D)
    x_prev[...] = mean if z is None else mean + sigma * z
    return out, x0_out


def ddim_step_reference(x_t, eps_hat, abar, abar_next, sigma, z=None, clip=True,
                        out=None, x0_out=None):
    """(x_next, x0_hat): x_next = sqrt(abar_next) x0_hat + sqrt(1 - abar_next - sigma^2) eps + sigma z."""
    xp = get_xp(x_t)
    x, eps, z, out, x0_out, x_next, x0 = prepare_step(x_t, eps_hat, z, out, x0_out)
    B = x.shape[0]
    a, bm, sa, s1a, san, dirc, sigma = (c[:, None] for c in ddim_coefficients(abar, abar_next, sigma, B, x))
    x0[...] = a * x - bm * eps                                         # (B, D)
    if clip:
        xp.clip(x0, -1, 1, out=x0)
        eps = (x - sa * x0) / s1a                                      # (B, D), re-derived
    new = san * x0 + dirc * eps                                        # (B, D)
    x_next[...] = new if z is None else new + sigma * z
    return out, x0_out


def prepare_solver_step(x_eval, model_out, x, x0_prev, z, out, x0_out):
    """prepare_step for solver_step: also checks x and the earlier x0_hats (0 to 2 of them)
    -> (x_eval, model_out, x, x0_prev, z) as (B, D) views, out, x0_out, and their (B, D) views."""
    x0_prev = tuple(x0_prev)
    if len(x0_prev) > 2:
        raise ValueError(f"x0_prev: expected at most 2 earlier x0_hat arrays, got {len(x0_prev)}")
    for name, a in [("x", x)] + [(f"x0_prev[{k}]", h) for k, h in enumerate(x0_prev)]:
        if a is None or tuple(a.shape) != tuple(x_eval.shape) or a.dtype != x_eval.dtype:
            raise ValueError(f"{name}: expected shape {tuple(x_eval.shape)} and dtype {x_eval.dtype}, "
                             f"got {getattr(a, 'shape', None)} and {getattr(a, 'dtype', None)}")
    if x0_out is not None and any(x0_out is a for a in (x, *x0_prev)):
        raise ValueError("x0_out: must not be x or an earlier x0_hat (they are read after x0_hat is written)")
    xe, mo, z, out, x0_out, x_next, x0 = prepare_step(x_eval, model_out, z, out, x0_out)
    B = xe.shape[0]
    xp = get_xp(x_eval)
    flat = lambda a: xp.ascontiguousarray(a).reshape(B, -1)                 # (B, D)
    return xe, mo, flat(x), tuple(flat(h) for h in x0_prev), z, out, x0_out, x_next, x0


def solver_kernel_args(x_eval, model_out, x, x0_prev, a, b, cx, c0, c1, c2, sigma, z, out, x0_out):
    """What the CPU and CUDA solver_step kernels take: (inputs, n_hist, out, x0_out, x_next, x0), inputs =
    [x_eval, model_out, x, h1, h2, z, a, b, cx, c0, c1, c2, sigma] as (B, D) and (B,) arrays; the earlier
    x0_hats missing from h1, h2 and a missing z are placeholders (x), never read."""
    xe, mo, xb, hist, z, out, x0_out, x_next, x0 = prepare_solver_step(x_eval, model_out, x, x0_prev, z, out,
                                                                       x0_out)
    coefs = solver_coefficients(a, b, cx, c0, c1, c2, sigma, xe.shape[0], xe)      # 7 x (B,)
    h1, h2 = (hist + (xb, xb))[:2]
    return [xe, mo, xb, h1, h2, xb if z is None else z, *coefs], len(hist), out, x0_out, x_next, x0


def solver_coefficients(a, b, cx, c0, c1, c2, sigma, B, like):
    """The seven solver coefficients as (B,) arrays in the dtype and module of `like`."""
    return [per_sample(c, B, like, n) for c, n in (
        (a, "a"), (b, "b"), (cx, "cx"), (c0, "c0"), (c1, "c1"), (c2, "c2"), (sigma, "sigma"))]


def solver_step_reference(x_eval, model_out, x, x0_prev, a, b, cx, c0, c1, c2, sigma,
                          z=None, clip=True, out=None, x0_out=None):
    """(x_next, x0_hat): x0_hat = clip(a x_eval + b out), x_next = cx x + c0 x0_hat + c1 x0_1 + c2 x0_2 + sigma z.

    x0_prev: a tuple of 0, 1 or 2 earlier x0_hat arrays (x0_1, x0_2); their coefficients
    beyond its length are ignored. sampling/solvers.py gives the coefficients of each sampler.
    """
    xp = get_xp(x_eval)
    xe, mo, xb, hist, z, out, x0_out, x_next, x0 = prepare_solver_step(x_eval, model_out, x, x0_prev, z, out,
                                                                       x0_out)
    B = xe.shape[0]
    a, b, cx, c0, c1, c2, sigma = (c[:, None] for c in solver_coefficients(a, b, cx, c0, c1, c2, sigma, B, xe))
    x0[...] = a * xe + b * mo                                          # (B, D)
    if clip:
        xp.clip(x0, -1, 1, out=x0)
    new = cx * xb + c0 * x0                                            # (B, D)
    for c, h in zip((c1, c2), hist):
        new = new + c * h
    x_next[...] = new if z is None else new + sigma * z
    return out, x0_out
