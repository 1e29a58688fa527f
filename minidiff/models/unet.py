"""The U-Net noise predictor for images (DenoisingDiffusion.jl's UNet / UNetConditioned).

    x (B, in, H, W), t (B,) [, labels (B,)] -> eps_hat (B, in, H, W)

With channels c = [mc, mc*m_0, ..., mc*m_{L-1}] (mc = model_channels, L levels):

    emb = Dense(GELU(Dense(sinusoid(t))))  [+ Embedding(labels)]     (B, 4 mc)
    h = conv3x3(x)                                                   (B, c_0, H, W)
    down, level l = 0..L-1:   ResBlock(s) at c_l, keep h as skip_l,
                              then (l < L-1) conv4x4 stride 2: c_l -> c_{l+1}, H/2
    middle:                   conv3x3 c_{L-1} -> c_L, ResBlock, attention, ResBlock
    up, level l = L-1..0:     h = concat(skip_l, h) (c_l + c_{l+1}), ResBlock(s) -> c_{l+1},
                              then (l > 0) Upsample x2 + conv3x3: c_{l+1} -> c_l
    out = conv3x3(h)                                                 (B, in, H, W)

Labels: index 0 means "unconditioned" (classifier-free guidance), real classes
are 1..num_classes; labels=None on a conditional model means all 0.
`backward(d_out)` is the forward read bottom-up; every ResBlock hands back
its d emb, summed into the embedding's gradient at the end.

Layout: the U-Net is the one place that chooses how its activations lie in
memory. On the CPU kernels, with a batch of a multiple of 16, it puts x onto
image lanes at the start (kernels.to_lanes), hands that activation from
layer to layer (every layer's kernel call takes it as it takes an array) and
takes the output off at the end (kernels.to_array); around the attention,
which has no lanes kernel, it goes off and back on. The layers never know.
"""
import numpy as np

from .. import kernels
from ..backend import as_rng, check_float_dtype, get_xp
from ..nn.activations import GELU
from ..nn.attention import MultiheadAttention
from ..nn.blocks import ResBlock, UpsampleConv, conv3x3, downsample
from ..nn.containers import Sequential
from ..nn.dense import Dense
from ..nn.embeddings import Embedding, SinusoidalPositionEmbedding
from ..nn.layer import Layer
from .inputs import check_seed, check_x, index_array


def _positive_int(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or int(v) != v or v < 1:
        raise ValueError(f"UNet: {name} must be a positive integer, got {v!r}")
    return int(v)


class UNet(Layer):
    """UNet(in_channels, model_channels, num_timesteps, channel_multipliers=(1, 2, 3),
    num_blocks_per_level=1, groups=8, attention_heads=4, middle_attention=True,
    num_classes=None, seed=0, dtype=float32).

    forward(x, t, labels=None) -> (B, in_channels, H, W); H and W must be
    multiples of 2**(len(channel_multipliers) - 1).
    """
    takes_cond = True

    def __init__(self, in_channels, model_channels, num_timesteps, channel_multipliers=(1, 2, 3),
                 num_blocks_per_level=1, groups=8, attention_heads=4, middle_attention=True,
                 num_classes=None, seed=0, dtype=np.float32):
        super().__init__()
        in_channels = _positive_int("in_channels", in_channels)
        mc = _positive_int("model_channels", model_channels)
        num_timesteps = _positive_int("num_timesteps", num_timesteps)
        nb = _positive_int("num_blocks_per_level", num_blocks_per_level)
        groups = _positive_int("groups", groups)
        attention_heads = _positive_int("attention_heads", attention_heads)
        if not isinstance(channel_multipliers, (tuple, list)):
            raise ValueError(f"UNet: channel_multipliers must be a sequence of positive integers, "
                             f"got {channel_multipliers!r}")
        mults = tuple(_positive_int("channel_multipliers entry", m) for m in channel_multipliers)
        if not mults:
            raise ValueError("UNet: channel_multipliers must not be empty")
        if num_classes is not None:
            num_classes = _positive_int("num_classes", num_classes)
        if mc % 2 or mc < 4:
            raise ValueError(f"UNet: model_channels must be even and >= 4 (sinusoidal embedding), got {mc}")
        c = [mc] + [mc * m for m in mults]                     # channels per level, len L + 1
        if any(ch % groups for ch in c):
            raise ValueError(f"UNet: groups={groups} must divide every level's channels {c}")
        if middle_attention and c[-1] % attention_heads:
            raise ValueError(f"UNet: attention_heads={attention_heads} must divide the middle channels {c[-1]}")
        rng, dtype = as_rng(check_seed(seed, "UNet", generator=True)), check_float_dtype(dtype)
        L, E = len(mults), 4 * mc
        self.in_channels, self.levels, self.blocks_per_level, self.channels = in_channels, L, nb, c
        self.on_lanes = False               # whether the last forward's activations lay on image lanes
        self.num_timesteps, self.num_classes, self.emb_dim = num_timesteps, num_classes, E
        self.config = dict(in_channels=in_channels, model_channels=mc, num_timesteps=num_timesteps,
                           channel_multipliers=list(mults), num_blocks_per_level=nb, groups=groups,
                           attention_heads=attention_heads, middle_attention=bool(middle_attention),
                           num_classes=num_classes,
                           seed=int(seed) if isinstance(seed, (int, np.integer)) else None)

        def block(cin, cout):
            return ResBlock(cin, cout, E, groups=groups, rng=rng, dtype=dtype)

        # conditioning: t -> (B, E); labels -> (B, E), row 0 = unconditioned
        self.time_embed = Sequential(SinusoidalPositionEmbedding(num_timesteps, mc, dtype=dtype),
                                     Dense(mc, E, rng=rng, dtype=dtype), GELU(),
                                     Dense(E, E, rng=rng, dtype=dtype))
        self.label_embed = None if num_classes is None else Embedding(num_classes + 1, E, rng=rng, dtype=dtype)
        self.init_conv = conv3x3(in_channels, c[0], rng, dtype)
        # down path: L*nb blocks (level-major), L-1 downsamples
        self.down_blocks = [block(c[l], c[l]) for l in range(L) for _ in range(nb)]
        self.downsamples = [downsample(c[l], c[l + 1], rng, dtype) for l in range(L - 1)]
        # middle
        self.middle_conv = conv3x3(c[L - 1], c[L], rng, dtype)
        self.middle_block1 = block(c[L], c[L])
        self.middle_attention = (MultiheadAttention(c[L], heads=attention_heads, rng=rng, dtype=dtype)
                                 if middle_attention else None)
        self.middle_block2 = block(c[L], c[L])
        # up path, stored in execution order (level L-1 first)
        self.up_blocks = []
        for l in reversed(range(L)):
            self.up_blocks.append(block(c[l] + c[l + 1], c[l + 1]))     # reads concat(skip_l, h)
            self.up_blocks += [block(c[l + 1], c[l + 1]) for _ in range(nb - 1)]
        self.upsamples = [UpsampleConv(c[l + 1], c[l], rng, dtype) for l in reversed(range(1, L))]
        self.final_conv = conv3x3(c[1], in_channels, rng, dtype)

    # --- which layers belong to level l -----------------------------------
    def _down(self, l):
        return self.down_blocks[l * self.blocks_per_level:(l + 1) * self.blocks_per_level]

    def _up(self, l):
        p = self.levels - 1 - l
        return self.up_blocks[p * self.blocks_per_level:(p + 1) * self.blocks_per_level]

    def _upsample(self, l):
        return self.upsamples[self.levels - 1 - l]

    # --- input checks ---------------------------------------------------------
    def _check_inputs(self, x, t, labels):
        xp = get_xp(x)
        check_x(x, "UNet", (self.in_channels, None, None), f"{self.in_channels}, H, W")
        B, _, H, W = x.shape
        k = 2 ** (self.levels - 1)
        if H % k or W % k:
            raise ValueError(f"UNet: image size {H}x{W} does not work with {self.levels} levels; "
                             f"height and width must be multiples of {k} (e.g. {k * 7}, {k * 8})")
        t = index_array(t, "UNet", "t", B, self.num_timesteps - 1, xp)
        if labels is None:
            return t, None
        if self.num_classes is None:
            raise ValueError("UNet: labels given to an unconditional model (num_classes=None)")
        return t, index_array(labels, "UNet", "labels (0 = unconditioned)", B, self.num_classes, xp)

    # --- forward and its mirror -------------------------------------------
    def forward(self, x, t, labels=None):
        xp = get_xp(x)
        t, labels = self._check_inputs(x, t, labels)
        L = self.levels
        # the activations' layout, chosen here once for the whole forward and its backward
        lanes = self.on_lanes = self._use_lanes(x)
        # conditioning
        emb = self.time_embed.forward(t)                                   # (B, E)
        if self.label_embed is not None:
            if labels is None:
                labels = xp.zeros(x.shape[0], dtype=np.int64)              # all "unconditioned"
            emb = emb + self.label_embed.forward(labels)                   # (B, E)
        # down
        h = self.init_conv.forward(kernels.to_lanes(x) if lanes else x)   # (B, c0, H, W)
        skips = []
        for l in range(L):
            for blk in self._down(l):
                h = blk.forward(h, emb)                                    # (B, c_l, H_l, W_l)
            skips.append(h)
            if l < L - 1:
                h = self.downsamples[l].forward(h)                         # (B, c_{l+1}, H_l/2, W_l/2)
        # middle
        h = self.middle_conv.forward(h)                                    # (B, c_L, H_{L-1}, W_{L-1})
        h = self.middle_block1.forward(h, emb)
        if self.middle_attention is not None:        # no lanes kernel: it runs on NCHW arrays
            h = self._off_lanes(self.middle_attention.forward, h)
        h = self.middle_block2.forward(h, emb)                             # (B, c_L, ...)
        # up
        for l in reversed(range(L)):
            h = (skips[l], h)                     # concatenated along channels by the first block
            for blk in self._up(l):
                h = blk.forward(h, emb)                                    # (B, c_{l+1}, H_l, W_l)
            if l > 0:
                h = self._upsample(l).forward(h)                           # (B, c_l, 2 H_l, 2 W_l)
        out = self.final_conv.forward(h)                                   # (B, in, H, W)
        return kernels.to_array(out)

    def _use_lanes(self, x):
        """Whether this forward (and its backward) keeps the activations on image lanes
        (kernels/lines/: 16 images side by side per point, so the CPU conv kernels read them
        where they lie and no layer copies its input in or out): when x, of the model's dtype,
        goes to the CPU kernels and its batch is a multiple of 16 (kernels.lanes_fit)."""
        return x.dtype == self.dtype and kernels.lanes_fit(x)

    def _off_lanes(self, fn, h):
        """fn(h) for a layer with no lanes kernel: h leaves the lanes for it and the result
        goes back onto them (arrays pass through as they are)."""
        if not self.on_lanes:
            return fn(h)
        return kernels.to_lanes(fn(kernels.to_array(h)))

    def backward(self, d_out):
        L = self.levels
        d_emb = 0.0                                                        # becomes (B, E)
        # up, read backwards: level 0 first
        dh = self.final_conv.backward(kernels.to_lanes(d_out) if self.on_lanes else d_out)  # (B, c_1, H, W)
        d_skips = [None] * L
        for l in range(L):
            if l > 0:
                dh = self._upsample(l).backward(dh)                        # (B, c_{l+1}, H_l, W_l)
            for blk in reversed(self._up(l)):
                dh = blk.backward(dh)
                d_emb = d_emb + blk.d_emb
            d_skips[l], dh = dh                                            # the first block's two parts
        # middle
        dh = self.middle_block2.backward(dh)
        d_emb = d_emb + self.middle_block2.d_emb
        if self.middle_attention is not None:
            dh = self._off_lanes(self.middle_attention.backward, dh)
        dh = self.middle_block1.backward(dh)
        d_emb = d_emb + self.middle_block1.d_emb
        dh = self.middle_conv.backward(dh)                                 # (B, c_{L-1}, ...)
        # down, read backwards: deepest level first
        for l in reversed(range(L)):
            if l < L - 1:
                dh = self.downsamples[l].backward(dh)                      # (B, c_l, H_l, W_l)
            dh += d_skips[l]                                               # h fed both paths
            for blk in reversed(self._down(l)):
                dh = blk.backward(dh)
                d_emb = d_emb + blk.d_emb
        dx = kernels.to_array(self.init_conv.backward(dh))                 # (B, in, H, W)
        # conditioning: emb = time_embed(t) [+ label_embed(labels)]
        if self.label_embed is not None:
            self.label_embed.backward(d_emb)
        self.time_embed.backward(d_emb)
        return dx

    def extra_repr(self):
        cfg = self.config
        return (f"in={cfg['in_channels']}, model_channels={cfg['model_channels']}, "
                f"multipliers={tuple(cfg['channel_multipliers'])}, num_classes={cfg['num_classes']}")
