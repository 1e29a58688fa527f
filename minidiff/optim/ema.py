"""Exponential moving average of the weights, kept as one flat shadow vector.

    theta_ema <- d theta_ema + (1 - d) theta
    with warmup: d_n = min(decay, (1 + n) / (10 + n)), n = updates so far
    (TensorFlow's ExponentialMovingAverage num_updates rule).
"""
from contextlib import contextmanager

import numpy as np

from ..backend import device_module, get_xp, to_host
from ..nn.layer import Layer


class EMA:
    """EMA(model, decay=0.999, warmup=False): `update()` after each optimiser step."""

    def __init__(self, model, decay=0.999, warmup=False):
        if not isinstance(model, Layer):
            raise TypeError(f"EMA: model must be a minidiff Layer, got {type(model).__name__}")
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA: decay must be a number in [0, 1), got {decay!r}")
        self.model = model
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        theta, _ = model.flat()
        self.shadow = theta.copy()                       # (P,)

    def current_decay(self):
        """The d used by the next update."""
        if self.warmup:
            n = self.num_updates
            return min(self.decay, (1.0 + n) / (10.0 + n))
        return self.decay

    def update(self):
        """shadow <- d shadow + (1 - d) theta, in place."""
        theta, _ = self.model.flat()                     # (P,)
        d = self.current_decay()
        self.num_updates += 1
        self.shadow -= (1.0 - d) * (self.shadow - theta)

    def copy_to(self, model=None):
        """Overwrite the model's weights with the EMA weights."""
        theta, _ = self._theta(model)
        theta[...] = self.shadow

    @contextmanager
    def applied(self, model=None):
        """`with ema.applied(model):` the EMA weights inside, the trained weights restored after."""
        theta, _ = self._theta(model)
        backup = theta.copy()                            # (P,)
        theta[...] = self.shadow
        try:
            yield model if model is not None else self.model
        finally:
            theta[...] = backup

    def _theta(self, model):
        theta, grad = (model or self.model).flat()
        if theta.shape != self.shadow.shape:
            raise ValueError(f"EMA: model has {theta.shape[0]} parameters, the EMA {self.shadow.shape[0]}")
        return theta, grad

    # --- checkpoints and devices ---------------------------------------------
    def state_dict(self):
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": int(self.num_updates),
                "shadow": self.shadow}

    def load_state_dict(self, state):
        shadow = state["shadow"]
        if tuple(shadow.shape) != tuple(self.shadow.shape):
            raise ValueError(f"EMA.load_state_dict: shadow has shape {tuple(shadow.shape)}, "
                             f"expected {tuple(self.shadow.shape)}")
        self.decay = float(state.get("decay", self.decay))
        self.warmup = bool(state.get("warmup", self.warmup))
        self.num_updates = int(state.get("num_updates", 0))
        self.shadow[...] = get_xp(self.shadow).asarray(shadow, dtype=self.shadow.dtype)

    def to(self, device):
        """Move the shadow to 'cpu' or 'cuda' and the model's dtype (after model.to / astype)."""
        xp = device_module(device)
        dtype = self.model.flat()[0].dtype
        a = to_host(self.shadow) if xp is np else xp.asarray(self.shadow)
        self.shadow = a.astype(dtype, copy=False)
        return self

    def __repr__(self):
        return f"EMA(decay={self.decay}, warmup={self.warmup}, num_updates={self.num_updates})"
