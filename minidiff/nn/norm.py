"""Group normalisation (Wu & He 2018), PyTorch layout: weight, bias (C,)."""
import numpy as np

from ..backend import get_xp
from .layer import Layer


class GroupNorm(Layer):
    """GroupNorm(num_groups, num_channels, eps=1e-5, affine=True).

    The C channels are split into G groups; per sample and group
        xhat = (x - mean) * rstd,   rstd = 1 / sqrt(var + eps)   (biased var)
        y    = weight[c] * xhat + bias[c]
    x (B, C, *spatial) -> y, same shape. backward, with g = dy * weight and the
    means taken over a group (n = C/G * prod(spatial) entries):
        dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
        dweight += sum dy * xhat,   dbias += sum dy   (over batch and spatial)
    Statistics are computed in the input dtype.
    """

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, dtype=np.float32):
        super().__init__()
        self.num_groups, self.num_channels = int(num_groups), int(num_channels)
        if self.num_groups < 1 or self.num_channels < 1 or self.num_channels % self.num_groups:
            raise ValueError(f"GroupNorm: num_groups ({num_groups}) must divide "
                             f"num_channels ({num_channels})")
        self.eps, self.affine = float(eps), bool(affine)
        if affine:
            self.add_param("weight", np.ones(num_channels, dtype=dtype))
            self.add_param("bias", np.zeros(num_channels, dtype=dtype))

    def forward(self, x):
        xp = get_xp(x)
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"GroupNorm: expected input (B, {self.num_channels}, ...), got shape {x.shape}")
        B, G = x.shape[0], self.num_groups
        xg = x.reshape(B, G, -1)                                         # (B, G, n)
        mean = xg.mean(axis=2, keepdims=True)                            # (B, G, 1)
        xc = xg - mean                                                   # (B, G, n)
        var = (xc * xc).mean(axis=2, keepdims=True)                      # (B, G, 1)
        self.rstd = 1.0 / xp.sqrt(var + self.eps)                        # (B, G, 1)
        self.mean = mean
        self.xhat = (xc * self.rstd).reshape(x.shape)                    # (B, C, ...)
        if not self.affine:
            return self.xhat
        cshape = (1, self.num_channels) + (1,) * (x.ndim - 2)
        return self.xhat * self.params["weight"].reshape(cshape) + self.params["bias"].reshape(cshape)

    def backward(self, dy):
        xhat, B, G = self.xhat, dy.shape[0], self.num_groups
        cshape = (1, self.num_channels) + (1,) * (dy.ndim - 2)
        if self.affine:
            reduce_axes = (0,) + tuple(range(2, dy.ndim))
            self.grads["weight"] += (dy * xhat).sum(axis=reduce_axes)    # (C,)
            self.grads["bias"] += dy.sum(axis=reduce_axes)               # (C,)
            g = dy * self.params["weight"].reshape(cshape)               # (B, C, ...)
        else:
            g = dy
        g = g.reshape(B, G, -1)                                          # (B, G, n)
        xh = xhat.reshape(B, G, -1)                                      # (B, G, n)
        dx = self.rstd * (g - g.mean(axis=2, keepdims=True)
                          - xh * (g * xh).mean(axis=2, keepdims=True))   # (B, G, n)
        return dx.reshape(dy.shape)

    def extra_repr(self):
        s = f"{self.num_groups}, {self.num_channels}, eps={self.eps:g}"
        return s if self.affine else s + ", affine=False"
