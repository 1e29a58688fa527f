"""2-D convolution layer, PyTorch layout: weight (out, in, kh, kw), NCHW data."""
import numpy as np

from ..backend import as_rng, check_float_dtype
from .grad_mode import grad_enabled, nothing_kept
from .layer import Layer, check_batch, uniform_init


def _pair(v, name):
    """An int or a pair of positive/non-negative ints -> (a, b)."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"Conv2d: {name} must be an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


class Conv2d(Layer):
    """Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True).

    y[b, o] = bias[o] + sum_c w[o, c] * x_pad[b, c]  (cross-correlation, stride s)
    x (B, in, H, W) -> y (B, out, Ho, Wo), Ho = (H + 2p - kh) // s + 1.
    backward: dw += dy (*) x, db += sum dy, dx = the transposed convolution of dy.
    The arithmetic lives in minidiff.kernels (kernels/conv/: reference.py is im2col + GEMM).
    forward keeps x for one backward (nothing under nn.no_grad()).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 bias=True, rng=None, dtype=np.float32):
        super().__init__()
        rng, dtype = as_rng(rng), check_float_dtype(dtype)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        if self.in_channels < 1 or self.out_channels < 1:
            raise ValueError(f"Conv2d: channels must be >= 1, got {in_channels}, {out_channels}")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"Conv2d: expected kernel_size >= 1, stride >= 1, padding >= 0, "
                             f"got {kernel_size!r}, {stride!r}, {padding!r}")
        kh, kw = self.kernel_size
        fan_in = self.in_channels * kh * kw
        self.add_param("weight", uniform_init(rng, (out_channels, in_channels, kh, kw), fan_in, dtype))
        if bias:
            self.add_param("bias", uniform_init(rng, (out_channels,), fan_in, dtype))

    def _check_input(self, x, owner="Conv2d"):
        """ValueError unless x (B, in, H, W), B >= 1, fits the conv."""
        shape = tuple(x.shape)
        if len(shape) != 4:
            raise ValueError(f"{owner}: expected input (B, C, H, W), got shape {shape}")
        check_batch(x, owner)
        if shape[1] != self.in_channels:
            raise ValueError(f"{owner}: input has {shape[1]} channels, expected {self.in_channels}")
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        if shape[2] + 2 * ph < kh or shape[3] + 2 * pw < kw:
            raise ValueError(f"{owner}: input {shape[2]}x{shape[3]} (padding {ph}, {pw}) "
                             f"is smaller than the kernel {kh}x{kw}")

    def forward(self, x):
        from minidiff.kernels import conv2d_forward
        self._check_input(x)
        self.x = x if grad_enabled() else None                           # (B, in, H, W), for backward
        return conv2d_forward(x, self.params["weight"], self.params.get("bias"),
                              self.stride, self.padding)                 # (B, out, Ho, Wo)

    def backward(self, dy):
        from minidiff.kernels import conv2d_backward
        if self.x is None:
            raise nothing_kept(self)
        dx, dw, db = conv2d_backward(dy, self.x, self.params["weight"], self.stride,
                                     self.padding, need_bias="bias" in self.params)
        self.add_grads(dw, db)
        self.x = None                             # the input goes as soon as it is used: a lower peak
        return dx                                                        # (B, in, H, W)

    def add_grads(self, dw, db):
        """grads += the weight gradient (out, in, kh, kw) and the bias gradient (out,) or None."""
        self.grads["weight"] += dw
        if db is not None:
            self.grads["bias"] += db

    def extra_repr(self):
        s = f"{self.in_channels} => {self.out_channels}, kernel_size={self.kernel_size}"
        if self.stride != (1, 1):
            s += f", stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if "bias" not in self.params:
            s += ", bias=False"
        return s
