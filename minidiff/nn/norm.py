"""Group normalisation (Wu & He 2018), PyTorch layout: weight, bias (C,); and its fusion with SiLU."""
import numpy as np

from .grad_mode import grad_enabled, nothing_kept
from .layer import Layer, check_batch


class GroupNorm(Layer):
    """GroupNorm(num_groups, num_channels, eps=1e-5, affine=True).

    The C channels are split into G groups; per sample and group
        xhat = (x - mean) * rstd,   rstd = 1 / sqrt(var + eps)   (biased var)
        y    = weight[c] * xhat + bias[c]
    x (B, C, *spatial) -> y, same shape. backward, with g = dy * weight and the
    means taken over a group (n = C/G * prod(spatial) entries):
        dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
        dweight += sum dy * xhat,   dbias += sum dy   (over batch and spatial)
    The arithmetic is minidiff.kernels.groupnorm_silu_* (silu=False, no shift);
    forward keeps x and the (B, G) statistics for one backward (nothing under
    nn.no_grad()), which recomputes xhat.
    """
    silu = False                            # GroupNormSiLU: y = SiLU(...)

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, dtype=np.float32):
        super().__init__()
        self.num_groups, self.num_channels = int(num_groups), int(num_channels)
        if self.num_groups < 1 or self.num_channels < 1 or self.num_channels % self.num_groups:
            raise ValueError(f"{type(self).__name__}: num_groups ({num_groups}) must divide "
                             f"num_channels ({num_channels})")
        self.eps, self.affine = float(eps), bool(affine)
        if affine:
            self.add_param("weight", np.ones(num_channels, dtype=dtype))
            self.add_param("bias", np.zeros(num_channels, dtype=dtype))

    def forward(self, x):
        return self._forward(x, None)

    def _check_input(self, x, shift):
        """ValueError unless x (B, C, ...), B >= 1, and shift (B, C) or None fit the layer."""
        shape = tuple(x.shape)
        if len(shape) < 2 or shape[1] != self.num_channels:
            raise ValueError(f"{type(self).__name__}: expected input (B, {self.num_channels}, ...), "
                             f"got shape {shape}")
        check_batch(x, type(self).__name__)
        if shift is not None and tuple(shift.shape) != (shape[0], self.num_channels):
            raise ValueError(f"{type(self).__name__}: shift must be ({shape[0]}, {self.num_channels}), "
                             f"got {tuple(shift.shape)}")

    def _forward(self, x, shift, residual=None):
        from minidiff.kernels import groupnorm_silu_forward
        self._check_input(x, shift)
        y, mean, rstd = groupnorm_silu_forward(
            x, self.params.get("weight"), self.params.get("bias"), shift,
            self.num_groups, self.eps, silu=self.silu, residual=residual)  # y (B, C, ...), (B, G) x 2
        if grad_enabled():                                               # kept for backward
            self.x, self.shift, self.mean, self.rstd = x, shift, mean, rstd   # (B, C, ...), (B, C) or None
        else:
            self.x = self.shift = self.mean = self.rstd = None
        return y

    def backward(self, dy):
        from minidiff.kernels import groupnorm_silu_backward
        if self.x is None:
            raise nothing_kept(self)
        dx, dweight, dbias, self.d_shift = groupnorm_silu_backward(
            dy, self.x, self.mean, self.rstd, self.params.get("weight"), self.params.get("bias"),
            self.shift, self.num_groups, silu=self.silu)                # dx (B, C, ...), d_shift (B, C)
        if self.affine:
            self.grads["weight"] += dweight
            self.grads["bias"] += dbias
        self.x = None                                                    # freed once used (as nn.Conv2d)
        return dx

    def extra_repr(self):
        s = f"{self.num_groups}, {self.num_channels}, eps={self.eps:g}"
        return s if self.affine else s + ", affine=False"


class GroupNormSiLU(GroupNorm):
    """GroupNormSiLU(num_groups, num_channels, eps=1e-5, affine=True): GroupNorm, a
    per-(sample, channel) shift, then SiLU, in one kernel pass.

        h = weight[c] * xhat + bias[c] + shift[b, c],   y = h * sigmoid(h)

    forward(x, shift=None, residual=None): x (B, C, *spatial), shift (B, C) or None -> y, x's
    shape; a residual (x's shape) is added to y in the same pass (y = SiLU(h) + residual: a
    ResBlock's skip; its gradient is dy itself, so backward is unchanged).
    backward(dy) returns dx and leaves d loss / d shift (B, C) in `self.d_shift`
    (None when no shift was given); with dh = dy * sigmoid(h) (1 + h (1 - sigmoid(h)))
    the GroupNorm gradients are those of GroupNorm for dy = dh, and d_shift = sum_spatial dh.
    """
    silu = True

    def forward(self, x, shift=None, residual=None):
        return self._forward(x, shift, residual)

    def preactivation(self):
        """h = GroupNorm(x) + shift of the last forward with grad (B, C, ...), recomputed: for inspection."""
        from minidiff.kernels import to_array
        from minidiff.kernels.groupnorm.reference import groupnorm_silu_forward_reference
        if self.x is None:
            raise nothing_kept(self)
        return groupnorm_silu_forward_reference(to_array(self.x), self.params.get("weight"), self.params.get("bias"),
                                                self.shift, self.num_groups, self.eps, silu=False)[0]
