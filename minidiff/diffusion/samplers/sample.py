"""The front door: GaussianDiffusion.sample(shape, sampler=..., steps=..., spacing=...), every sampler behind one call.

    sampler           model calls   spacing (default)   eta (default)   reference
    ddpm              T             (all T steps)        -               Ho et al. 2020; p_sample_loop
    ddim              S             linspace             0              Song et al. 2020; the DDIM step of ddim.py
    euler             S             leading              -              Karras et al. 2022 (karras.py)
    heun              2S - 1        leading              -              Karras et al. 2022, Algorithm 1
    euler_ancestral   S             leading              1              k-diffusion
    dpmpp_2m          S             trailing             -              Lu et al. 2022, Algorithm 2 (dpm_solver.py)
    dpmpp_3m          S             trailing             -              Lu et al. 2022, third-order multistep
    dpmpp_2m_sde      S             logsnr               1              Lu et al. 2022; k-diffusion, diffusers

S = steps (default T), over the timesteps of `spacing` (spacing.py). The
default spacings are the ones closest to the exact ODE sample at 5-20 steps
with an exact model on the MNIST example's schedule (cosine, T = 100;
docs/samplers.md), except DPM-Solver++'s deterministic forms: on the trained
MNIST U-Net, uniform log-SNR (the exact model's choice) spends half of 10
steps at t >= 94 and gave FLD 24.7 where trailing gave 6.5 (2026-12-07).
Karras's sigmas suit a moderate s_max, and the cosine schedule's last
timestep has s = 2029 (its beta clipped at 0.999). Every
sampler takes labels with classifier-free guidance and a guidance interval
(guidance.py) and clips x0_hat as the diffusion does (clip_denoised). eta is
the share of fresh noise of the stochastic samplers (0 makes them
deterministic); the deterministic ones take none.
"""
import numbers
from dataclasses import dataclass

from ...backend import as_rng, randn
from ..ddim import check_eta
from ..guidance import check_guidance_interval, check_guidance_scale, scale_at
from . import dpm_solver, karras
from .denoiser import Denoiser, noise_source
from .spacing import SPACINGS, sampler_timesteps, timestep_pairs


@dataclass(frozen=True)
class Sampler:
    """A sampler's entry in SAMPLERS: its step generator, default spacing and eta (None: deterministic)."""
    run: object
    spacing: str
    eta: float = None
    calls_per_step: int = 1


def _ddim(diffusion, labels, guidance_scale, guidance_interval, clip_denoised):
    """DDIM as a step generator over any timesteps: ddim.py's step, unchanged."""
    def run(denoiser, x, timesteps, noise=None, eta=0.0):
        for t, t_next in timestep_pairs(timesteps):
            z = noise() if eta > 0 else None                 # drawn at every step, as ddim_sample_loop does
            x, x0_hat = diffusion._ddim_step(x, t, t_next, z, eta, labels,
                                             scale_at(guidance_scale, guidance_interval, t), clip_denoised)
            yield x, x0_hat
    return run


SAMPLERS = {
    "ddpm": Sampler(None, None),
    "ddim": Sampler(None, "linspace", eta=0.0),
    "euler": Sampler(karras.euler, "leading"),
    "heun": Sampler(karras.heun, "leading", calls_per_step=2),
    "euler_ancestral": Sampler(karras.euler_ancestral, "leading", eta=1.0),
    "dpmpp_2m": Sampler(dpm_solver.dpmpp_2m, "trailing"),
    "dpmpp_3m": Sampler(dpm_solver.dpmpp_3m, "trailing"),
    "dpmpp_2m_sde": Sampler(dpm_solver.dpmpp_2m_sde, "logsnr", eta=1.0),
}


def check_sampler(sampler):
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        raise ValueError(f"sampler: expected one of {list(SAMPLERS)}, got {sampler!r}")
    return sampler


def model_evaluations(sampler, steps):
    """The number of model calls a sampler makes in `steps` steps (heun: 2 steps - 1; ddpm: steps = T)."""
    info = SAMPLERS[check_sampler(sampler)]
    return steps if info.calls_per_step == 1 else info.calls_per_step * steps - 1


class SampleMixin:
    """GaussianDiffusion.sample: the one entry to every sampler."""

    def sample(self, shape, sampler="dpmpp_2m", steps=None, spacing=None, eta=None, labels=None,
               guidance_scale=1.0, guidance_interval=None, clip_denoised=None, rng=None, x_T=None,
               progress=True, return_intermediates=False):
        """Draw samples (B, ...) with `sampler` in `steps` steps (default T) from x_T (default N(0, I)).

        spacing: one of SPACINGS (default: the sampler's, see the table above); eta: the
        stochastic samplers' noise share in [0, 1]. labels (B,) with guidance_scale s and
        guidance_interval (t_lo, t_hi): classifier-free guidance, s applied at t_lo <= t <= t_hi.
        return_intermediates: (xs (S+1, B, ...) from x_T to the sample, x0_hats (S, B, ...) the
        data prediction at each step's start) instead of the sample alone.
        """
        sampler = check_sampler(sampler)
        info, T = SAMPLERS[sampler], self.num_timesteps
        if sampler == "ddpm":
            if steps not in (None, T):
                raise ValueError(f"steps: ddpm runs all {T} steps (None or {T}), got {steps!r}; for fewer steps "
                                 "use sampler='ddim' with eta=1")
            if spacing is not None:
                raise ValueError(f"spacing: ddpm visits every timestep and takes none, got {spacing!r}")
        steps = T if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or not 1 <= steps <= T:
            raise ValueError(f"steps: expected an integer in [1, {T}], got {steps!r}")
        spacing = info.spacing if spacing is None else spacing
        if sampler != "ddpm" and spacing not in SPACINGS:
            raise ValueError(f"spacing: expected one of {list(SPACINGS)}, got {spacing!r}")
        if eta is not None and info.eta is None:
            stochastic = [k for k, v in SAMPLERS.items() if v.eta is not None]
            raise ValueError(f"eta: sampler {sampler!r} takes no eta (only {stochastic} do), got {eta!r}")
        eta = info.eta if eta is None else check_eta(eta)
        guidance_scale = check_guidance_scale(guidance_scale, labels)
        interval = check_guidance_interval(guidance_interval, T)
        if not isinstance(return_intermediates, bool):
            raise TypeError(f"return_intermediates: expected a bool, got {return_intermediates!r}")
        if sampler == "ddpm":
            if x_T is not None:
                raise ValueError("x_T: ddpm starts from its own noise (p_sample_loop); x_T is for the other samplers")
            loop = self.p_sample_loop_all if return_intermediates else self.p_sample_loop
            return loop(shape, labels=labels, guidance_scale=guidance_scale, rng=rng, progress=progress,
                        clip_denoised=clip_denoised, guidance_interval=interval)

        timesteps = sampler_timesteps(self._buffers64["alphas_cumprod"], steps, spacing)   # (S,) descending
        rng, xp = as_rng(rng), self.xp
        if x_T is None:
            x = randn(rng, self._check_shape(shape), self.dtype, xp)                       # (B, ...)
        else:
            x = self._check_x(x_T, "x_T")
            if shape is not None and tuple(shape) != tuple(x.shape):
                raise ValueError(f"x_T: shape {tuple(x.shape)} does not match shape {tuple(shape)}")
        labels = self._check_labels(labels, x.shape[0])
        clip = self.clip_denoised if clip_denoised is None else bool(clip_denoised)
        run = _ddim(self, labels, guidance_scale, interval, clip) if sampler == "ddim" else info.run
        denoiser = Denoiser(self, labels, guidance_scale, interval, clip)
        noise = noise_source(rng, x.shape, x.dtype, xp)
        xs, x0_hats = [x], []
        for x, x0_hat in self._progress(run(denoiser, x, timesteps, noise=noise, eta=eta), progress,
                                        f"{sampler} sampling", len(timesteps)):
            if return_intermediates:
                xs.append(x)
                x0_hats.append(x0_hat)
        return (xp.stack(xs), xp.stack(x0_hats)) if return_intermediates else x
