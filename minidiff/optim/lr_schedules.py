"""Learning-rate schedules: callables step -> factor; the trainer sets lr = base_lr * factor.

`step` counts optimiser steps already taken (0 for the first update).

    constant:  1
    warmup(W): min(1, (step + 1) / W)                          (linear ramp)
    cosine(S, W, min_factor):  the ramp for step < W, then
               min_factor + (1 - min_factor) (1 + cos(pi p)) / 2,  p = min(1, (step - W) / (S - W))
               (Loshchilov & Hutter 2017, without restarts)
"""
import math


def _check_steps(name, v, low):
    if isinstance(v, bool) or int(v) != v or v < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {v!r}")
    return int(v)


class constant:
    """constant() -> step -> 1.0."""

    def __call__(self, step):
        return 1.0

    def __repr__(self):
        return "constant()"


class warmup:
    """warmup(steps) -> step -> min(1, (step + 1) / steps)."""

    def __init__(self, steps):
        self.steps = _check_steps("warmup steps", steps, 1)

    def __call__(self, step):
        return min(1.0, (step + 1) / self.steps)

    def __repr__(self):
        return f"warmup({self.steps})"


class cosine:
    """cosine(total_steps, warmup_steps=0, min_factor=0.0) -> step -> factor in [min_factor, 1]."""

    def __init__(self, total_steps, warmup_steps=0, min_factor=0.0):
        self.total_steps = _check_steps("total_steps", total_steps, 1)
        self.warmup_steps = _check_steps("warmup_steps", warmup_steps, 0)
        if self.warmup_steps >= self.total_steps:
            raise ValueError(f"warmup_steps: must be < total_steps ({self.total_steps}), "
                             f"got {self.warmup_steps}")
        if isinstance(min_factor, bool) or not 0.0 <= min_factor <= 1.0:
            raise ValueError(f"min_factor: expected a number in [0, 1], got {min_factor!r}")
        self.min_factor = float(min_factor)

    def __call__(self, step):
        W = self.warmup_steps
        if step < W:
            return (step + 1) / W
        p = min(1.0, (step - W) / (self.total_steps - W))
        return self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi * p))

    def __repr__(self):
        return f"cosine({self.total_steps}, warmup_steps={self.warmup_steps}, min_factor={self.min_factor})"


SCHEDULES = {"constant": constant, "warmup": warmup, "cosine": cosine}
