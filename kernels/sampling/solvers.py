"""The few-step samplers' updates as the coefficients of one fused step (solver_step_* runs it).

Every update of DPM-Solver++ (Lu et al. 2022, arXiv 2211.01095), Euler, Heun and
Euler ancestral (Karras et al. 2022, arXiv 2206.00364) is, once the model has
been called, one elementwise linear combination:

    x0_hat = clip(a x_eval + b out)                                  the data prediction
    x_next = cx x + c0 x0_hat + c1 x0_1 + c2 x0_2 + sigma z           x0_1, x0_2: earlier x0_hats

out is the model's output at (x_eval, t), x the state the step starts from
(x_eval itself except in Heun's corrector), x0_1 and x0_2 data predictions kept
from earlier model calls. The functions below compute (a, b) and (cx, c0, c1,
c2, sigma) on the host in float64 from the noise levels of the two timesteps.

Notation (VP, as docs/equations.md): alpha = sqrt(abar), sigma = sqrt(1 - abar),
log-SNR lambda = log(alpha / sigma); Karras's noise level s = sigma / alpha =
exp(-lambda) with the scaled state x~ = x / alpha. abar_next = 1 is the clean
data (sigma = 0, lambda = +inf): every sampler's step onto it is the denoiser,
x_next = x0_hat.
"""
import math

OBJECTIVES = ("eps", "x0", "v")


def _check_abar(abar, name, allow_one=False):
    abar = float(abar)
    if not (0.0 < abar < 1.0 or (allow_one and abar == 1.0)):
        raise ValueError(f"{name}: expected a number in (0, 1{']' if allow_one else ')'}, got {abar!r}")
    return abar


def _check_pair(abar_t, abar_next):
    """abar_t in (0, 1), abar_next in (abar_t, 1]: a step towards the data."""
    abar_t = _check_abar(abar_t, "abar_t")
    abar_next = _check_abar(abar_next, "abar_next", allow_one=True)
    if not abar_next > abar_t:
        raise ValueError(f"abar_next: expected abar_next > abar_t (a step towards the data), "
                         f"got abar_t={abar_t!r}, abar_next={abar_next!r}")
    return abar_t, abar_next


def vp(abar):
    """(alpha, sigma) = (sqrt(abar), sqrt(1 - abar))."""
    return math.sqrt(abar), math.sqrt(1.0 - abar)


def log_snr(abar):
    """lambda = log(alpha / sigma) = log(abar / (1 - abar)) / 2; +inf at abar = 1."""
    return math.inf if abar == 1.0 else 0.5 * (math.log(abar) - math.log1p(-abar))


def x0_coefficients(objective, abar):
    """(a, b) with x0_hat = a x + b out for the model's objective at noise level abar:

        eps:  x0 = (x - sigma eps) / alpha       a = 1/alpha, b = -sigma/alpha
        x0:   x0 = out                            a = 0,       b = 1
        v:    x0 = alpha x - sigma v              a = alpha,   b = -sigma
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective: expected one of {list(OBJECTIVES)}, got {objective!r}")
    alpha, sigma = vp(_check_abar(abar, "abar"))
    return {"eps": (1.0 / alpha, -sigma / alpha), "x0": (0.0, 1.0), "v": (alpha, -sigma)}[objective]


def dpmpp_coefficients(abar_t, abar_next, lambda_prev=(), eta=0.0):
    """(cx, c0, c1, c2, sigma) of DPM-Solver++'s multistep update of order 1 + len(lambda_prev).

    With h = lambda_next - lambda_t and the earlier evaluation points' log-SNRs
    lambda_prev = (lambda_1, lambda_2) (most recent first), h_k = the gaps between them:

    order 1 (DDIM):   x_next = (sigma_next/sigma_t) x - alpha_next (e^-h - 1) m0
    order 2 (2M, the paper's Algorithm 2), r = h_1 / h with h_1 = lambda_t - lambda_1:
                      D = (1 + 1/(2r)) m0 - 1/(2r) m1
                      x_next = (sigma_next/sigma_t) x - alpha_next (e^-h - 1) D
    order 3 (3M), r0 = h_1/h, r1 = (lambda_1 - lambda_2)/h:
                      D1_0 = (m0 - m1)/r0,  D1_1 = (m1 - m2)/r1
                      D1 = D1_0 + r0/(r0 + r1) (D1_0 - D1_1)       (= h m'(lambda_t) for a quadratic m)
                      D2 = 2 (D1_0 - D1_1)/(r0 + r1)                (= h^2 m''(lambda_t) for a quadratic m)
                      x_next = (sigma_next/sigma_t) x - alpha_next phi1 m0 + alpha_next phi2 D1
                               - alpha_next phi3 D2
                      phi1 = e^-h - 1, phi2 = phi1/h + 1, phi3 = (phi1 + h)/h^2 - 1/2
                      This integrates the quadratic through (lambda_k, m_k) exactly, as the paper's
                      Taylor form of eq. (9) asks (the e^lambda (lambda - lambda_t)^2 / 2 term is
                      -alpha_next h^2 phi3 m''). DPM-Solver's and diffusers' multistep third-order
                      code uses D2 without the factor 2 (their singlestep "taylor" update has it),
                      which leaves an O(h^3) local error: order 2, measured in
                      tests/diffusion/samplers/test_convergence.py.
    eta > 0: the SDE variant (DPM-Solver++(2M) SDE; k-diffusion's sample_dpmpp_2m_sde,
    midpoint form, in VP variables), orders 1 and 2:
                      x_next = (sigma_next/sigma_t) e^(-eta h) x + alpha_next (1 - e^(-(1+eta) h)) D
                               + sigma_next sqrt(1 - e^(-2 eta h)) z
    (eta = 0 is the ODE update; eta = 1 and order 1 is DDPM's posterior step.)

    m0, m1, m2 are the data predictions at t, lambda_1, lambda_2; the coefficients
    returned multiply (x, m0, m1, m2, z). abar_next = 1 (the data) allows order 1 only.
    """
    abar_t, abar_next = _check_pair(abar_t, abar_next)
    order = 1 + len(lambda_prev)
    if not 1 <= order <= 3:
        raise ValueError(f"lambda_prev: expected 0 to 2 earlier log-SNRs, got {len(lambda_prev)}")
    eta = float(eta)
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta: expected a number in [0, 1], got {eta!r}")
    if eta > 0 and order > 2:
        raise ValueError("eta: the SDE variant is implemented for orders 1 and 2 (2M SDE), got order 3")
    if abar_next == 1.0:
        if order != 1:
            raise ValueError(f"lambda_prev: the step onto the data (abar_next = 1) is first order, got order {order}")
        return 0.0, 1.0, 0.0, 0.0, 0.0                       # x_next = m0, the denoiser
    sigma_t, (alpha_n, sigma_n) = vp(abar_t)[1], vp(abar_next)
    lam_t, lam_n = log_snr(abar_t), log_snr(abar_next)
    h = lam_n - lam_t
    lams = (lam_t,) + tuple(float(v) for v in lambda_prev)
    if any(not a > b for a, b in zip(lams, lams[1:])):
        raise ValueError(f"lambda_prev: expected log-SNRs decreasing into the past, got "
                         f"lambda_t={lam_t!r}, lambda_prev={tuple(lambda_prev)!r}")
    if eta > 0:
        cx = sigma_n / sigma_t * math.exp(-eta * h)
        k = -alpha_n * math.expm1(-(1.0 + eta) * h)                    # alpha_next (1 - e^(-(1+eta) h))
        noise = sigma_n * math.sqrt(-math.expm1(-2.0 * eta * h))
    else:
        cx, k, noise = sigma_n / sigma_t, -alpha_n * math.expm1(-h), 0.0
    if order == 1:
        return cx, k, 0.0, 0.0, noise
    if order == 2:
        r = (lam_t - lams[1]) / h
        return cx, k * (1.0 + 0.5 / r), -k * 0.5 / r, 0.0, noise
    r0, r1 = (lam_t - lams[1]) / h, (lams[1] - lams[2]) / h
    phi1 = math.expm1(-h)
    phi2 = phi1 / h + 1.0
    phi3 = (phi1 + h) / h ** 2 - 0.5
    d10 = (1.0 / r0, -1.0 / r0, 0.0)                                   # D1_0 over (m0, m1, m2)
    d11 = (0.0, 1.0 / r1, -1.0 / r1)                                   # D1_1
    d1 = tuple(p + r0 / (r0 + r1) * (p - q) for p, q in zip(d10, d11))
    d2 = tuple(2.0 * (p - q) / (r0 + r1) for p, q in zip(d10, d11))
    c = [alpha_n * (phi2 * u - phi3 * w) for u, w in zip(d1, d2)]
    c[0] -= alpha_n * phi1
    return cx, c[0], c[1], c[2], 0.0


def _karras_s(abar):
    """s = sigma / alpha = sqrt((1 - abar) / abar), 0 at abar = 1."""
    return math.sqrt((1.0 - abar) / abar)


def euler_coefficients(abar_t, abar_next):
    """(cx, c0) of an Euler step on the probability-flow ODE dx~/ds = (x~ - x0_hat) / s:

        x~_next = x~ + (s_next - s) (x~ - x0_hat) / s
        x_next  = alpha_next x~_next = (sigma_next/sigma_t) x + alpha_next (1 - s_next/s) x0_hat

    (the same numbers as DDIM with eta = 0 and DPM-Solver++ of order 1).
    """
    abar_t, abar_next = _check_pair(abar_t, abar_next)
    s, s_n = _karras_s(abar_t), _karras_s(abar_next)
    alpha_n = math.sqrt(abar_next)
    return alpha_n * s_n / (math.sqrt(abar_t) * s), alpha_n * (1.0 - s_n / s)


def ancestral_split(s, s_next, eta=1.0):
    """(s_down, s_up) of k-diffusion's get_ancestral_step: the deterministic step goes to
    s_down, then noise of std s_up is added, s_down^2 + s_up^2 = s_next^2:

        s_up = min(s_next, eta sqrt(s_next^2 (s^2 - s_next^2) / s^2)),  s_down = sqrt(s_next^2 - s_up^2)
    """
    s_up = min(s_next, eta * math.sqrt(s_next ** 2 * (s ** 2 - s_next ** 2) / s ** 2))
    return math.sqrt(s_next ** 2 - s_up ** 2), s_up


def euler_ancestral_coefficients(abar_t, abar_next, eta=1.0):
    """(cx, c0, sigma) of an Euler ancestral step (k-diffusion's sample_euler_ancestral):

        x~_next = x~ + (s_down - s) (x~ - x0_hat) / s + s_up z
        x_next  = alpha_next (s_down/s) x / alpha_t + alpha_next (1 - s_down/s) x0_hat + alpha_next s_up z

    eta = 1 equals DDIM with eta = 1; eta = 0 is Euler.
    """
    abar_t, abar_next = _check_pair(abar_t, abar_next)
    eta = float(eta)
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta: expected a number in [0, 1], got {eta!r}")
    s, s_n = _karras_s(abar_t), _karras_s(abar_next)
    s_down, s_up = ancestral_split(s, s_n, eta)
    alpha_t, alpha_n = math.sqrt(abar_t), math.sqrt(abar_next)
    return alpha_n * s_down / (alpha_t * s), alpha_n * (1.0 - s_down / s), alpha_n * s_up


def heun_coefficients(abar_t, abar_next):
    """(cx, c0, c1) of Heun's corrector (Karras et al. 2022, Algorithm 1), s_next > 0.

    With d = (x~ - D)/s, the Euler predictor x~' = x~ + (s_next - s) d, D' the data
    prediction at (x~', s_next) and d' = (x~' - D')/s_next:

        x~_next = x~ + (s_next - s) (d + d') / 2
                = (s_next/s) x~ - (s_next - s)(2 s_next - s)/(2 s s_next) D - (s_next - s)/(2 s_next) D'

    In x = alpha x~: cx = sigma_next/sigma_t; c0 multiplies D' (the fresh x0_hat), c1 D
    (the predictor's). The step onto the data (s_next = 0) is Euler's.
    """
    abar_t, abar_next = _check_pair(abar_t, abar_next)
    if abar_next == 1.0:
        raise ValueError("abar_next: Heun's corrector needs s_next > 0; the last step (abar_next = 1) is Euler's")
    s, s_n = _karras_s(abar_t), _karras_s(abar_next)
    alpha_t, alpha_n = math.sqrt(abar_t), math.sqrt(abar_next)
    dt = s_n - s
    return (alpha_n * s_n / (alpha_t * s), -alpha_n * dt / (2.0 * s_n),
            -alpha_n * dt * (2.0 * s_n - s) / (2.0 * s * s_n))
