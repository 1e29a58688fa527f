"""Samplers behind one front door, GaussianDiffusion.sample (sample.py).

    spacing.py      which timesteps: linspace, leading, trailing, uniform log-SNR, Karras sigmas
    denoiser.py     the model as a sampler calls it (guidance, noise levels, call count)
    dpm_solver.py   DPM-Solver++ 2M, 3M and 2M SDE (Lu et al. 2022)
    karras.py       Euler, Heun, Euler ancestral (Karras et al. 2022)
    sample.py       SAMPLERS, model_evaluations, SampleMixin.sample
    sweep.py        the examples' --sampler / --steps sweep: flags, runs, one row per run

Each sampler's update after the model call is one fused kernel pass
(minidiff.kernels: dpmpp_step, euler_step, euler_ancestral_step, heun_step).
DDPM and DDIM are gaussian.py's and ddim.py's, reached through the same door.
"""
from .dpm_solver import step_orders
from .sample import SAMPLERS, SampleMixin, check_sampler, model_evaluations
from .spacing import KARRAS_RHO, SPACINGS, karras_sigmas, log_snr_table, nearest_timesteps, sampler_timesteps

__all__ = ["SAMPLERS", "SPACINGS", "KARRAS_RHO", "SampleMixin", "check_sampler", "model_evaluations",
           "sampler_timesteps", "karras_sigmas", "log_snr_table", "nearest_timesteps", "step_orders"]
