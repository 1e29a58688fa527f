"""Group normalisation (Wu & He 2018), PyTorch layout: weight, bias (C,); and its fusion with SiLU."""
import numpy as np

from .grad_mode import nothing_kept
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
    The arithmetic is minidiff.kernels.groupnorm_silu_* (silu=False, no shift);
    forward keeps x and the (B, G) statistics, backward recomputes xhat.
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

    def _check_input(self, shape, shift):
        """ValueError unless x of this shape (B, C, ...) and shift (B, C) or None fit the layer."""
        shape = tuple(shape)
        if len(shape) < 2 or shape[1] != self.num_channels:
            raise ValueError(f"{type(self).__name__}: expected input (B, {self.num_channels}, ...), "
                             f"got shape {shape}")
        if shift is not None and tuple(shift.shape) != (shape[0], self.num_channels):
            raise ValueError(f"{type(self).__name__}: shift must be ({shape[0]}, {self.num_channels}), "
                             f"got {tuple(shift.shape)}")

    def _forward(self, x, shift, residual=None):
        from minidiff.kernels import OnLines, groupnorm_silu_forward
        self._check_input(x.shape, shift)
        if isinstance(x, OnLines):
            return self._forward_on_lines(x, shift, residual)
        self.x, self.shift = x, shift                                    # (B, C, ...), (B, C) or None
        y, self.mean, self.rstd = groupnorm_silu_forward(
            x, self.params.get("weight"), self.params.get("bias"), shift,
            self.num_groups, self.eps, silu=self.silu, residual=residual)  # y (B, C, ...), (B, G) x 2
        return y

    def _forward_on_lines(self, x, shift, residual):
        """x (and residual) OnLines (kernels/on_lines.py) -> OnLines; GroupNorm without SiLU via NCHW."""
        from minidiff.kernels import on_lines_grad_cpu
        if not self.silu:
            return x.via_array(lambda a: self._forward(a, shift, residual and residual.to_array()))
        self.x, self.shift = x, shift
        y, self.mean, self.rstd = on_lines_grad_cpu.groupnorm_silu_forward_on_lines(
            x, self.params.get("weight"), self.params.get("bias"), shift, self.num_groups, self.eps, residual)
        return y

    def backward(self, dy):
        from minidiff.kernels import OnLines, groupnorm_silu_backward
        if isinstance(dy, OnLines):
            return self._backward_on_lines(dy)
        dx, dweight, dbias, self.d_shift = groupnorm_silu_backward(
            dy, self.x, self.mean, self.rstd, self.params.get("weight"), self.params.get("bias"),
            self.shift, self.num_groups, silu=self.silu)                # dx (B, C, ...), d_shift (B, C)
        self._add_grads(dweight, dbias)
        return dx

    def _add_grads(self, dweight, dbias):
        """grads += the weight and bias gradients (C,) each, when the layer has them."""
        if self.affine:
            self.grads["weight"] += dweight
            self.grads["bias"] += dbias

    def _backward_on_lines(self, dy):
        from minidiff.kernels import OnLines, on_lines_grad_cpu
        if self.x is None:
            raise nothing_kept(self)
        if not isinstance(self.x, OnLines):                              # the forward ran via NCHW
            return dy.via_array(self.backward)
        dx, dweight, dbias, self.d_shift = on_lines_grad_cpu.groupnorm_silu_backward_on_lines(
            dy, self.x, self.mean, self.rstd, self.params.get("weight"), self.params.get("bias"),
            self.shift, self.num_groups)
        self._add_grads(dweight, dbias)
        self.x = None                                                    # freed once used (nn.Conv2d)
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
        """h = GroupNorm(x) + shift of the last forward (B, C, ...), recomputed: for inspection."""
        from minidiff.kernels import OnLines
        from minidiff.kernels.groupnorm_reference import groupnorm_silu_forward_reference
        x = self.x.to_array() if isinstance(self.x, OnLines) else self.x
        return groupnorm_silu_forward_reference(x, self.params.get("weight"), self.params.get("bias"),
                                                self.shift, self.num_groups, self.eps, silu=False)[0]
