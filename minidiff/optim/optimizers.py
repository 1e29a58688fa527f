"""First-order optimisers over the model's one flat parameter vector.

`model.flat()` gives (theta, grad), each (P,): every layer's params/grads are
views into them, so a step is a handful of whole-vector operations, whatever
the number of layers. State (`m`, `v`, momentum) lives in flat (P,) arrays
beside theta, on the same device.

    SGD    b_t = mu b_{t-1} + g_t;  theta -= lr (g_t + mu b_t  if nesterov else  b_t)
    Adam   m_t = b1 m + (1-b1) g;   v_t = b2 v + (1-b2) g^2
           theta -= lr/(1-b1^t) * m_t / (sqrt(v_t)/sqrt(1-b2^t) + eps)   (as PyTorch)
    AdamW  Adam with decoupled weight decay: theta *= 1 - lr wd before the update
           (Loshchilov & Hutter 2019); Adam's weight_decay adds wd theta to g instead.

Adam's update is one kernel pass over the vectors (minidiff.kernels.adam_step:
Numba on the CPU and on CUDA, the plain-xp reference otherwise).
"""
import math

import numpy as np

from ..backend import device_module, get_xp, to_host
from ..nn.layer import Layer


def _check_number(name, value, low, high=math.inf, low_open=False, high_open=True):
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = math.isfinite(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise ValueError(f"{name}: expected a number in {lo}{low}, {high}{hi}, got {value!r}")
    return float(value)


def _check_lr(value, dtype, positive=False):
    """A learning rate: finite, >= 0 (> 0 if `positive`), and finite in the parameters' dtype
    (lr = 1e39 is inf in float32: the first step would make every weight inf or NaN)."""
    largest = float(np.finfo(dtype).max)
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = math.isfinite(v) and (v > 0 if positive else v >= 0) and v <= largest
    if not ok:
        raise ValueError(f"lr: expected a number {'>' if positive else '>='} 0 that is finite in the "
                         f"parameters' dtype {np.dtype(dtype).name} (at most {largest:.4g}), got {value!r}")
    return float(value)


class Optimizer:
    """Base class: holds the model, the learning rate and the step counter.

    Subclasses list their hyperparameters in `hyper_names` and their flat
    state arrays in `state_names`; that is all `state_dict` needs.
    """
    hyper_names = ("lr",)
    state_names = ()

    def __init__(self, model, lr):
        if not isinstance(model, Layer):
            raise TypeError(f"{type(self).__name__}: model must be a minidiff Layer, got {type(model).__name__}")
        self.model = model
        _check_lr(lr, model.dtype, positive=True)
        self.lr = lr
        self._validate()
        self.step_count = 0
        theta, _ = model.flat()
        xp = get_xp(theta)
        for name in self.state_names:
            setattr(self, name, xp.zeros_like(theta))  # (P,)

    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        # >= 0 so that a schedule may decay to zero; the constructor asks for > 0
        self._lr = _check_lr(value, self.model.dtype)

    def step(self):
        raise NotImplementedError

    def zero_grad(self):
        self.model.zero_grad()

    # --- checkpoints --------------------------------------------------------
    def hyperparameters(self):
        """{name: number or list}: the JSON-able constructor arguments."""
        out = {}
        for name in self.hyper_names:
            v = getattr(self, name)
            out[name] = list(v) if isinstance(v, tuple) else v
        return out

    def state_dict(self):
        """{"type", "hyper", "step_count", "state": {name: (P,) array}} (live arrays)."""
        return {"type": type(self).__name__, "hyper": self.hyperparameters(),
                "step_count": int(self.step_count),
                "state": {name: getattr(self, name) for name in self.state_names}}

    def load_state_dict(self, state):
        """Restore hyperparameters, the step counter and the state arrays (copied in place)."""
        name = type(self).__name__
        if state.get("type", name) != name:
            raise ValueError(f"{name}.load_state_dict: state is for {state['type']}")
        theta, _ = self.model.flat()
        arrays = state.get("state", {})
        missing = sorted(set(self.state_names) - set(arrays))
        if missing:
            raise ValueError(f"{name}.load_state_dict: missing state arrays {missing}")
        for key in self.state_names:
            a = arrays[key]
            if tuple(a.shape) != tuple(theta.shape):
                raise ValueError(f"{name}.load_state_dict: {key} has shape {tuple(a.shape)}, "
                                 f"expected {tuple(theta.shape)} (a different model?)")
        for key, v in state.get("hyper", {}).items():
            if key not in self.hyper_names:
                raise ValueError(f"{name}.load_state_dict: unknown hyperparameter {key!r}")
            setattr(self, key, tuple(v) if isinstance(v, list) else v)
        self._validate()
        xp = get_xp(theta)
        for key in self.state_names:
            getattr(self, key)[...] = xp.asarray(arrays[key], dtype=theta.dtype)
        self.step_count = int(state.get("step_count", 0))

    def _validate(self):
        _check_number("lr", self.lr, 0.0)

    def to(self, device):
        """Move the state arrays to 'cpu' or 'cuda' and the model's dtype (after model.to / astype)."""
        xp = device_module(device)
        dtype = self.model.flat()[0].dtype
        for name in self.state_names:
            a = getattr(self, name)
            a = to_host(a) if xp is np else xp.asarray(a)
            setattr(self, name, a.astype(dtype, copy=False))
        return self

    def __repr__(self):
        args = ", ".join(f"{k}={v}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """SGD(model, lr, momentum=0.0, nesterov=False, weight_decay=0.0), PyTorch's update.

    g = grad + wd theta;  b = g at the first step, else mu b + g;
    theta -= lr * (g + mu b if nesterov else b)   (plain: theta -= lr g).
    """
    hyper_names = ("lr", "momentum", "nesterov", "weight_decay")
    state_names = ("momentum_buffer",)

    def __init__(self, model, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay
        super().__init__(model, lr)

    def _validate(self):
        super()._validate()
        self.momentum = _check_number("momentum", self.momentum, 0.0)
        self.weight_decay = _check_number("weight_decay", self.weight_decay, 0.0)
        if not isinstance(self.nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov: expected a bool, got {self.nesterov!r}")
        self.nesterov = bool(self.nesterov)
        if self.nesterov and self.momentum <= 0:
            raise ValueError("nesterov: needs momentum > 0")

    def step(self):
        theta, g = self.model.flat()                     # (P,), (P,)
        self.step_count += 1
        if self.weight_decay:
            g = g + self.weight_decay * theta            # (P,) new array; grad untouched
        if self.momentum:
            b = self.momentum_buffer                     # (P,)
            if self.step_count == 1:
                b[...] = g
            else:
                b *= self.momentum
                b += g
            g = g + self.momentum * b if self.nesterov else b
        theta -= self.lr * g


class Adam(Optimizer):
    """Adam(model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0) (Kingma & Ba 2015).

    weight_decay here is L2 (g += wd theta), as torch.optim.Adam; see AdamW.
    """
    hyper_names = ("lr", "betas", "eps", "weight_decay")
    state_names = ("m", "v")
    decoupled = False

    def __init__(self, model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay
        super().__init__(model, lr)

    def _validate(self):
        super()._validate()
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2:
            raise ValueError(f"betas: expected a pair (beta1, beta2), got {self.betas!r}")
        self.betas = (_check_number("betas[0]", self.betas[0], 0.0, 1.0),
                      _check_number("betas[1]", self.betas[1], 0.0, 1.0))
        self.eps = _check_number("eps", self.eps, 0.0)
        self.weight_decay = _check_number("weight_decay", self.weight_decay, 0.0)

    def step(self):
        from minidiff.kernels import adam_step
        theta, g = self.model.flat()                     # (P,), (P,)
        self.step_count += 1
        adam_step(theta, g, self.m, self.v, self.lr, *self.betas, self.eps, self.step_count,
                  self.weight_decay, self.decoupled)     # in place on theta, m, v; see kernels/adam/reference.py


class AdamW(Adam):
    """AdamW(model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2).

    theta *= 1 - lr wd, then the Adam update on the raw gradient.
    """
    decoupled = True

    def __init__(self, model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(model, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


OPTIMIZERS = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}
