"""Pointwise activations; each backward is the derivative times dy."""
import numpy as np

from ..backend import get_xp
from .layer import Layer, check_batch


def _erf(x):
    """Elementwise erf for NumPy (SciPy) or CuPy (cupyx), imported on use."""
    xp = get_xp(x)
    if xp is np:
        from scipy.special import erf
    else:
        from cupyx.scipy.special import erf
    return erf(x)


class ReLU(Layer):
    """y = max(x, 0);  dy/dx = [x > 0]."""

    def forward(self, x):
        check_batch(x, "ReLU")
        self.mask = x > 0
        return x * self.mask

    def backward(self, dy):
        return dy * self.mask


class SiLU(Layer):
    """Swish: y = x sigmoid(x);  dy/dx = s (1 + x (1 - s)),  s = sigmoid(x).

    sigmoid(x) = (1 + tanh(x/2)) / 2 never overflows, unlike 1 / (1 + exp(-x)).
    """

    def forward(self, x):
        xp = get_xp(check_batch(x, "SiLU"))
        self.x = x
        self.s = 0.5 * (1.0 + xp.tanh(0.5 * x))
        return x * self.s

    def backward(self, dy):
        s = self.s
        return dy * (s * (1.0 + self.x * (1.0 - s)))


Swish = SiLU


SQRT_2_OVER_PI = float(np.sqrt(2.0 / np.pi))       # python floats: keep float32 arrays float32
SQRT_2 = float(np.sqrt(2.0))
SQRT_2PI = float(np.sqrt(2.0 * np.pi))


class GELU(Layer):
    """GELU(approximate="tanh" | "none").

    exact: y = x Phi(x),  dy/dx = Phi(x) + x phi(x)
    tanh:  y = x/2 (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
    """

    def __init__(self, approximate="tanh"):
        super().__init__()
        if approximate not in ("tanh", "none"):
            raise ValueError(f"GELU: approximate must be 'tanh' or 'none', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        xp = get_xp(check_batch(x, "GELU"))
        self.x = x
        if self.approximate == "tanh":
            self.th = xp.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3))
            return 0.5 * x * (1.0 + self.th)
        self.Phi = 0.5 * (1.0 + _erf(x / SQRT_2))
        return x * self.Phi

    def backward(self, dy):
        xp, x = get_xp(self.x), self.x
        if self.approximate == "tanh":
            th = self.th
            du = SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x ** 2)
            return dy * (0.5 * (1.0 + th) + 0.5 * x * (1.0 - th ** 2) * du)
        phi = xp.exp(-0.5 * x ** 2) / SQRT_2PI
        return dy * (self.Phi + x * phi)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"
