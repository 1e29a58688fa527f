"""DDIM (Song et al. 2020): fewer, optionally deterministic, sampling steps.

From t to t_next < t (t_next = -1: abar_next = 1, the clean data), eq. 12:

    sigma  = eta sqrt((1 - abar_next) / (1 - abar_t)) sqrt(1 - abar_t / abar_next)
    x_next = sqrt(abar_next) x0_hat + sqrt(1 - abar_next - sigma^2) eps_hat + sigma z

eta = 0 is deterministic; eta = 1 with S = T is DDPM's fixed_small sampler.
`DDIMMixin` is mixed into GaussianDiffusion and uses its buffers and checks.
"""
import numbers

import numpy as np

from ..backend import randn, to_host
from .checks import check_clip_denoised, check_rng
from .guidance import check_guidance_interval, check_guidance_scale, guided_forward, scale_at

SPACINGS = ("linspace", "leading", "trailing")


def sampling_timesteps_spacing(T, S, spacing="linspace"):
    """sampling_timesteps_spacing(T, S, spacing) -> (S,) int64 timesteps, descending.

    linspace: round(linspace(0, T-1, S));  leading: arange(S) (T // S);
    trailing: round(arange(T, 0, -T/S)) - 1 (first step T-1).
    """
    if isinstance(T, bool) or not isinstance(T, numbers.Integral) or T < 1:
        raise ValueError(f"num_timesteps: expected a positive integer, got {T!r}")
    if isinstance(S, bool) or not isinstance(S, numbers.Integral) or not 1 <= S <= T:
        raise ValueError(f"sampling_timesteps: expected an integer in [1, {T}], got {S!r}")
    if spacing not in SPACINGS:
        raise ValueError(f"spacing: expected one of {list(SPACINGS)}, got {spacing!r}")
    if spacing == "linspace":
        ts = np.round(np.linspace(0, T - 1, S))
    elif spacing == "leading":
        ts = np.arange(S) * (T // S)
    else:  # T - k T/S for k = 0..S-1, written so the integer product is exact
        ts = np.round(np.arange(S, 0, -1) * T / S) - 1
    ts = np.sort(ts.astype(np.int64))[::-1].copy()               # (S,) descending
    if len(np.unique(ts)) != S or ts[0] > T - 1 or ts[-1] < 0:   # pragma: no cover - guarded by the maths
        raise RuntimeError(f"spacing {spacing!r} gave invalid timesteps {ts} for T={T}, S={S}")
    return ts


def check_eta(eta):
    if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta: expected a number in [0, 1], got {eta!r}")
    return float(eta)


class DDIMMixin:
    """ddim_sample, ddim_sample_loop and ddim_reverse_loop for GaussianDiffusion."""

    def _abar(self, t, ndim):
        """abar_t broadcastable over x, with abar_{-1} = 1.   -> (B, 1, ...) or (1, ...)"""
        abar = self.buffers["alphas_cumprod"]
        if isinstance(t, int):
            return self._extract(abar, t, ndim) if t >= 0 else self.xp.ones((1,) * ndim, dtype=abar.dtype)
        xp = self.xp
        a = xp.where(t >= 0, abar[xp.maximum(t, 0)], xp.ones((), dtype=abar.dtype))
        return a.reshape((-1,) + (1,) * (ndim - 1))

    def ddim_sample(self, x_t, t, t_next, noise=None, eta=0.0, labels=None, guidance_scale=1.0,
                    clip_denoised=None, rng=None):
        """One DDIM step x_t -> x_{t_next} (eq. 12) -> (x_next, x0_hat). t_next = -1 lands on x0_hat."""
        x_t = self._check_x(x_t, "x_t")
        B = x_t.shape[0]
        t = self._check_t(t, B, "t")
        t_next = self._check_t(t_next, B, "t_next", low=-1)
        if isinstance(t, int) and isinstance(t_next, int):
            later = t_next < t
        else:
            later = np.all(to_host(self.xp.asarray(t_next)) < to_host(self.xp.asarray(t)))
        if not later:
            raise ValueError(f"t_next: expected t_next < t (DDIM steps towards the data), got t={t}, t_next={t_next}")
        eta = check_eta(eta)
        labels, guidance_scale = self._check_labels(labels, B), check_guidance_scale(guidance_scale, labels)
        clip_denoised, rng = check_clip_denoised(clip_denoised), check_rng(rng)
        if noise is None and eta > 0:
            noise = randn(rng, x_t.shape, x_t.dtype, self.xp)
        if noise is not None:
            noise = self._check_like(noise, x_t, "noise", same_dtype=True)
        return self._ddim_step(x_t, t, t_next, noise, eta, labels, guidance_scale, clip_denoised)

    def _ddim_step(self, x_t, t, t_next, noise, eta, labels, guidance_scale, clip_denoised):
        if isinstance(t, int) and isinstance(t_next, int) and self.objective == "eps":
            return self._ddim_step_fused(x_t, t, t_next, noise, eta, labels, guidance_scale, clip_denoised)
        eps, x0_hat = self._model_predictions(x_t, t, labels, guidance_scale, clip_denoised)
        xp, n = self.xp, x_t.ndim
        abar_t, abar_next = self._abar(t, n), self._abar(t_next, n)          # (B, 1, ...)
        x_next = xp.sqrt(abar_next) * x0_hat                                 # (B, ...)
        if eta > 0:
            sigma = eta * xp.sqrt((1 - abar_next) / (1 - abar_t) * xp.maximum(1 - abar_t / abar_next, 0))
            x_next = x_next + xp.sqrt(xp.maximum(1 - abar_next - sigma**2, 0)) * eps + sigma * noise
        else:
            x_next = x_next + xp.sqrt(1 - abar_next) * eps
        return x_next, x0_hat

    def _ddim_step_fused(self, x_t, t, t_next, noise, eta, labels, guidance_scale, clip_denoised):
        """The same step for int t, t_next: model -> eps_hat, then one fused pass
        (minidiff.kernels.ddim_step); sigma from host floats, no device sync."""
        from ..kernels import ddim_step
        eps_hat = guided_forward(self.model, x_t, self._t_batch(t, x_t.shape[0]), labels, guidance_scale)
        if tuple(eps_hat.shape) != tuple(x_t.shape):
            raise ValueError(f"model output: expected shape {tuple(x_t.shape)}, got {tuple(eps_hat.shape)}")
        eps_hat = eps_hat.astype(x_t.dtype, copy=False)                # the step runs in x_t's dtype
        abar64 = self._buffers64["alphas_cumprod"]
        abar, abar_next = float(abar64[t]), (float(abar64[t_next]) if t_next >= 0 else 1.0)
        sigma = eta * np.sqrt((1 - abar_next) / (1 - abar) * max(1 - abar / abar_next, 0.0)) if eta > 0 else 0.0
        clip = self.clip_denoised if clip_denoised is None else clip_denoised
        return ddim_step(x_t, eps_hat, abar, abar_next, float(sigma), z=noise if eta > 0 else None, clip=bool(clip))

    def _ddim_schedule(self, sampling_timesteps, spacing):
        S = self.num_timesteps if sampling_timesteps is None else sampling_timesteps
        ts = sampling_timesteps_spacing(self.num_timesteps, S, spacing)      # (S,) descending
        return [int(t) for t in ts], [int(t) for t in ts[1:]] + [-1]

    def ddim_sample_loop(self, shape, sampling_timesteps=None, eta=0.0, spacing="linspace", labels=None,
                         guidance_scale=1.0, rng=None, progress=True, x_T=None, return_all=False,
                         clip_denoised=None, guidance_interval=None):
        """DDIM sampling over S = sampling_timesteps steps (default T) from x_T (default N(0, I)).

        -> x0 (B, ...); return_all: (xs (S+1, B, ...), x0_hats (S, B, ...)).
        guidance_interval (t_lo, t_hi): guide only at the steps t inside it (see guidance.py).
        """
        ts, ts_next = self._ddim_schedule(sampling_timesteps, spacing)
        eta, rng, xp = check_eta(eta), check_rng(rng), self.xp
        guidance_scale = check_guidance_scale(guidance_scale, labels)
        clip_denoised = check_clip_denoised(clip_denoised)
        interval = check_guidance_interval(guidance_interval, self.num_timesteps)
        if x_T is None:
            shape = self._check_shape(shape)
            x = randn(rng, shape, self.dtype, xp)                           # (B, ...)
        else:
            x = self._check_x(x_T, "x_T")
            if shape is not None and tuple(shape) != tuple(x.shape):
                raise ValueError(f"x_T: shape {tuple(x.shape)} does not match shape {tuple(shape)}")
        labels = self._check_labels(labels, x.shape[0])
        xs, x0_hats = [x], []
        for t, t_next in self._progress(zip(ts, ts_next), progress, "DDIM sampling", len(ts)):
            noise = randn(rng, x.shape, x.dtype, xp) if eta > 0 else None
            x, x0_hat = self._ddim_step(x, t, t_next, noise, eta, labels, scale_at(guidance_scale, interval, t),
                                        clip_denoised)
            if return_all:
                xs.append(x)
                x0_hats.append(x0_hat)
        return (xp.stack(xs), xp.stack(x0_hats)) if return_all else x

    def ddim_reverse_loop(self, x0, sampling_timesteps=None, spacing="linspace", labels=None,
                          guidance_scale=1.0, progress=True, clip_denoised=False):
        """DDIM inversion: x0 (t = -1) -> x_T, the eta = 0 update run upwards.

        From t_prev to t > t_prev, with eps_hat = model(x_{t_prev}, t) (x_t is not known yet):
            x_t = sqrt(abar_t) (x_{t_prev} - sqrt(1 - abar_prev) eps_hat) / sqrt(abar_prev)
                  + sqrt(1 - abar_t) eps_hat
        Decoding x_T with ddim_sample_loop(eta=0, x_T=...) on the same steps returns ~x0.
        """
        ts, _ = self._ddim_schedule(sampling_timesteps, spacing)
        ts_up = ts[::-1]                                                     # ascending
        x = self._check_x(x0, "x0")
        labels = self._check_labels(labels, x.shape[0])
        guidance_scale = check_guidance_scale(guidance_scale, labels)
        clip_denoised = check_clip_denoised(clip_denoised)
        xp, n = self.xp, x.ndim
        for t_prev, t in self._progress(zip([-1] + ts_up[:-1], ts_up), progress, "DDIM inversion", len(ts)):
            eps, _ = self._model_predictions(x, t, labels, guidance_scale, clip_denoised)
            abar_prev, abar_t = self._abar(t_prev, n), self._abar(t, n)
            x0_hat = (x - xp.sqrt(1 - abar_prev) * eps) / xp.sqrt(abar_prev)  # (B, ...)
            x = xp.sqrt(abar_t) * x0_hat + xp.sqrt(1 - abar_t) * eps
        return x
