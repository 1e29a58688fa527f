"""LeNet-5 (LeCun et al. 1998), the digit classifier that judges generated samples.

    x (B, 1, 28, 28) in [-1, 1]
    -> Conv2d(1, 6, 5, padding=2) -> act -> pool 2      (B, 6, 14, 14)
    -> Conv2d(6, 16, 5)           -> act -> pool 2      (B, 16, 5, 5)
    -> Flatten -> Dense(400, 120) -> act -> Dense(120, 84) -> act    = features (B, 84)
    -> Dense(84, num_classes)                                        = logits (B, 10)

`features(x)` (the 84-dim penultimate activations) feed the Frechet LeNet
Distance; `softmax_cross_entropy` is its training loss.
"""
import numpy as np

from ..backend import as_rng, get_xp
from ..nn import Dense, GELU, Layer, ReLU, Sequential, SiLU
from ..nn.conv import Conv2d
from ..nn.resample import AvgPool2d, Flatten, MaxPool2d
from .inputs import check_seed, check_x

ACTIVATIONS = {"relu": ReLU, "silu": SiLU, "gelu": GELU}
POOLS = {"max": MaxPool2d, "avg": AvgPool2d}


class LeNet5(Layer):
    """LeNet5(num_classes=10, seed=0, activation="relu", pool="max"): (B, 1, 28, 28) -> (B, classes)."""

    def __init__(self, num_classes=10, seed=0, activation="relu", pool="max", dtype=np.float32):
        super().__init__()
        if int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(f"LeNet5: num_classes must be an integer >= 2, got {num_classes!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"LeNet5: activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if pool not in POOLS:
            raise ValueError(f"LeNet5: pool must be one of {sorted(POOLS)}, got {pool!r}")
        rng, act, Pool = as_rng(check_seed(seed, "LeNet5")), ACTIVATIONS[activation], POOLS[pool]
        self.body = Sequential(
            Conv2d(1, 6, 5, padding=2, rng=rng, dtype=dtype), act(), Pool(2),     # (B, 6, 14, 14)
            Conv2d(6, 16, 5, rng=rng, dtype=dtype), act(), Pool(2),               # (B, 16, 5, 5)
            Flatten(),                                                            # (B, 400)
            Dense(400, 120, rng=rng, dtype=dtype), act(),                         # (B, 120)
            Dense(120, 84, rng=rng, dtype=dtype), act())                          # (B, 84)
        self.head = Dense(84, num_classes, rng=rng, dtype=dtype)                  # (B, classes)
        self.config = dict(num_classes=int(num_classes), seed=int(seed),
                           activation=activation, pool=pool)

    def _check_input(self, x):
        check_x(x, "LeNet5", (1, 28, 28), "1, 28, 28")

    def features(self, x):
        """The 84-dim penultimate activations (B, 84). Not for backward: use forward."""
        self._check_input(x)
        return self.body.forward(x)                                  # (B, 84)

    def forward(self, x):
        self._check_input(x)
        return self.head.forward(self.body.forward(x))               # (B, classes)

    def backward(self, dy):
        return self.body.backward(self.head.backward(dy))            # (B, 1, 28, 28)

    def predict(self, x, batch_size=500):
        """argmax of the logits, (B,), evaluated in batches."""
        xp = get_xp(x)
        self._check_input(x)
        out = [self.forward(x[i:i + batch_size]).argmax(axis=1) for i in range(0, x.shape[0], batch_size)]
        return xp.concatenate(out)

    def extra_repr(self):
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items())


def softmax_cross_entropy(logits, labels):
    """(loss, dlogits): L = -1/B sum_b log softmax(z_b)[y_b];  dL/dz = (softmax(z) - onehot(y)) / B.

    logits (B, K) float, labels (B,) integers in [0, K).
    """
    xp = get_xp(logits)
    if logits.ndim != 2:
        raise ValueError(f"softmax_cross_entropy: logits must be (B, K), got {tuple(logits.shape)}")
    B, K = logits.shape
    if B == 0:
        raise ValueError(f"softmax_cross_entropy: logits must be a batch of B >= 1 samples, "
                         f"got an empty batch {tuple(logits.shape)}")
    labels = xp.asarray(labels)
    if labels.shape != (B,) or labels.dtype.kind not in "iu":
        raise ValueError(f"softmax_cross_entropy: labels must be {B} integers, "
                         f"got {labels.dtype} {tuple(labels.shape)}")
    if B and (int(labels.min()) < 0 or int(labels.max()) >= K):
        raise ValueError(f"softmax_cross_entropy: labels must be in [0, {K}), "
                         f"got range [{int(labels.min())}, {int(labels.max())}]")
    z = logits - logits.max(axis=1, keepdims=True)                   # (B, K) shifted for stability
    log_p = z - xp.log(xp.exp(z).sum(axis=1, keepdims=True))         # (B, K)
    rows = xp.arange(B)
    loss = -log_p[rows, labels].mean()
    dlogits = xp.exp(log_p)                                          # (B, K) softmax
    dlogits[rows, labels] -= 1.0
    dlogits /= B
    return float(loss), dlogits
