"""Exact denoisers for data whose noised marginals are known in closed form, and their probability-flow ODE.

Notation (docs/equations.md): x_t = alpha x0 + sigma eps, alpha = sqrt(abar), sigma = sqrt(1 - abar);
Karras's variables s = sigma / alpha and x~ = x / alpha, so x~ = x0 + s eps.

**Gaussian data**, x0 ~ N(mu, std^2) independently per dimension. Then x~ ~ N(mu, std^2 + s^2) and
the best data prediction (the posterior mean) is

    D(x~, s) = E[x0 | x~] = mu + std^2 / (std^2 + s^2) (x~ - mu).

The probability-flow ODE in these variables is dx~/ds = (x~ - D(x~, s)) / s (Karras et al. 2022,
eq. 3 with the scaling folded into x~). Here x~ - D = s^2 (x~ - mu) / (std^2 + s^2). Try
x~(s) = mu + sqrt(std^2 + s^2) z with z fixed: dx~/ds = s z / sqrt(std^2 + s^2), and
(x~ - D)/s = s (x~ - mu) / (std^2 + s^2) = s z / sqrt(std^2 + s^2), the same. So along a
trajectory the standardised value z = (x~ - mu) / sqrt(std^2 + s^2) is constant: `gaussian_flow`.
At s = 0 this is x0 = mu + std z, each x_T's exact sample.

**A mixture of Gaussians**, x0 ~ sum_k w_k N(mu_k, std^2 I) in D dimensions. x~ ~ sum_k w_k N(mu_k,
(std^2 + s^2) I), and D(x~, s) = sum_k pi_k(x~) (mu_k + std^2 / (std^2 + s^2) (x~ - mu_k)) with
pi_k the posterior weights (softmax of log w_k - |x~ - mu_k|^2 / (2 (std^2 + s^2))). Its flow has no
closed form: `mixture_flow` integrates dx~/du = x~ - D(x~, e^u), u = log s, with SciPy's DOP853 at
rtol = atol = 1e-12, independent of every minidiff sampler.

The models are continuous in the noise level: a "model" for a GaussianDiffusion evaluates the exact
predictor at the abar_t of the timestep it is called with, so a sampler's only error is its own
discretisation between the timesteps it visits.
"""
import numpy as np


def prediction(objective, x, x0, abar):
    """The eps, x0 or v consistent with x = alpha x0 + sigma eps at noise level abar (v = alpha eps - sigma x0)."""
    if objective == "x0":
        return x0
    alpha, sigma = np.sqrt(abar), np.sqrt(1 - abar)
    eps = (x - alpha * x0) / sigma
    return eps if objective == "eps" else alpha * eps - sigma * x0


class ExactModel:
    """A model.forward(x, t[, labels]) returning the exact prediction of `objective` at abar_t."""

    def __init__(self, abar_table, objective="eps"):
        self.abar_table, self.objective = np.asarray(abar_table, np.float64), objective
        self.calls = []                                          # (batch size, t) of every call

    def forward(self, x, t, labels=None):
        t = np.asarray(t)
        self.calls.append((x.shape[0], int(t[0])))
        abar = self.abar_table[t].reshape((-1,) + (1,) * (x.ndim - 1))                  # (B, 1, ...)
        x0 = self.x0_hat(x / np.sqrt(abar), np.sqrt((1 - abar) / abar), labels)          # from x~ = x / alpha
        return prediction(self.objective, x, x0, abar).astype(x.dtype, copy=False)


class GaussianData(ExactModel):
    """x0 ~ N(mu, std^2) per dimension; mu, std (D,)."""

    def __init__(self, mu, std, abar_table, objective="eps"):
        super().__init__(abar_table, objective)
        self.mu, self.std = np.asarray(mu, np.float64), np.asarray(std, np.float64)

    def x0_hat(self, xs, s, labels=None):
        """D(x~, s) = mu + std^2 / (std^2 + s^2) (x~ - mu).   xs (B, D), s scalar or (B, 1)"""
        return self.mu + self.std ** 2 / (self.std ** 2 + s ** 2) * (xs - self.mu)

    def flow(self, xs, s_from, s_to):
        """The exact probability-flow map x~(s_from) -> x~(s_to): z = (x~ - mu)/sqrt(std^2 + s^2) is constant."""
        z = (xs - self.mu) / np.sqrt(self.std ** 2 + s_from ** 2)
        return self.mu + np.sqrt(self.std ** 2 + s_to ** 2) * z

    def marginal(self, s):
        """Mean and std of x~ at noise level s, per dimension: N(mu, std^2 + s^2)."""
        return self.mu, np.sqrt(self.std ** 2 + s ** 2)


class GaussianMixture(ExactModel):
    """x0 ~ sum_k w_k N(mu_k, std^2 I); mus (K, D), weights (K,), std a scalar."""

    def __init__(self, mus, weights, std, abar_table, objective="eps"):
        super().__init__(abar_table, objective)
        self.mus, self.weights, self.std = np.asarray(mus, np.float64), np.asarray(weights, np.float64), float(std)

    def x0_hat(self, xs, s, labels=None):
        """D(x~, s) = sum_k pi_k(x~) (mu_k + std^2/(std^2 + s^2) (x~ - mu_k)).   xs (B, D)"""
        v = self.std ** 2 + np.asarray(s, np.float64) ** 2                       # scalar or (B, 1)
        d2 = ((xs[:, None, :] - self.mus[None]) ** 2).sum(-1)                     # (B, K)
        logits = np.log(self.weights) - d2 / (2 * np.reshape(v, (-1, 1)))
        pi = np.exp(logits - logits.max(1, keepdims=True))
        pi /= pi.sum(1, keepdims=True)                                             # (B, K)
        shrink = self.std ** 2 / np.reshape(v, (-1, 1))                            # (B or 1, 1)
        return pi @ self.mus + shrink * (xs - pi @ self.mus)                       # (B, D)

    def flow(self, xs, s_from, s_to):
        """x~(s_from) -> x~(s_to) by DOP853 on dx~/du = x~ - D(x~, e^u), u = log s."""
        from scipy.integrate import solve_ivp
        shape = xs.shape

        def rhs(u, y):
            x = y.reshape(shape)
            return (x - self.x0_hat(x, np.exp(u))).ravel()

        sol = solve_ivp(rhs, (np.log(s_from), np.log(s_to)), xs.ravel(), method="DOP853", rtol=1e-12, atol=1e-12)
        assert sol.success, sol.message
        return sol.y[:, -1].reshape(shape)

    def moments(self):
        """The data's mean and variance per dimension."""
        mean = self.weights @ self.mus                                             # (D,)
        second = self.weights @ (self.mus ** 2) + self.std ** 2
        return mean, second - mean ** 2


def uniform_logsnr_betas(T, lambda_max, lambda_min):
    """Betas whose log-SNR lambda_t falls linearly from lambda_max (t = 0) to lambda_min (t = T-1).

    abar_t = 1 / (1 + exp(-2 lambda_t)), beta_t = 1 - abar_t / abar_{t-1} (abar_{-1} = 1). With T - 1
    divisible by S - 1, the logsnr spacing's S steps land exactly on timesteps, equally spaced in lambda.
    """
    lam = np.linspace(lambda_max, lambda_min, T)
    abar = 1 / (1 + np.exp(-2 * lam))
    return 1 - abar / np.append(1.0, abar[:-1])
