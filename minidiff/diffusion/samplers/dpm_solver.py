"""DPM-Solver++ (Lu et al. 2022, arXiv 2211.01095): multistep, data prediction, orders 2 and 3, and its SDE variant.

The probability-flow ODE written for the data prediction x0_hat(x, lambda), in
log-SNR lambda = log(alpha / sigma), has the exact solution (the paper's eq. 9)

    x_t / sigma_t = x_s / sigma_s + integral_{lambda_s}^{lambda_t} e^lambda x0_hat(x_lambda, lambda) d lambda

DPM-Solver++ integrates e^lambda exactly and approximates x0_hat by the
polynomial through the last k data predictions (multistep: one model call per
step). With h = lambda_next - lambda_t and r = h_prev / h (kernels/sampling/solvers.py,
dpmpp_coefficients, has every coefficient):

    order 1 (= DDIM):  x_next = (sigma_next / sigma_t) x_t - alpha_next (e^-h - 1) x0_hat_t
    2M (Algorithm 2):  the same with x0_hat_t replaced by D = (1 + 1/(2r)) x0_hat_t - 1/(2r) x0_hat_prev
    3M:                the quadratic through the last three data predictions, integrated exactly
    2M SDE:            x_next = (sigma_next/sigma_t) e^-h x_t + alpha_next (1 - e^-2h) D
                                + sigma_next sqrt(1 - e^-2h) z          (eta = 1; eta scales the noise)

Lower orders where the history is short or the end near, as the paper's code and
diffusers do: order min(k, i + 1) at step i (warm-up), the last step (onto the
data, abar = 1, where h is infinite) is first order, x_next = x0_hat, and with
fewer than 15 steps 3M's step before it is at most second order
(diffusers' lower_order_final).
"""
from .spacing import timestep_pairs

LOWER_ORDER_FINAL_BELOW = 15          # diffusers: with fewer steps, lower orders on the final steps


def step_orders(num_steps, order):
    """The order of each of the num_steps updates (the last one lands on the data).   -> list of ints"""
    orders = [min(order, i + 1) for i in range(num_steps)]
    orders[-1] = 1
    if num_steps >= 2 and num_steps < LOWER_ORDER_FINAL_BELOW:
        orders[-2] = min(orders[-2], 2)
    return orders


def dpm_solver_pp(denoiser, x, timesteps, order=2, eta=0.0, noise=None):
    """DPM-Solver++ multistep of `order` (2 or 3) over the descending timesteps, from x (B, ...) at timesteps[0].

    eta > 0 (order 2): the SDE variant, drawing z = noise() at every step but the last.
    Yields (x_next, x0_hat) per step; the last x_next is the sample.
    """
    from ...kernels import dpmpp_step
    x0_prev, lambda_prev = (), ()                                     # most recent first
    for (t, t_next), k in zip(timestep_pairs(timesteps), step_orders(len(timesteps), order)):
        out = denoiser(x, t)                                          # (B, ...)
        z = noise() if eta > 0 and t_next >= 0 else None
        x, x0_hat = dpmpp_step(x, out, denoiser.abar(t), denoiser.abar(t_next), denoiser.objective,
                               x0_prev[:k - 1], lambda_prev[:k - 1], eta=eta, z=z, clip=denoiser.clip)
        x0_prev, lambda_prev = (x0_hat,) + x0_prev[:1], (denoiser.log_snr(t),) + lambda_prev[:1]
        yield x, x0_hat


def dpmpp_2m(denoiser, x, timesteps, noise=None, eta=None):
    """DPM-Solver++(2M): the paper's Algorithm 2, one model call per step."""
    return dpm_solver_pp(denoiser, x, timesteps, order=2)


def dpmpp_3m(denoiser, x, timesteps, noise=None, eta=None):
    """DPM-Solver++(3M): third-order multistep (kernels/sampling/solvers.py says how it differs from diffusers')."""
    return dpm_solver_pp(denoiser, x, timesteps, order=3)


def dpmpp_2m_sde(denoiser, x, timesteps, noise=None, eta=1.0):
    """DPM-Solver++(2M) SDE (midpoint form, as k-diffusion and diffusers): 2M plus fresh noise each step."""
    return dpm_solver_pp(denoiser, x, timesteps, order=2, eta=eta, noise=noise)
