"""Diffusion mathematics: schedules, DDPM (GaussianDiffusion), DDIM, classifier-free guidance, the few-step
samplers (samplers/: DPM-Solver++, Euler, Heun, Euler ancestral) behind GaussianDiffusion.sample."""
from .schedules import SCHEDULES, cosine_beta_schedule, linear_beta_schedule, make_betas, sigmoid_beta_schedule
from .ddim import SPACINGS, sampling_timesteps_spacing
from .gaussian import LOSSES, OBJECTIVES, VARIANCES, GaussianDiffusion
from .guidance import UNCONDITIONED, classifier_free_guidance, guided_forward
from .samplers import SAMPLERS, model_evaluations, sampler_timesteps
from .samplers import SPACINGS as SAMPLER_SPACINGS

__all__ = [
    "GaussianDiffusion", "make_betas", "linear_beta_schedule", "cosine_beta_schedule",
    "sigmoid_beta_schedule", "sampling_timesteps_spacing", "classifier_free_guidance",
    "guided_forward", "SCHEDULES", "SPACINGS", "OBJECTIVES", "VARIANCES", "LOSSES", "UNCONDITIONED",
    "SAMPLERS", "SAMPLER_SPACINGS", "model_evaluations", "sampler_timesteps",
]
