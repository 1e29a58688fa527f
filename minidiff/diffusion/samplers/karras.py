"""Euler, Heun and Euler ancestral on the probability-flow ODE (Karras et al. 2022, arXiv 2206.00364).

In Karras's variables, the noise level s = sigma / alpha = exp(-lambda) and the
scaled state x~ = x / alpha, the probability-flow ODE of a VP diffusion is

    dx~/ds = (x~ - x0_hat(x~, s)) / s                   (eq. 3 with sigma(t) = t, scaling folded into x~)

    euler            x~_next = x~ + (s_next - s) d,  d = (x~ - x0_hat) / s   (= DDIM with eta = 0)
    heun             predictor x~' = x~ + (s_next - s) d, then d' = (x~' - x0_hat(x~', s_next)) / s_next,
                     x~_next = x~ + (s_next - s) (d + d') / 2     (Algorithm 1; two model calls per step,
                     the last step onto the data, s_next = 0, is Euler's)
    euler_ancestral  the Euler step to s_down, then noise of std s_up (k-diffusion):
                     s_up = min(s_next, eta sqrt(s_next^2 (s^2 - s_next^2) / s^2)),
                     s_down = sqrt(s_next^2 - s_up^2)         (eta = 1: DDIM with eta = 1)

The kernels run each in VP variables, x = alpha x~ (kernels/sampling/solvers.py).
Each sampler yields (x_next, x0_hat) per step; the last x_next is the sample.
"""
from .spacing import timestep_pairs


def euler(denoiser, x, timesteps, noise=None, eta=None):
    """Euler on the probability-flow ODE: one model call per step."""
    from ...kernels import euler_step
    for t, t_next in timestep_pairs(timesteps):
        out = denoiser(x, t)                                          # (B, ...)
        x, x0_hat = euler_step(x, out, denoiser.abar(t), denoiser.abar(t_next), denoiser.objective,
                               clip=denoiser.clip)
        yield x, x0_hat


def heun(denoiser, x, timesteps, noise=None, eta=None):
    """Heun (second order): an Euler predictor and a trapezoidal corrector, two model calls per step."""
    from ...kernels import euler_step, heun_step
    for t, t_next in timestep_pairs(timesteps):
        abar_t, abar_next = denoiser.abar(t), denoiser.abar(t_next)
        out = denoiser(x, t)                                          # (B, ...)
        x_pred, x0_hat = euler_step(x, out, abar_t, abar_next, denoiser.objective, clip=denoiser.clip)
        if t_next >= 0:
            out_pred = denoiser(x_pred, t_next)                       # at the predictor's point
            x, _ = heun_step(x, x_pred, out_pred, x0_hat, abar_t, abar_next, denoiser.objective,
                             clip=denoiser.clip, out=x_pred)
        else:
            x = x_pred
        yield x, x0_hat


def euler_ancestral(denoiser, x, timesteps, noise=None, eta=1.0):
    """Euler ancestral: a deterministic Euler step to s_down and fresh noise of std s_up, one model call per step."""
    from ...kernels import euler_ancestral_step
    for t, t_next in timestep_pairs(timesteps):
        out = denoiser(x, t)                                          # (B, ...)
        z = noise() if eta > 0 and t_next >= 0 else None
        x, x0_hat = euler_ancestral_step(x, out, denoiser.abar(t), denoiser.abar(t_next), z, denoiser.objective,
                                         eta=eta, clip=denoiser.clip)
        yield x, x0_hat
