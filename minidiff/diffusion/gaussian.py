"""GaussianDiffusion: DDPM (Ho et al. 2020) around any denoising model.

Timesteps are 0-based, t in {0..T-1}, abar_{-1} = 1 (docs/equations.md).
All schedule buffers are computed once in float64 and stored in the model
dtype on the device. The DDIM methods come from `DDIMMixin` (ddim.py), the
front door to every sampler, `sample`, from `SampleMixin` (samplers/sample.py).
"""
import numbers

import numpy as np

from ..backend import check_float_dtype, device_module, get_xp, randn, to_host
from .checks import check_clip_denoised, check_data_shape, check_rng
from .ddim import DDIMMixin
from .guidance import check_guidance_interval, check_guidance_scale, guided_forward, scale_at
from .samplers.sample import SampleMixin
from .schedules import make_betas

OBJECTIVES = ("eps", "x0", "v")
VARIANCES = ("fixed_small", "fixed_large")
LOSSES = ("mse", "mae")


def min_snr_weights(abar, objective, gamma):
    """Min-SNR-gamma loss weights (Hang et al. 2023), per timestep, float64 (T,).

    With SNR_t = abar_t / (1 - abar_t), the x0-space weight min(SNR_t, gamma)
    expressed for the network's target: eps -> min(SNR, gamma) / SNR,
    x0 -> min(SNR, gamma), v -> min(SNR, gamma) / (SNR + 1). It caps the
    weight of the nearly-clean timesteps, whose easy denoising otherwise
    dominates the gradient early in training.
    """
    snr = abar / (1.0 - abar)
    clipped = np.minimum(snr, gamma)
    return {"eps": clipped / snr, "x0": clipped, "v": clipped / (snr + 1.0)}[objective]


def diffusion_buffers(betas):
    """betas (T,) float64 -> dict of the float64 (T,) buffers of docs/equations.md."""
    T = len(betas)
    alphas = 1.0 - betas
    abar = np.cumprod(alphas)                                    # abar_t
    abar_prev = np.append(1.0, abar[:-1])                        # abar_{t-1}, abar_{-1} = 1
    post_var = betas * (1.0 - abar_prev) / (1.0 - abar)          # beta_tilde_t, 0 at t = 0
    post_log_var = np.log(np.maximum(post_var, 1e-20))
    large_var = betas.copy()                                     # fixed_large
    if T > 1:
        post_log_var[0] = np.log(post_var[1])
        large_var[0] = post_var[1]
    return dict(
        betas=betas, alphas=alphas,
        alphas_cumprod=abar, alphas_cumprod_prev=abar_prev,
        sqrt_alphas_cumprod=np.sqrt(abar),
        sqrt_one_minus_alphas_cumprod=np.sqrt(1.0 - abar),
        sqrt_recip_alphas_cumprod=np.sqrt(1.0 / abar),
        sqrt_recipm1_alphas_cumprod=np.sqrt(1.0 / abar - 1.0),
        posterior_variance=post_var,
        posterior_log_variance_clipped=post_log_var,
        posterior_mean_coef1=betas * np.sqrt(abar_prev) / (1.0 - abar),
        posterior_mean_coef2=(1.0 - abar_prev) * np.sqrt(alphas) / (1.0 - abar),
        model_variance_fixed_large=large_var,
        model_log_variance_fixed_large=np.log(large_var),
    )


class GaussianDiffusion(DDIMMixin, SampleMixin):
    """GaussianDiffusion(model, T; schedule, objective, variance, ...): q and p of DDPM.

    model.forward(x, t[, labels]) -> output shaped like x, the prediction of
    eps, x0 or v (objective). Holds no trainable state; training calls
    `loss, d_out = p_losses(x0)` then `model.backward(d_out)`.
    data_shape is the shape of one sample (without the batch axis).
    """

    def __init__(self, model, num_timesteps=None, *, betas=None, schedule="linear", schedule_kwargs=None,
                 objective="eps", variance="fixed_small", clip_denoised=True, data_shape=None,
                 min_snr_gamma=None, dtype=np.float32, device="cpu"):
        if not hasattr(model, "forward"):
            raise TypeError(f"model: expected an object with forward(x, t), got {type(model).__name__}")
        given_betas = betas
        if betas is None:
            if num_timesteps is None:
                raise ValueError("num_timesteps: required when betas is not given")
            betas = make_betas(schedule, num_timesteps, **(schedule_kwargs or {}))
        betas = np.asarray(to_host(betas), dtype=np.float64)
        if betas.ndim != 1 or betas.size == 0:
            raise ValueError(f"betas: expected a non-empty 1-D array, got shape {betas.shape}")
        if not np.all((betas > 0) & (betas < 1)):
            hint = " (the linear schedule scales its betas by 1000/T: it needs T > 1000 beta_end, e.g. T > 20)" \
                if given_betas is None and schedule == "linear" else ""
            raise ValueError(f"betas: every beta must lie in (0, 1), got min {betas.min()}, max {betas.max()}{hint}")
        if num_timesteps is not None and num_timesteps != len(betas):
            raise ValueError(f"num_timesteps: {num_timesteps} does not match len(betas) = {len(betas)}")
        for name, value, valid in (("objective", objective, OBJECTIVES), ("variance", variance, VARIANCES)):
            if value not in valid:
                raise ValueError(f"{name}: expected one of {list(valid)}, got {value!r}")
        model_T = getattr(model, "num_timesteps", None)
        if isinstance(model_T, numbers.Integral) and model_T < len(betas):
            raise ValueError(f"model: built for num_timesteps={model_T}, but the diffusion has T = {len(betas)} "
                             f"(its time embedding has no row for t >= {model_T}); build it with "
                             f"num_timesteps >= {len(betas)}")
        self.model = model
        self.num_timesteps = len(betas)
        self.objective, self.variance = objective, variance
        self.clip_denoised = check_clip_denoised(clip_denoised, allow_none=False)
        self.data_shape = None if data_shape is None else check_data_shape(data_shape)
        self._buffers64 = diffusion_buffers(betas)
        if min_snr_gamma is not None:
            if not isinstance(min_snr_gamma, numbers.Real) or not min_snr_gamma > 0:
                raise ValueError(f"min_snr_gamma: expected a positive number or None, got {min_snr_gamma!r}")
            self._buffers64["loss_weight"] = min_snr_weights(self._buffers64["alphas_cumprod"], objective,
                                                             float(min_snr_gamma))
        self.min_snr_gamma = None if min_snr_gamma is None else float(min_snr_gamma)
        self.dtype = check_float_dtype(dtype)
        self.xp = device_module(device)
        self._set_buffers()

    # ---- buffers and devices -------------------------------------------------------
    def _set_buffers(self):
        self.buffers = {k: self.xp.asarray(v.astype(self.dtype)) for k, v in self._buffers64.items()}
        for k, v in self.buffers.items():
            setattr(self, k, v)

    def to(self, device):
        """Move the buffers to `device` ('cpu', 'cuda'); the model moves itself."""
        self.xp = device_module(device)
        self._set_buffers()
        return self

    def astype(self, dtype):
        """Recast the buffers (from their float64 originals) to `dtype`."""
        self.dtype = check_float_dtype(dtype)
        self._set_buffers()
        return self

    def __repr__(self):
        snr = "" if self.min_snr_gamma is None else f", min_snr_gamma={self.min_snr_gamma:g}"
        return (f"GaussianDiffusion(T={self.num_timesteps}, objective={self.objective!r}, "
                f"variance={self.variance!r}{snr}, dtype={self.dtype.name}, data_shape={self.data_shape})")

    # ---- validation ----------------------------------------------------------------
    def _check_x(self, x, name="x"):
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            raise TypeError(f"{name}: expected an array, got {type(x).__name__}")
        if x.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name}: expected a float array (float32 or float64), got dtype {x.dtype}")
        if get_xp(x) is not self.xp:
            raise ValueError(f"{name}: array is on {get_xp(x).__name__} but the diffusion buffers are on "
                             f"{self.xp.__name__}; call .to(device)")
        if x.ndim < 1 or (self.data_shape is not None and tuple(x.shape[1:]) != self.data_shape):
            raise ValueError(f"{name}: expected shape (B, *{self.data_shape}), got {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError(f"{name}: expected a batch of B >= 1 samples, got an empty batch {tuple(x.shape)}")
        return x

    def _check_like(self, a, x, name, same_dtype=False):
        """a shaped like x, a float array (of x's dtype when same_dtype: the fused steps need it)."""
        if not hasattr(a, "shape") or tuple(a.shape) != tuple(x.shape):
            raise ValueError(f"{name}: expected shape {tuple(x.shape)}, got {getattr(a, 'shape', type(a).__name__)}")
        if a.dtype.kind != "f":
            raise TypeError(f"{name}: expected a float array, got dtype {a.dtype}")
        if same_dtype and a.dtype != x.dtype:
            raise TypeError(f"{name}: expected dtype {x.dtype} (x_t's), got {a.dtype}")
        return a

    def _check_shape(self, shape):
        if isinstance(shape, numbers.Integral):
            shape = (shape,)
        shape = tuple(shape)
        if len(shape) < 1 or any(isinstance(d, bool) or int(d) != d or d < 1 for d in shape):
            raise ValueError(f"shape: expected a tuple of positive ints (B, ...), got {shape}")
        if self.data_shape is not None and shape[1:] != self.data_shape:
            raise ValueError(f"shape: expected (B, *{self.data_shape}), got {shape}")
        return tuple(int(d) for d in shape)

    def _check_t(self, t, B, name="t", low=0):
        """t: an int (whole batch) or an int array (B,) in [low, T-1]; returns int or xp array."""
        T = self.num_timesteps
        if isinstance(t, numbers.Integral) and not isinstance(t, bool):
            if not low <= t < T:
                raise ValueError(f"{name}: expected an integer in [{low}, {T - 1}], got {t}")
            return int(t)
        if not hasattr(t, "dtype") or not hasattr(t, "shape"):
            raise TypeError(f"{name}: expected an int or an integer array of shape ({B},), got {type(t).__name__}")
        if t.dtype.kind not in "iu":
            raise TypeError(f"{name}: expected integer timesteps, got dtype {t.dtype}")
        if t.ndim == 0:
            return self._check_t(int(to_host(t)), B, name, low)
        if tuple(t.shape) != (B,):
            raise ValueError(f"{name}: expected shape ({B},), got {tuple(t.shape)}")
        th = to_host(t)                                          # explicit copy for the range check
        if th.min() < low or th.max() >= T:
            raise ValueError(f"{name}: values must lie in [{low}, {T - 1}], got min {th.min()}, max {th.max()}")
        return self.xp.asarray(t)

    def _check_labels(self, labels, B):
        if labels is None:
            return None
        if getattr(self.model, "num_classes", "not declared") is None:
            raise ValueError("labels: given, but the model is unconditional (num_classes=None); "
                             "sample it without labels")
        labels = self.xp.asarray(labels)                         # a list or host array -> the device
        if labels.dtype.kind not in "iu":
            raise TypeError(f"labels: expected integer class labels, got dtype {labels.dtype}")
        if tuple(labels.shape) != (B,):
            raise ValueError(f"labels: expected shape ({B},), got {tuple(labels.shape)}")
        return labels

    def _t_batch(self, t, B):
        """The (B,) int array the model sees."""
        return self.xp.full((B,), t, dtype=self.xp.int64) if isinstance(t, int) else t

    def _progress(self, iterable, progress, desc, total):
        if not progress:
            return iterable
        from tqdm import tqdm
        return tqdm(iterable, desc=desc, total=total)

    # ---- forward process q ---------------------------------------------------------
    @staticmethod
    def _extract(buffer, t, ndim):
        """buffer[t] reshaped to (B, 1, ..., 1) (or (1, ..., 1) for an int t) to broadcast over x."""
        if isinstance(t, numbers.Integral):
            return buffer[int(t)].reshape((1,) * ndim)
        return buffer[t].reshape((-1,) + (1,) * (ndim - 1))

    def _coef(self, name, t, ndim):
        return self._extract(self.buffers[name], t, ndim)

    def q_sample(self, x0, t, noise):
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps.   x0, noise (B, ...) -> (B, ...)"""
        x0 = self._check_x(x0, "x0")
        t = self._check_t(t, x0.shape[0])
        return self._q_sample(x0, t, self._check_like(noise, x0, "noise"))

    def _q_sample(self, x0, t, noise):
        n = x0.ndim
        return self._coef("sqrt_alphas_cumprod", t, n) * x0 + self._coef("sqrt_one_minus_alphas_cumprod", t, n) * noise

    def q_posterior_mean_variance(self, x0, x_t, t):
        """q(x_{t-1} | x_t, x0): (c1_t x0 + c2_t x_t, beta_tilde_t, clipped log beta_tilde_t)."""
        x_t = self._check_x(x_t, "x_t")
        t = self._check_t(t, x_t.shape[0])
        return self._q_posterior(self._check_like(x0, x_t, "x0"), x_t, t)

    def _q_posterior(self, x0, x_t, t):
        n = x_t.ndim
        mean = self._coef("posterior_mean_coef1", t, n) * x0 + self._coef("posterior_mean_coef2", t, n) * x_t
        return mean, self._coef("posterior_variance", t, n), self._coef("posterior_log_variance_clipped", t, n)

    # ---- parameterisations: eps, x0, v ---------------------------------------------
    def predict_start_from_noise(self, x_t, t, eps):
        """x0 = sqrt(1/abar_t) x_t - sqrt(1/abar_t - 1) eps."""
        x_t = self._check_x(x_t, "x_t")
        return self._x0_from_eps(x_t, self._check_t(t, x_t.shape[0]), self._check_like(eps, x_t, "eps"))

    def _x0_from_eps(self, x_t, t, eps):
        n = x_t.ndim
        return self._coef("sqrt_recip_alphas_cumprod", t, n) * x_t - self._coef("sqrt_recipm1_alphas_cumprod", t, n) * eps

    def predict_noise_from_start(self, x_t, t, x0):
        """eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t) = (sqrt(1/abar_t) x_t - x0) / sqrt(1/abar_t - 1)."""
        x_t = self._check_x(x_t, "x_t")
        return self._eps_from_x0(x_t, self._check_t(t, x_t.shape[0]), self._check_like(x0, x_t, "x0"))

    def _eps_from_x0(self, x_t, t, x0):
        n = x_t.ndim
        return (self._coef("sqrt_recip_alphas_cumprod", t, n) * x_t - x0) / self._coef("sqrt_recipm1_alphas_cumprod", t, n)

    def predict_start_from_v(self, x_t, t, v):
        """x0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v."""
        x_t = self._check_x(x_t, "x_t")
        return self._x0_from_v(x_t, self._check_t(t, x_t.shape[0]), self._check_like(v, x_t, "v"))

    def _x0_from_v(self, x_t, t, v):
        n = x_t.ndim
        return self._coef("sqrt_alphas_cumprod", t, n) * x_t - self._coef("sqrt_one_minus_alphas_cumprod", t, n) * v

    def predict_v(self, x0, t, noise):
        """v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0."""
        x0 = self._check_x(x0, "x0")
        return self._v(x0, self._check_t(t, x0.shape[0]), self._check_like(noise, x0, "noise"))

    def _v(self, x0, t, noise):
        n = x0.ndim
        return self._coef("sqrt_alphas_cumprod", t, n) * noise - self._coef("sqrt_one_minus_alphas_cumprod", t, n) * x0

    # ---- reverse process p ---------------------------------------------------------
    def model_predictions(self, x_t, t, labels=None, guidance_scale=1.0, clip_denoised=None):
        """(eps_hat, x0_hat) from the model at (x_t, t), whatever the objective.

        With clipping, x0_hat is clipped to [-1, 1] and eps_hat re-derived from it.
        """
        x_t = self._check_x(x_t, "x_t")
        B = x_t.shape[0]
        return self._model_predictions(x_t, self._check_t(t, B), self._check_labels(labels, B),
                                       check_guidance_scale(guidance_scale, labels), check_clip_denoised(clip_denoised))

    def _model_predictions(self, x_t, t, labels, guidance_scale, clip_denoised):
        out = guided_forward(self.model, x_t, self._t_batch(t, x_t.shape[0]), labels, guidance_scale)
        if tuple(out.shape) != tuple(x_t.shape):
            raise ValueError(f"model output: expected shape {tuple(x_t.shape)}, got {tuple(out.shape)}")
        if self.objective == "eps":
            eps, x0 = out, self._x0_from_eps(x_t, t, out)
        elif self.objective == "x0":
            eps, x0 = self._eps_from_x0(x_t, t, out), out
        else:  # v: eps = sqrt(abar) v + sqrt(1 - abar) x_t
            n = x_t.ndim
            x0 = self._x0_from_v(x_t, t, out)
            eps = self._coef("sqrt_alphas_cumprod", t, n) * out + self._coef("sqrt_one_minus_alphas_cumprod", t, n) * x_t
        if self.clip_denoised if clip_denoised is None else clip_denoised:
            x0 = self.xp.clip(x0, -1.0, 1.0)                      # (B, ...)
            eps = self._eps_from_x0(x_t, t, x0)
        return eps, x0

    def p_mean_variance(self, x_t, t, labels=None, guidance_scale=1.0, clip_denoised=None):
        """p(x_{t-1} | x_t) = N(c1_t x0_hat + c2_t x_t, var) -> (mean, var, log_var, x0_hat)."""
        x_t = self._check_x(x_t, "x_t")
        B = x_t.shape[0]
        return self._p_mean_variance(x_t, self._check_t(t, B), self._check_labels(labels, B),
                                     check_guidance_scale(guidance_scale, labels), check_clip_denoised(clip_denoised))

    def _p_mean_variance(self, x_t, t, labels, guidance_scale, clip_denoised):
        _, x0_hat = self._model_predictions(x_t, t, labels, guidance_scale, clip_denoised)
        mean, var, log_var = self._q_posterior(x0_hat, x_t, t)
        if self.variance == "fixed_large":
            var = self._coef("model_variance_fixed_large", t, x_t.ndim)
            log_var = self._coef("model_log_variance_fixed_large", t, x_t.ndim)
        return mean, var, log_var, x0_hat

    def p_sample(self, x_t, t, noise=None, labels=None, guidance_scale=1.0, clip_denoised=None, rng=None):
        """x_{t-1} = mean + sigma_t z (no noise where t = 0) -> (x_{t-1}, x0_hat)."""
        x_t = self._check_x(x_t, "x_t")
        B = x_t.shape[0]
        t = self._check_t(t, B)
        labels, guidance_scale = self._check_labels(labels, B), check_guidance_scale(guidance_scale, labels)
        clip_denoised, rng = check_clip_denoised(clip_denoised), check_rng(rng)
        if noise is None:
            noise = randn(rng, x_t.shape, x_t.dtype, self.xp)
        noise = self._check_like(noise, x_t, "noise", same_dtype=True)
        return self._p_sample(x_t, t, noise, labels, guidance_scale, clip_denoised)

    def _p_sample(self, x_t, t, noise, labels, guidance_scale, clip_denoised):
        if isinstance(t, int) and self.objective == "eps":
            return self._p_sample_fused(x_t, t, noise, labels, guidance_scale, clip_denoised)
        mean, _, log_var, x0_hat = self._p_mean_variance(x_t, t, labels, guidance_scale, clip_denoised)
        if isinstance(t, int):
            if t == 0:
                return mean, x0_hat
            return mean + self.xp.exp(0.5 * log_var) * noise, x0_hat
        nonzero = (t != 0).astype(x_t.dtype).reshape((-1,) + (1,) * (x_t.ndim - 1))   # (B, 1, ...)
        return mean + nonzero * self.xp.exp(0.5 * log_var) * noise, x0_hat

    def _p_sample_fused(self, x_t, t, noise, labels, guidance_scale, clip_denoised):
        """The same step for one int t: model -> eps_hat, then one fused pass
        (minidiff.kernels.ddpm_step) for x0_hat, its clipping, the posterior mean
        and the noise. Coefficients are host floats: no device sync."""
        from ..kernels import ddpm_step
        eps_hat = guided_forward(self.model, x_t, self._t_batch(t, x_t.shape[0]), labels, guidance_scale)
        if tuple(eps_hat.shape) != tuple(x_t.shape):
            raise ValueError(f"model output: expected shape {tuple(x_t.shape)}, got {tuple(eps_hat.shape)}")
        eps_hat = eps_hat.astype(x_t.dtype, copy=False)                # the step runs in x_t's dtype
        b = self._buffers64
        var = b["posterior_variance" if self.variance == "fixed_small" else "model_variance_fixed_large"][t]
        sigma = float(np.sqrt(var)) if t > 0 else 0.0
        clip = self.clip_denoised if clip_denoised is None else clip_denoised
        return ddpm_step(x_t, eps_hat, float(b["sqrt_recip_alphas_cumprod"][t]),
                         float(b["sqrt_recipm1_alphas_cumprod"][t]), float(b["posterior_mean_coef1"][t]),
                         float(b["posterior_mean_coef2"][t]), sigma, z=noise if t > 0 else None, clip=bool(clip))

    def p_sample_loop(self, shape, labels=None, guidance_scale=1.0, rng=None, progress=True, clip_denoised=None,
                      guidance_interval=None):
        """Ancestral sampling x_{T-1} ~ N(0, I) -> ... -> x_{-1} = x0.   -> (B, ...)

        guidance_interval (t_lo, t_hi): guide only at those steps (see guidance.py).
        """
        return self._p_loop(shape, labels, guidance_scale, rng, progress, clip_denoised, guidance_interval,
                            keep_all=False)

    def p_sample_loop_all(self, shape, labels=None, guidance_scale=1.0, rng=None, progress=True, clip_denoised=None,
                          guidance_interval=None):
        """p_sample_loop keeping every step: xs (T+1, B, ...) from the noise on, x0_hats (T, B, ...)."""
        return self._p_loop(shape, labels, guidance_scale, rng, progress, clip_denoised, guidance_interval,
                            keep_all=True)

    def _p_loop(self, shape, labels, guidance_scale, rng, progress, clip_denoised, guidance_interval, keep_all):
        shape = self._check_shape(shape)
        labels = self._check_labels(labels, shape[0])
        guidance_scale = check_guidance_scale(guidance_scale, labels)
        interval = check_guidance_interval(guidance_interval, self.num_timesteps)
        clip_denoised = check_clip_denoised(clip_denoised)
        rng, xp, T = check_rng(rng), self.xp, self.num_timesteps
        x = randn(rng, shape, self.dtype, xp)                    # (B, ...)
        xs, x0_hats = [x], []
        for t in self._progress(range(T - 1, -1, -1), progress, "DDPM sampling", T):
            noise = randn(rng, shape, self.dtype, xp) if t > 0 else None
            x, x0_hat = self._p_sample(x, t, noise, labels, scale_at(guidance_scale, interval, t), clip_denoised)
            if keep_all:
                xs.append(x)
                x0_hats.append(x0_hat)
        return (xp.stack(xs), xp.stack(x0_hats)) if keep_all else x

    # ---- training loss -------------------------------------------------------------
    def p_losses(self, x0, t=None, noise=None, labels=None, loss="mse", rng=None):
        """(loss, d_out): loss = mean w_t |model(x_t, t) - target|^p, target eps, x0 or v.

        mse: d_out = 2 w_t (out - target) / N; mae: d_out = w_t sign(out - target) / N.
        w_t = 1, or the min-SNR weight when the diffusion has `min_snr_gamma`.
        t defaults to Uniform{0..T-1}, noise to N(0, I), both drawn from rng.
        loss is a 0-d array on the device (no sync).
        """
        if loss not in LOSSES:
            raise ValueError(f"loss: expected one of {list(LOSSES)}, got {loss!r}")
        x0 = self._check_x(x0, "x0")
        xp, B = self.xp, x0.shape[0]
        if not bool(to_host(xp.isfinite(x0).all())):
            raise ValueError("x0: contains NaN or inf")
        if t is None or noise is None:
            rng = check_rng(rng)
        if t is None:
            t = xp.asarray(rng.integers(0, self.num_timesteps, size=B))   # (B,)
        else:
            t = self._t_batch(self._check_t(t, B), B)
        noise = randn(rng, x0.shape, x0.dtype, xp) if noise is None else self._check_like(noise, x0, "noise")
        labels = self._check_labels(labels, B)

        x_t = self._q_sample(x0, t, noise)                       # (B, ...)
        out = self.model.forward(x_t, t) if labels is None else self.model.forward(x_t, t, labels)
        if tuple(out.shape) != tuple(x0.shape):
            raise ValueError(f"model output: expected shape {tuple(x0.shape)}, got {tuple(out.shape)}")
        target = {"eps": noise, "x0": x0, "v": None}[self.objective]
        if target is None:
            target = self._v(x0, t, noise)
        diff = out - target                                      # (B, ...)
        N = diff.size
        if loss == "mse":
            value, d_out = diff * diff, diff * (2.0 / N)
        else:
            value, d_out = xp.abs(diff), xp.sign(diff) / N
        if self.min_snr_gamma is not None:
            w = self._coef("loss_weight", t, diff.ndim)          # (B, 1, ...)
            value, d_out = value * w, d_out * w
        value = xp.mean(value)
        return xp.asarray(value), d_out.astype(out.dtype, copy=False)
