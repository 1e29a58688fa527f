"""Each sampler's update written out again, independently of minidiff, in the variables of its source.

minidiff's kernels run every update in VP variables as one linear combination
(kernels/sampling/solvers.py). Here each is transcribed from where it comes from:

    DPM-Solver++ 1 and 2M     the paper's Algorithm 2, VP variables and log-SNR lambda (arXiv 2211.01095)
    DPM-Solver++ 3M           the exact integral of the quadratic through the last three data predictions,
                              sigma_next integral e^lambda P(lambda) d lambda, by 24-point Gauss-Legendre
    DPM-Solver++ 2M SDE       k-diffusion's sample_dpmpp_2m_sde, in its VE variables (x~, s, t = -log s)
    Euler, Heun, Euler anc.   k-diffusion's sample_euler / sample_heun / sample_euler_ancestral (VE)
    DDIM                      Song et al. eq. 12

Arrays are float64. `reference_run` chains them into whole sampler runs (warm-up
and final orders as diffusers states them), drawing noise in the order minidiff does.
"""
import math

import numpy as np


def vp(abar):
    return math.sqrt(abar), math.sqrt(1 - abar)


def log_snr(abar):
    return math.inf if abar == 1 else 0.5 * math.log(abar / (1 - abar))


def karras_s(abar):
    return math.sqrt((1 - abar) / abar)


def x0_from(objective, out, x, abar, clip):
    """The model output as a data prediction (docs/equations.md), clipped to [-1, 1] when asked."""
    alpha, sigma = vp(abar)
    if objective == "eps":
        x0 = (x - sigma * out) / alpha
    else:
        x0 = out if objective == "x0" else alpha * x - sigma * out
    return np.clip(x0, -1, 1) if clip else x0


# ---- DPM-Solver++ -------------------------------------------------------------------------------
def dpmpp_update(x, ms, lams, abar_t, abar_next):
    """Order len(ms): ms = [m0, m1, m2] the data predictions at log-SNRs lams = [lambda_t, lambda_1, lambda_2]."""
    if abar_next == 1:
        return ms[0]                                              # the final denoising step
    (_, sigma_t), (alpha_n, sigma_n) = vp(abar_t), vp(abar_next)
    lam_n = log_snr(abar_next)
    h = lam_n - lams[0]
    if len(ms) == 1:                                              # Algorithm 2, first step
        return sigma_n / sigma_t * x - alpha_n * (math.exp(-h) - 1) * ms[0]
    if len(ms) == 2:                                              # Algorithm 2, later steps
        r = (lams[0] - lams[1]) / h
        D = (1 + 1 / (2 * r)) * ms[0] - 1 / (2 * r) * ms[1]
        return sigma_n / sigma_t * x - alpha_n * (math.exp(-h) - 1) * D
    nodes, weights = np.polynomial.legendre.leggauss(24)          # on [-1, 1]
    lam = lams[0] + (nodes + 1) * h / 2                           # on [lambda_t, lambda_next]
    integral = 0
    for k in range(3):                                            # Lagrange basis through lams[0..2]
        basis = np.prod([(lam - lams[j]) / (lams[k] - lams[j]) for j in range(3) if j != k], axis=0)
        integral = integral + np.sum(weights * np.exp(lam) * basis) * h / 2 * ms[k]
    return sigma_n / sigma_t * x + sigma_n * integral


def dpmpp_2m_sde_update(x, ms, h_last, abar_t, abar_next, eta, z):
    """k-diffusion's sample_dpmpp_2m_sde (midpoint), one step, in its VE variables x~ = x / alpha."""
    if abar_next == 1:
        return ms[0]
    (alpha_t, _), (alpha_n, _) = vp(abar_t), vp(abar_next)
    s, s_n = karras_s(abar_t), karras_s(abar_next)
    xs = x / alpha_t
    t, t_n = -math.log(s), -math.log(s_n)
    h = t_n - t
    eta_h = eta * h
    xs = s_n / s * math.exp(-eta_h) * xs + -math.expm1(-h - eta_h) * ms[0]
    if len(ms) > 1:
        r = h_last / h
        xs = xs + 0.5 * -math.expm1(-h - eta_h) * (1 / r) * (ms[0] - ms[1])
    if eta:
        xs = xs + z * s_n * math.sqrt(-math.expm1(-2 * eta_h))
    return alpha_n * xs


# ---- Karras et al. / k-diffusion ----------------------------------------------------------------
def euler_update(x, D, abar_t, abar_next):
    """sample_euler: x~ += (s_next - s) (x~ - D) / s."""
    alpha_t, alpha_n = math.sqrt(abar_t), math.sqrt(abar_next)
    s, s_n = karras_s(abar_t), karras_s(abar_next)
    xs = x / alpha_t
    return alpha_n * (xs + (s_n - s) * (xs - D) / s)


def euler_ancestral_update(x, D, abar_t, abar_next, eta, z):
    """sample_euler_ancestral with get_ancestral_step(s, s_next, eta)."""
    alpha_t, alpha_n = math.sqrt(abar_t), math.sqrt(abar_next)
    s, s_n = karras_s(abar_t), karras_s(abar_next)
    s_up = min(s_n, eta * (s_n ** 2 * (s ** 2 - s_n ** 2) / s ** 2) ** 0.5)
    s_down = (s_n ** 2 - s_up ** 2) ** 0.5
    xs = x / alpha_t
    d = (xs - D) / s
    xs = xs + d * (s_down - s)
    if s_n > 0:
        xs = xs + z * s_up
    return alpha_n * xs


def heun_update(x, D, denoise_at_next, abar_t, abar_next):
    """sample_heun (Karras Algorithm 1): Euler predictor, then the trapezoid; Euler onto s_next = 0.
    denoise_at_next(x_pred) is the data prediction at (x_pred, t_next)."""
    alpha_t, alpha_n = math.sqrt(abar_t), math.sqrt(abar_next)
    s, s_n = karras_s(abar_t), karras_s(abar_next)
    xs = x / alpha_t
    d = (xs - D) / s
    xs_pred = xs + d * (s_n - s)
    if s_n == 0:
        return alpha_n * xs_pred
    d2 = (xs_pred - denoise_at_next(alpha_n * xs_pred)) / s_n
    return alpha_n * (xs + (d + d2) / 2 * (s_n - s))


def ddim_update(x, D, abar_t, abar_next, eta, z):
    """Song et al. 2020, eq. 12, with eps re-derived from D."""
    eps = (x - math.sqrt(abar_t) * D) / math.sqrt(1 - abar_t)
    sig = eta * math.sqrt((1 - abar_next) / (1 - abar_t) * max(1 - abar_t / abar_next, 0))
    out = math.sqrt(abar_next) * D + math.sqrt(max(1 - abar_next - sig ** 2, 0)) * eps
    return out + sig * z if eta > 0 else out


# ---- whole runs ---------------------------------------------------------------------------------
def dpmpp_orders(S, order):
    """diffusers' DPMSolverMultistepScheduler with lower_order_final and final_sigmas_type='zero': warm-up
    lower_order_nums, the last step first order, with S < 15 the one before it at most second order."""
    orders = []
    for i in range(S):
        if i == S - 1:
            k = 1
        elif i == S - 2 and S < 15:
            k = min(order, 2, i + 1)
        else:
            k = min(order, i + 1)
        orders.append(k)
    return orders


def reference_run(sampler, model, objective, abar, timesteps, x, clip=False, eta=None, rng=None):
    """A whole run of `sampler` over the descending `timesteps`, from x (float64), with model.forward(x, t).

    Noise: z = rng.standard_normal(x.shape) at each step that takes noise, in minidiff's order
    (ddim with eta > 0: every step; euler_ancestral and dpmpp_2m_sde: every step but the last).
    -> the sample.
    """
    ts = [int(t) for t in timesteps]
    pairs = list(zip(ts, ts[1:] + [-1]))
    ab = lambda t: 1.0 if t < 0 else float(abar[t])

    def D(x, t):
        out = model.forward(x, np.full(x.shape[0], t))
        return x0_from(objective, out, x, ab(t), clip)

    ms, lams, h_last = [], [], None
    orders = dpmpp_orders(len(ts), 3 if sampler == "dpmpp_3m" else 2)
    for i, (t, tn) in enumerate(pairs):
        m0 = D(x, t)
        if sampler == "ddim":
            e = 0.0 if eta is None else eta
            x = ddim_update(x, m0, ab(t), ab(tn), e, rng.standard_normal(x.shape) if e > 0 else None)
        elif sampler == "euler":
            x = euler_update(x, m0, ab(t), ab(tn))
        elif sampler == "euler_ancestral":
            e = 1.0 if eta is None else eta
            z = rng.standard_normal(x.shape) if e > 0 and tn >= 0 else None
            x = euler_ancestral_update(x, m0, ab(t), ab(tn), e, z)
        elif sampler == "heun":
            x = heun_update(x, m0, lambda xp: D(xp, tn), ab(t), ab(tn))
        elif sampler in ("dpmpp_2m", "dpmpp_3m"):
            k = orders[i]
            x = dpmpp_update(x, [m0] + ms[:k - 1], [log_snr(ab(t))] + lams[:k - 1], ab(t), ab(tn))
        elif sampler == "dpmpp_2m_sde":
            e = 1.0 if eta is None else eta
            z = rng.standard_normal(x.shape) if e > 0 and tn >= 0 else None
            x = dpmpp_2m_sde_update(x, [m0] + ms[:1] if i < len(ts) - 1 else [m0], h_last, ab(t), ab(tn), e, z)
            h_last = None if tn < 0 else log_snr(ab(tn)) - log_snr(ab(t))
        else:
            raise ValueError(sampler)
        ms, lams = [m0] + ms[:1], [log_snr(ab(t))] + lams[:1]
    return x
