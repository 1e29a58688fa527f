"""Changing the spatial size of NCHW maps: nearest upsampling, average and max
pooling, and flattening to vectors. None has parameters.

Pooling windows follow PyTorch (padding 0, ceil_mode=False): kernel (kh, kw),
stride (sh, sw) defaulting to the kernel, Ho = (H - kh) // sh + 1, so rows and
columns that do not fill a whole window are ignored (their gradient is 0).
Overlapping windows (stride < kernel) work too.
"""
import numpy as np

from ..backend import get_xp
from .layer import Layer, check_batch


def _pair(v, owner, name):
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{owner}: {name} must be an int or a pair, got {v!r}")
        a, b = int(v[0]), int(v[1])
    else:
        a = b = int(v)
    if a < 1 or b < 1:
        raise ValueError(f"{owner}: {name} must be >= 1, got {v!r}")
    return a, b


def _check_nchw(x, owner):
    if x.ndim != 4:
        raise ValueError(f"{owner}: expected input (B, C, H, W), got shape {x.shape}")
    check_batch(x, owner)


class Upsample(Layer):
    """Upsample(scale_factor=2, mode="nearest"): y[b, c, h, w] = x[b, c, h // s, w // s].

    x (B, C, H, W) -> y (B, C, sH, sW); backward sums dy over each s x s block.
    """

    def __init__(self, scale_factor=2, mode="nearest"):
        super().__init__()
        if mode != "nearest":
            raise ValueError(f"Upsample: only mode='nearest' is implemented, got {mode!r}")
        if int(scale_factor) != scale_factor or scale_factor < 1:
            raise ValueError(f"Upsample: scale_factor must be a positive integer, got {scale_factor!r}")
        self.scale_factor, self.mode = int(scale_factor), mode

    def forward(self, x):
        xp = get_xp(x)
        _check_nchw(x, "Upsample")
        B, C, H, W = x.shape
        s = self.scale_factor
        y = xp.empty((B, C, H * s, W * s), dtype=x.dtype)                   # (B, C, sH, sW)
        for i in range(s):          # one strided copy per block offset: ~5x faster
            for j in range(s):      # than broadcast + reshape for the U-Net's maps
                y[:, :, i::s, j::s] = x
        return y

    def backward(self, dy):
        s = self.scale_factor
        dx = dy[:, :, 0::s, 0::s].copy()                                    # (B, C, H, W)
        for i in range(s):          # strided adds: ~20x faster than reshape(..).sum((3, 5))
            for j in range(s):
                if i or j:
                    dx += dy[:, :, i::s, j::s]
        return dx

    def extra_repr(self):
        return f"scale_factor={self.scale_factor}, mode={self.mode!r}"


class _Pool2d(Layer):
    """Shared window geometry: the kh*kw offsets (i, j) each select one strided
    (B, C, Ho, Wo) view x[:, :, i::sh, j::sw] holding that offset of every window."""

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = _pair(kernel_size, name, "kernel_size")
        self.stride = self.kernel_size if stride is None else _pair(stride, name, "stride")

    def _geometry(self, x):
        name = type(self).__name__
        _check_nchw(x, name)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        H, W = x.shape[2:]
        if H < kh or W < kw:
            raise ValueError(f"{name}: input {H}x{W} is smaller than the kernel {kh}x{kw}")
        self.x_shape = x.shape
        self.out_hw = ((H - kh) // sh + 1, (W - kw) // sw + 1)

    def _windows(self):
        """Yield (k, index) for the kernel offsets, k = i * kw + j."""
        (kh, kw), (sh, sw), (Ho, Wo) = self.kernel_size, self.stride, self.out_hw
        for i in range(kh):
            for j in range(kw):
                yield i * kw + j, (slice(None), slice(None),
                                   slice(i, i + sh * (Ho - 1) + 1, sh),
                                   slice(j, j + sw * (Wo - 1) + 1, sw))

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class AvgPool2d(_Pool2d):
    """AvgPool2d(kernel_size, stride=None): y = mean of x over each kh x kw window.

    x (B, C, H, W) -> y (B, C, Ho, Wo); backward spreads dy / (kh kw) over each window.
    """

    def forward(self, x):
        xp = get_xp(x)
        self._geometry(x)
        y = xp.zeros(x.shape[:2] + self.out_hw, dtype=x.dtype)          # (B, C, Ho, Wo)
        for _, win in self._windows():
            y += x[win]
        return y / (self.kernel_size[0] * self.kernel_size[1])

    def backward(self, dy):
        xp = get_xp(dy)
        dx = xp.zeros(self.x_shape, dtype=dy.dtype)                      # (B, C, H, W)
        g = dy / (self.kernel_size[0] * self.kernel_size[1])             # (B, C, Ho, Wo)
        for _, win in self._windows():
            dx[win] += g
        return dx


class MaxPool2d(_Pool2d):
    """MaxPool2d(kernel_size, stride=None): y = max of x over each kh x kw window.

    x (B, C, H, W) -> y (B, C, Ho, Wo); backward routes dy to the argmax of its
    window (the first one in row-major order on ties, as PyTorch; NaN propagates).
    """

    def forward(self, x):
        xp = get_xp(x)
        self._geometry(x)
        y, self.argmax = None, None
        for k, win in self._windows():
            x_k = x[win]                                                 # (B, C, Ho, Wo)
            if y is None:
                y = x_k.copy()
                self.argmax = xp.zeros(y.shape, dtype=np.int32)          # (B, C, Ho, Wo)
                continue
            better = (x_k > y) | (xp.isnan(x_k) & ~xp.isnan(y))
            y = xp.where(better, x_k, y)
            self.argmax = xp.where(better, k, self.argmax)
        return y

    def backward(self, dy):
        xp = get_xp(dy)
        dx = xp.zeros(self.x_shape, dtype=dy.dtype)                      # (B, C, H, W)
        for k, win in self._windows():
            dx[win] += xp.where(self.argmax == k, dy, 0)
        return dx


class Flatten(Layer):
    """Flatten(): x (B, ...) -> (B, prod(...)); backward reshapes dy back."""

    def forward(self, x):
        if x.ndim < 1:
            raise ValueError("Flatten: expected an input with a batch axis, got a scalar")
        check_batch(x, "Flatten")
        self.x_shape = x.shape
        return x.reshape(x.shape[0], -1)                                 # (B, D)

    def backward(self, dy):
        return dy.reshape(self.x_shape)
