"""Fused reverse steps as Numba CUDA kernels: DDPM, DDIM and the solvers' step; maths and arguments as in
sampling/reference.py.

Arrays are CuPy (zero-copy through `__cuda_array_interface__`) or NumPy under
the CUDA simulator.
"""
from numba import cuda

from ..runtime.cuda_launch import TPB, as_kernel_arg, blocks_for
from .reference import ddim_coefficients, ddpm_coefficients, prepare_step, solver_kernel_args


# Thread mapping: one thread per element n = b*D + d of (B, D); it reads
# x_t[n], eps[n], z[n] and sample b's coefficients and writes x0[n], x_prev[n]
# only, so x_prev may be x_t itself.
@cuda.jit(cache=True)
def ddpm_step_kernel(x_t, eps, a, bm, c1, c2, sigma, z, clip, has_noise, x_prev, x0):
    n = cuda.grid(1)
    B, D = x_t.shape
    if n >= B * D:
        return
    b, d = n // D, n % D
    xt = x_t[b, d]
    x0v = a[b] * xt - bm[b] * eps[b, d]
    if clip:
        x0v = min(max(x0v, -1.0), 1.0)
    new = c1[b] * x0v + c2[b] * xt
    if has_noise:
        new += sigma[b] * z[b, d]
    x0[b, d] = x0v
    x_prev[b, d] = new


# Thread mapping: one thread per element n = b*D + d, as ddpm_step_kernel.
@cuda.jit(cache=True)
def ddim_step_kernel(x_t, eps, a, bm, sa, s1a, san, dirc, sigma, z, clip, has_noise, x_next, x0):
    n = cuda.grid(1)
    B, D = x_t.shape
    if n >= B * D:
        return
    b, d = n // D, n % D
    xt = x_t[b, d]
    e = eps[b, d]
    x0v = a[b] * xt - bm[b] * e
    if clip:
        x0v = min(max(x0v, -1.0), 1.0)
        e = (xt - sa[b] * x0v) / s1a[b]
    new = san[b] * x0v + dirc[b] * e
    if has_noise:
        new += sigma[b] * z[b, d]
    x0[b, d] = x0v
    x_next[b, d] = new


# Thread mapping: one thread per element n = b*D + d, as ddpm_step_kernel; it reads the
# inputs at (b, d) and writes x0 and x_next there only. n_hist of h1, h2 are read.
@cuda.jit(cache=True)
def solver_step_kernel(x_eval, out, x, h1, h2, z, a, b, cx, c0, c1, c2, sigma, clip, n_hist, has_noise,
                       x_next, x0):
    n = cuda.grid(1)
    B, D = x_eval.shape
    if n >= B * D:
        return
    r, d = n // D, n % D
    x0v = a[r] * x_eval[r, d] + b[r] * out[r, d]
    if clip:
        x0v = min(max(x0v, -1.0), 1.0)
    new = cx[r] * x[r, d] + c0[r] * x0v
    if n_hist > 0:
        new += c1[r] * h1[r, d]
    if n_hist > 1:
        new += c2[r] * h2[r, d]
    if has_noise:
        new += sigma[r] * z[r, d]
    x0[r, d] = x0v
    x_next[r, d] = new


def ddpm_step_cuda(x_t, eps_hat, sqrt_recip_abar, sqrt_recipm1_abar, c1, c2, sigma,
                   z=None, clip=True, out=None, x0_out=None):
    """(x_prev, x0_hat) in one kernel launch; see sampling.ddpm_step_reference."""
    x, eps, z, out, x0_out, x_prev, x0 = prepare_step(x_t, eps_hat, z, out, x0_out)
    B = x.shape[0]
    coefs = ddpm_coefficients(sqrt_recip_abar, sqrt_recipm1_abar, c1, c2, sigma, B, x)   # 5 x (B,)
    args = [x, eps, *coefs, x if z is None else z]
    ddpm_step_kernel[blocks_for(x.size), TPB](*map(as_kernel_arg, args), bool(clip), z is not None,
                                              as_kernel_arg(x_prev), as_kernel_arg(x0))
    return out, x0_out


def ddim_step_cuda(x_t, eps_hat, abar, abar_next, sigma, z=None, clip=True, out=None, x0_out=None):
    """(x_next, x0_hat) in one kernel launch; see sampling.ddim_step_reference."""
    x, eps, z, out, x0_out, x_next, x0 = prepare_step(x_t, eps_hat, z, out, x0_out)
    coefs = ddim_coefficients(abar, abar_next, sigma, x.shape[0], x)  # 7 x (B,)
    args = [x, eps, *coefs, x if z is None else z]
    ddim_step_kernel[blocks_for(x.size), TPB](*map(as_kernel_arg, args), bool(clip), z is not None,
                                              as_kernel_arg(x_next), as_kernel_arg(x0))
    return out, x0_out


def solver_step_cuda(x_eval, model_out, x, x0_prev, a, b, cx, c0, c1, c2, sigma,
                     z=None, clip=True, out=None, x0_out=None):
    """(x_next, x0_hat) in one kernel launch; see sampling.solver_step_reference."""
    args, n_hist, out, x0_out, x_next, x0 = solver_kernel_args(x_eval, model_out, x, x0_prev, a, b, cx, c0, c1,
                                                                c2, sigma, z, out, x0_out)
    solver_step_kernel[blocks_for(x_next.size), TPB](*map(as_kernel_arg, args), bool(clip), n_hist, z is not None,
                                                     as_kernel_arg(x_next), as_kernel_arg(x0))
    return out, x0_out
