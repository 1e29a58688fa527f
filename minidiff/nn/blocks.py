"""The U-Net's building blocks (DenoisingDiffusion.jl's `ConvEmbed` and `ResBlock`).

    ConvEmbed: h = act(GroupNorm(conv3x3(x)) + Dense(act(emb))[:, :, None, None])
    ResBlock:  y = act(GroupNorm(conv3x3(ConvEmbed(x, emb)))) + skip(x)
               skip = identity (in == out), else a conv (3x3 as in DenoisingDiffusion.jl)

act = SiLU; each act(GroupNorm(.) [+ shift]) is one fused GroupNormSiLU layer
(one kernel pass forward, one backward; see kernels/groupnorm/reference.py).

Convention for the conditioning: `forward(x, emb)` takes the embedding
emb (B, E) as a second argument; `backward(dy)` returns dx and leaves
d loss / d emb (B, E) in `self.d_emb` (overwritten on every backward), which
the U-Net sums over all its blocks before back-propagating into the time and
label embeddings.
"""
import numpy as np

from ..backend import as_rng, check_float_dtype
from .activations import SiLU
from .conv import Conv2d
from .dense import Dense
from .grad_mode import grad_enabled, nothing_kept
from .layer import Layer, check_batch
from .norm import GroupNormSiLU
from .resample import Upsample


def conv3x3(in_ch, out_ch, rng, dtype):
    """Conv2d 3x3, stride 1, padding 1: keeps H and W."""
    return Conv2d(in_ch, out_ch, 3, stride=1, padding=1, rng=rng, dtype=dtype)


class ConvEmbed(Layer):
    """ConvEmbed(in_ch, out_ch, emb_dim, groups=8): x (B, in, H, W), emb (B, E) -> (B, out, H, W).

    h = SiLU(GroupNorm(conv3x3(x)) + Dense(SiLU(emb)) broadcast over H, W); the
    GroupNorm, the shift by e = Dense(SiLU(emb)) (B, out) and the SiLU are one
    GroupNormSiLU layer (`norm`), whose d_shift is d loss / d e.
    """
    takes_cond = True

    def __init__(self, in_ch, out_ch, emb_dim, groups=8, rng=None, dtype=np.float32):
        super().__init__()
        rng, dtype = as_rng(rng), check_float_dtype(dtype)
        self.in_ch, self.out_ch, self.emb_dim = int(in_ch), int(out_ch), int(emb_dim)
        self.conv = conv3x3(in_ch, out_ch, rng, dtype)
        self.norm = GroupNormSiLU(groups, out_ch, dtype=dtype)
        self.emb_act = SiLU()
        self.emb_proj = Dense(emb_dim, out_ch, rng=rng, dtype=dtype)

    def forward(self, x, emb):
        self.conv._check_input(x, "ConvEmbed")
        return self.embed(self.conv.forward(x), emb)                 # (B, out, H, W)

    def backward(self, dy):
        return self.conv.backward(self.embed_backward(dy))           # (B, in, H, W)

    def embed(self, h, emb):
        """The part after the conv: SiLU(GroupNorm(h) + Dense(SiLU(emb))), h (B, out, H, W)."""
        return self.norm.forward(h, self.shift(emb, h.shape[0]))      # (B, out, H, W)

    def shift(self, emb, batch):
        """e = Dense(SiLU(emb)) (B, out), the GroupNorm's shift; emb (B, E) checked against `batch`."""
        if emb.ndim != 2 or emb.shape[0] != batch or emb.shape[1] != self.emb_dim:
            raise ValueError(f"ConvEmbed: emb must be ({batch}, {self.emb_dim}), got {tuple(emb.shape)}")
        return self.emb_proj.forward(self.emb_act.forward(emb))      # (B, out)

    def embed_backward(self, dy):
        """d loss / d h of embed; sets self.d_emb (B, E)."""
        dh = self.norm.backward(dy)                                  # (B, out, H, W)
        de = self.norm.d_shift                                       # (B, out): summed over H, W
        self.d_emb = self.emb_act.backward(self.emb_proj.backward(de))  # (B, E)
        return dh

    def extra_repr(self):
        return f"{self.in_ch} => {self.out_ch}, emb={self.emb_dim}"


class ResBlock(Layer):
    """ResBlock(in_ch, out_ch, emb_dim, groups=8, skip_kernel=3): y = out_layers(ConvEmbed(x, emb)) + skip(x).

    out_layers = conv3x3 -> GroupNorm -> SiLU (one GroupNormSiLU, `out_norm`);
    skip = x, or a skip_kernel x skip_kernel
    conv (3: DenoisingDiffusion.jl, 1: the cheaper usual choice) when in_ch != out_ch.
    backward returns dx and sets `self.d_emb` (B, emb_dim).

    x may also be a tuple of parts (B, C_i, H, W) whose channels add up to
    in_ch: the U-Net's skip concatenation; backward then returns a tuple of
    their gradients. With a 3x3 skip, it and ConvEmbed's conv both read x, so
    they run as one conv (kernels.conv3x3_shared_forward), which on the CPU
    kernels reads the parts in place: no concatenated copy, one pass over x.
    The parts are NumPy / CuPy arrays or whatever activations the model hands on
    (kernels.concat_channels joins any of them).

    Under nn.no_grad() the whole block is one kernel call (kernels.resblock_forward,
    where the CPU kernels keep the middle activation in their own layout) and
    keeps nothing for backward, which then raises a RuntimeError until a forward
    with grad has run.
    """
    takes_cond = True

    def __init__(self, in_ch, out_ch, emb_dim, groups=8, skip_kernel=3, rng=None, dtype=np.float32):
        super().__init__()
        rng, dtype = as_rng(rng), check_float_dtype(dtype)
        if skip_kernel not in (1, 3):
            raise ValueError(f"ResBlock: skip_kernel must be 1 or 3, got {skip_kernel!r}")
        self.in_ch, self.out_ch = int(in_ch), int(out_ch)
        self.in_layers = ConvEmbed(in_ch, out_ch, emb_dim, groups=groups, rng=rng, dtype=dtype)
        self.out_conv = conv3x3(out_ch, out_ch, rng, dtype)
        self.out_norm = GroupNormSiLU(groups, out_ch, dtype=dtype)
        self.skip = (None if in_ch == out_ch else
                     Conv2d(in_ch, out_ch, skip_kernel, padding=skip_kernel // 2, rng=rng, dtype=dtype))
        self.shared = self.skip is not None and skip_kernel == 3   # the 3x3 skip runs with the first conv
        self.kept_for_backward = False

    def forward(self, x, emb):
        from minidiff.kernels import concat_channels, conv3x3_shared_forward
        self.in_parts = isinstance(x, tuple)
        parts = self._check_parts(list(x) if self.in_parts else [x])   # [(B, C_i, H, W)]
        self.part_channels = [p.shape[1] for p in parts]
        self.kept_for_backward = grad_enabled()
        if not self.kept_for_backward:
            return self._forward_no_grad(parts, emb)
        if self.shared:                                               # both convs read x: one pass
            conv_in, skip = self.in_layers.conv, self.skip
            h, s = conv3x3_shared_forward(parts, [conv_in.params["weight"], skip.params["weight"]],
                                          [conv_in.params.get("bias"), skip.params.get("bias")])
            self.x = parts
            h = self.in_layers.embed(h, emb)                          # (B, out, H, W)
        else:
            x = concat_channels(parts)                                # (B, in, H, W)
            h = self.in_layers.forward(x, emb)                        # (B, out, H, W)
            s = x if self.skip is None else self.skip.forward(x)      # (B, out, H, W)
        return self.out_norm.forward(self.out_conv.forward(h), residual=s)   # (B, out, H, W)

    def _forward_no_grad(self, parts, emb):
        """The whole block in one kernel call (kernels.resblock_forward) when no backward follows:
        the same maths as forward, keeping nothing."""
        from minidiff.kernels import resblock_forward
        convs = [self.in_layers.conv] + ([self.skip] if self.shared else [])
        skip_1x1 = (None if self.skip is None or self.shared else
                    (self.skip.params["weight"], self.skip.params.get("bias")))
        norms = [(n.params.get("weight"), n.params.get("bias"), n.num_groups, n.eps)
                 for n in (self.in_layers.norm, self.out_norm)]
        e = self.in_layers.shift(emb, parts[0].shape[0])              # (B, out)
        self.x = None
        return resblock_forward(parts, [c.params["weight"] for c in convs], [c.params.get("bias") for c in convs],
                                norms[0], e, self.out_conv.params["weight"], self.out_conv.params.get("bias"),
                                norms[1], skip_1x1)                   # (B, out, H, W)

    def backward(self, dy):
        from minidiff.kernels import conv3x3_shared_backward, split_channels
        if not self.kept_for_backward:
            raise RuntimeError("ResBlock.backward: the last forward ran under nn.no_grad() and "
                               "kept nothing for backward; run the forward outside no_grad()")
        dh = self.out_conv.backward(self.out_norm.backward(dy))      # (B, out, H, W)
        if self.shared:
            dh = self.in_layers.embed_backward(dh)                    # (B, out, H, W)
            conv_in, skip = self.in_layers.conv, self.skip
            dxs, dws, dbs = conv3x3_shared_backward([dh, dy], self.x, [conv_in.params["weight"], skip.params["weight"]])
            self.x = None                                             # freed once used (as nn.Conv2d)
            conv_in.add_grads(dws[0], dbs[0] if "bias" in conv_in.params else None)
            skip.add_grads(dws[1], dbs[1] if "bias" in skip.params else None)
        else:
            dx = self.in_layers.backward(dh)                          # (B, in, H, W), a fresh array
            dx += dy if self.skip is None else self.skip.backward(dy)
            dxs = split_channels(dx, self.part_channels)              # undo the concatenation
        self.d_emb = self.in_layers.d_emb                             # (B, E)
        return tuple(dxs) if self.in_parts else dxs[0]

    def _check_parts(self, parts):
        """The parts of x, checked: (B, C_i, H, W) with one B, H, W and sum C_i = in_ch."""
        shapes = [tuple(p.shape) for p in parts]
        if (not parts or any(len(s) != 4 or s[:1] + s[2:] != shapes[0][:1] + shapes[0][2:] for s in shapes)
                or sum(s[1] for s in shapes) != self.in_ch):
            raise ValueError(f"ResBlock: x must be (B, {self.in_ch}, H, W) or a tuple of (B, C_i, H, W) "
                             f"with sum C_i = {self.in_ch}, got {[tuple(p.shape) for p in parts]}")
        check_batch(parts[0], "ResBlock")
        return parts

    def extra_repr(self):
        return f"{self.in_ch} => {self.out_ch}"


class UpsampleConv(Layer):
    """UpsampleConv(in_ch, out_ch): nearest x2 upsampling then conv3x3. (B, in, H, W) -> (B, out, 2H, 2W).

    One kernel call (kernels.upsample_conv3x3_forward): on the Numba kernels four
    2x2 convs on the small image, 2.25x fewer multiply-adds (kernels/upconv/);
    the reference runs the two steps. `conv` holds the weights; `up` is the
    upsampling step as a layer of its own, for reading.
    """

    def __init__(self, in_ch, out_ch, rng=None, dtype=np.float32):
        super().__init__()
        rng, dtype = as_rng(rng), check_float_dtype(dtype)
        self.up = Upsample(scale_factor=2)
        self.conv = conv3x3(in_ch, out_ch, rng, dtype)

    def forward(self, x):
        from minidiff.kernels import upsample_conv3x3_forward
        self.conv._check_input(x, "UpsampleConv")
        self.x = x if grad_enabled() else None                        # (B, in, H, W), for backward
        return upsample_conv3x3_forward(x, self.conv.params["weight"],
                                        self.conv.params.get("bias"))  # (B, out, 2H, 2W)

    def backward(self, dy):
        from minidiff.kernels import upsample_conv3x3_backward
        if self.x is None:
            raise nothing_kept(self)
        conv = self.conv
        dx, dw, db = upsample_conv3x3_backward(dy, self.x, conv.params["weight"], need_bias="bias" in conv.params)
        conv.add_grads(dw, db)
        self.x = None                                                 # freed once used (as nn.Conv2d)
        return dx                                                     # (B, in, H, W)


def downsample(in_ch, out_ch, rng=None, dtype=np.float32):
    """Conv2d 4x4, stride 2, padding 1: (B, in, H, W) -> (B, out, H/2, W/2) for even H, W."""
    return Conv2d(in_ch, out_ch, 4, stride=2, padding=1, rng=rng, dtype=dtype)
