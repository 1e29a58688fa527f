"""Optimisers, gradient clipping, weight EMA and learning-rate schedules, all on the flat vector."""
from .optimizers import Adam, AdamW, OPTIMIZERS, Optimizer, SGD
from .clip import clip_grad_norm
from .ema import EMA
from .lr_schedules import SCHEDULES, constant, cosine, warmup

__all__ = ["Adam", "AdamW", "OPTIMIZERS", "Optimizer", "SGD", "clip_grad_norm", "EMA",
           "SCHEDULES", "constant", "cosine", "warmup"]
