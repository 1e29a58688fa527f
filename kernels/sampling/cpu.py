"""Fused reverse steps on the CPU (Numba): DDPM, DDIM and the solvers' step; maths and arguments as in
sampling/reference.py."""
import numpy as np
from numba import njit

from .reference import ddim_coefficients, ddpm_coefficients, prepare_step, solver_kernel_args


# Loop mapping: one pass over sample b's row of D values with its coefficients
# held in registers; element d reads x_t, eps, z at d and writes only x0 and
# x_prev at d, so x_prev may be x_t itself (in place). Serial on purpose: the
# update is memory-bound and a parallel launch costs more than the whole pass
# at sampling sizes (measured: 6 us serial vs 60 us with prange for 32x28x28,
# NumPy 47 us). Unsigned d: no negative-index test, so LLVM vectorises the loop.
@njit(cache=True)
def ddpm_step_kernel(x_t, eps, a, bm, c1, c2, sigma, z, clip, has_noise, x_prev, x0):
    for b in range(x_t.shape[0]):
        xt_b, eps_b, z_b, xprev_b, x0_b = x_t[b], eps[b], z[b], x_prev[b], x0[b]   # (D,) rows
        for d in range(np.uint64(x_t.shape[1])):
            xt = xt_b[d]
            x0v = a[b] * xt - bm[b] * eps_b[d]
            if clip:
                x0v = min(max(x0v, -1.0), 1.0)
            new = c1[b] * x0v + c2[b] * xt
            if has_noise:
                new += sigma[b] * z_b[d]
            x0_b[d] = x0v
            xprev_b[d] = new


# Loop mapping: as ddpm_step_kernel, one row b at a time, element d within it.
@njit(cache=True)
def ddim_step_kernel(x_t, eps, a, bm, sa, s1a, san, dirc, sigma, z, clip, has_noise, x_next, x0):
    for b in range(x_t.shape[0]):
        xt_b, eps_b, z_b, xnext_b, x0_b = x_t[b], eps[b], z[b], x_next[b], x0[b]   # (D,) rows
        inv_s1a = 1 / s1a[b]                       # one division per row, not per element
        for d in range(np.uint64(x_t.shape[1])):
            xt = xt_b[d]
            e = eps_b[d]
            x0v = a[b] * xt - bm[b] * e
            if clip:
                x0v = min(max(x0v, -1.0), 1.0)
                e = (xt - sa[b] * x0v) * inv_s1a
            new = san[b] * x0v + dirc[b] * e
            if has_noise:
                new += sigma[b] * z_b[d]
            x0_b[d] = x0v
            xnext_b[d] = new


# Loop mapping: as ddpm_step_kernel, one row b at a time, element d within it; element d
# reads x_eval, out, x, the earlier x0_hats and z at d and writes x0 and x_next at d only,
# so x_next may be x or x_eval (in place). n_hist earlier x0_hats are used (0, 1 or 2;
# the absent ones are placeholders that are never read).
@njit(cache=True)
def solver_step_kernel(x_eval, out, x, h1, h2, z, a, b, cx, c0, c1, c2, sigma, clip, n_hist, has_noise,
                       x_next, x0):
    for r in range(x_eval.shape[0]):
        xe_r, out_r, x_r, h1_r, h2_r, z_r = x_eval[r], out[r], x[r], h1[r], h2[r], z[r]   # (D,) rows
        xnext_r, x0_r = x_next[r], x0[r]
        for d in range(np.uint64(x_eval.shape[1])):
            x0v = a[r] * xe_r[d] + b[r] * out_r[d]
            if clip:
                x0v = min(max(x0v, -1.0), 1.0)
            new = cx[r] * x_r[d] + c0[r] * x0v
            if n_hist > 0:
                new += c1[r] * h1_r[d]
            if n_hist > 1:
                new += c2[r] * h2_r[d]
            if has_noise:
                new += sigma[r] * z_r[d]
            x0_r[d] = x0v
            xnext_r[d] = new


def ddpm_step_cpu(x_t, eps_hat, sqrt_recip_abar, sqrt_recipm1_abar, c1, c2, sigma,
                  z=None, clip=True, out=None, x0_out=None):
    """(x_prev, x0_hat) in one pass; see sampling.ddpm_step_reference."""
    x, eps, z, out, x0_out, x_prev, x0 = prepare_step(x_t, eps_hat, z, out, x0_out)
    B = x.shape[0]
    coefs = ddpm_coefficients(sqrt_recip_abar, sqrt_recipm1_abar, c1, c2, sigma, B, x)   # 5 x (B,)
    ddpm_step_kernel(x, eps, *coefs, x if z is None else z, bool(clip), z is not None, x_prev, x0)
    return out, x0_out


def ddim_step_cpu(x_t, eps_hat, abar, abar_next, sigma, z=None, clip=True, out=None, x0_out=None):
    """(x_next, x0_hat) in one pass; see sampling.ddim_step_reference."""
    x, eps, z, out, x0_out, x_next, x0 = prepare_step(x_t, eps_hat, z, out, x0_out)
    coefs = ddim_coefficients(abar, abar_next, sigma, x.shape[0], x)  # 7 x (B,)
    ddim_step_kernel(x, eps, *coefs, x if z is None else z, bool(clip), z is not None, x_next, x0)
    return out, x0_out


def solver_step_cpu(x_eval, model_out, x, x0_prev, a, b, cx, c0, c1, c2, sigma,
                    z=None, clip=True, out=None, x0_out=None):
    """(x_next, x0_hat) in one pass; see sampling.solver_step_reference."""
    args, n_hist, out, x0_out, x_next, x0 = solver_kernel_args(x_eval, model_out, x, x0_prev, a, b, cx, c0, c1,
                                                                c2, sigma, z, out, x0_out)
    solver_step_kernel(*args, bool(clip), n_hist, z is not None, x_next, x0)
    return out, x0_out
