"""PyTorch mirrors of minidiff's MLP and UNet, used only by `minidiff.bench`.

Each mirror has the same layers, shapes and parameter names as the minidiff
model it copies, so `from_minidiff(model)` builds it and loads the very same
weights (the parameter counts and names are checked). The diffusion maths the
benchmark needs (a DDPM training loss, a DDIM eta = 0 loop with clipping) is
written out here in torch with the same equations as minidiff.diffusion.

torch is imported only inside `load()`, which the benchmark calls (through
`import_torch()`) when torch is installed; importing this module needs nothing
but NumPy. `load()` returns a namespace of everything defined below (and
`torch` itself). Every function that makes tensors takes `device` ("cpu", the
default, or "cuda"); `cuda_settings()` fixes how torch runs on the GPU.
"""
import time
from types import SimpleNamespace

import numpy as np

from ..backend import to_host

TORCH_THREADS = 2             # the benchmark compares at 2 threads
_loaded = None


def load():
    """Import torch (here and nowhere else) and define the mirrors, once -> namespace."""
    global _loaded
    if _loaded is None:
        import torch
        import torch.nn.functional as F
        from torch import nn
        _loaded = SimpleNamespace(**_define(torch, F, nn))
    return _loaded


def import_torch():
    """The PyTorch mirrors (load()) at TORCH_THREADS threads, or None when torch is not installed."""
    try:
        bt = load()
    except ImportError:
        return None
    bt.set_threads(TORCH_THREADS)
    return bt


def _define(torch, F, nn):
    """Everything that needs torch; returns its names (functions, classes, constants)."""
    def set_threads(n=TORCH_THREADS):
        """torch.set_num_threads(n): the benchmark compares at 2 threads."""
        torch.set_num_threads(int(n))


    def _activation(name):
        return {"swish": nn.SiLU, "silu": nn.SiLU, "relu": nn.ReLU,
                "gelu": lambda: nn.GELU(approximate="tanh")}[name]()


    # --- layers with minidiff's attribute names --------------------------------------
    class Chain(nn.Module):
        """minidiff Sequential: children in `layers`, run in order."""

        def __init__(self, *layers):
            super().__init__()
            self.layers = nn.ModuleList(layers)

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x


    class Sinusoid(nn.Module):
        """t (B,) -> table[t] (B, dim): the same fixed table as minidiff (a buffer, not a parameter)."""

        def __init__(self, table):
            super().__init__()
            self.register_buffer("table", torch.as_tensor(np.asarray(to_host(table))), persistent=False)

        def forward(self, t):
            return self.table[t]                                             # (B, dim)


    class CondSum(nn.Module):
        """x, t -> f(x) + g(t) (minidiff ConditionalSum)."""

        def __init__(self, f, g):
            super().__init__()
            self.f, self.g = f, g

        def forward(self, x, t):
            return self.f(x) + self.g(t)


    class TorchMLP(nn.Module):
        """h = act(Linear(x) + Linear(sinusoid(t))) x num_layers; out = Linear(h)."""

        def __init__(self, md):
            super().__init__()
            cfg = md.config
            layers = []
            width = cfg["in_dim"]
            for block in md.layers[:-1]:
                if type(block).__name__ == "ConditionalSum":
                    table = block.g.layers[0].buffers["table"]
                    layers.append(CondSum(nn.Linear(width, cfg["d_hid"]),
                                          Chain(Sinusoid(table), nn.Linear(cfg["d_hid"], cfg["d_hid"]))))
                    width = cfg["d_hid"]
                else:
                    layers.append(_activation(cfg["activation"]))
            layers.append(nn.Linear(cfg["d_hid"], cfg["in_dim"]))
            self.layers = nn.ModuleList(layers)

        def forward(self, x, t):
            for layer in self.layers:
                x = layer(x, t) if isinstance(layer, CondSum) else layer(x)
            return x                                                         # (B, in_dim)


    def _conv(md_conv):
        """nn.Conv2d with the shapes of a minidiff Conv2d."""
        return nn.Conv2d(md_conv.in_channels, md_conv.out_channels, md_conv.kernel_size,
                         stride=md_conv.stride, padding=md_conv.padding, bias="bias" in md_conv.params)


    def _norm(md_norm):
        return nn.GroupNorm(md_norm.num_groups, md_norm.num_channels, eps=md_norm.eps)


    class ConvEmbed(nn.Module):
        """h = SiLU(GroupNorm(conv3x3(x)) + Linear(SiLU(emb))[:, :, None, None])."""

        def __init__(self, md):
            super().__init__()
            self.conv, self.norm = _conv(md.conv), _norm(md.norm)
            self.emb_proj = nn.Linear(md.emb_proj.in_features, md.emb_proj.out_features)

        def forward(self, x, emb):
            h = self.norm(self.conv(x))                                      # (B, out, H, W)
            e = self.emb_proj(F.silu(emb))                                   # (B, out)
            return F.silu(h + e[:, :, None, None])


    class ResBlock(nn.Module):
        """y = SiLU(GroupNorm(conv3x3(ConvEmbed(x, emb)))) + skip(x)."""

        def __init__(self, md):
            super().__init__()
            self.in_layers = ConvEmbed(md.in_layers)
            self.out_conv, self.out_norm = _conv(md.out_conv), _norm(md.out_norm)
            self.skip = None if md.skip is None else _conv(md.skip)

        def forward(self, x, emb):
            h = self.in_layers(x, emb)
            h = F.silu(self.out_norm(self.out_conv(h)))                      # (B, out, H, W)
            return h + (x if self.skip is None else self.skip(x))


    class Attention(nn.Module):
        """y = x + to_out(softmax(q k^T / sqrt(d)) v) over the H*W pixels, minidiff's MultiheadAttention."""

        def __init__(self, md):
            super().__init__()
            self.heads, self.head_dim = md.heads, md.head_dim
            C = md.channels
            self.to_qkv = nn.Linear(C, 3 * C, bias=False)
            self.to_out = nn.Linear(C, C)

        def forward(self, x):
            B, C, H, W = x.shape
            N, h, d = H * W, self.heads, self.head_dim
            tokens = x.reshape(B, C, N).transpose(1, 2)                      # (B, N, C)
            q, k, v = (a.reshape(B, N, h, d).transpose(1, 2)
                       for a in self.to_qkv(tokens).chunk(3, dim=-1))        # 3 x (B, h, N, d)
            P = torch.softmax(q @ k.transpose(-1, -2) * (1.0 / float(np.sqrt(d))), dim=-1)  # (B, h, N, N)
            O = (P @ v).transpose(1, 2).reshape(B, N, C)                     # (B, N, C)
            return x + self.to_out(O).transpose(1, 2).reshape(B, C, H, W)


    class UpsampleConv(nn.Module):
        def __init__(self, md):
            super().__init__()
            self.conv = _conv(md.conv)

        def forward(self, x):
            return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))  # (B, out, 2H, 2W)


    class TorchUNet(nn.Module):
        """The U-Net of minidiff.models.unet, layer for layer (see its docstring)."""

        def __init__(self, md):
            super().__init__()
            self.levels, self.blocks_per_level, self.channels = md.levels, md.blocks_per_level, md.channels
            te = md.time_embed.layers
            self.time_embed = Chain(Sinusoid(te[0].buffers["table"]),
                                    nn.Linear(te[1].in_features, te[1].out_features),
                                    nn.GELU(approximate=te[2].approximate),
                                    nn.Linear(te[3].in_features, te[3].out_features))
            self.label_embed = (None if md.label_embed is None else
                                nn.Embedding(md.label_embed.num_embeddings, md.label_embed.dim))
            self.init_conv = _conv(md.init_conv)
            self.down_blocks = nn.ModuleList(ResBlock(b) for b in md.down_blocks)
            self.downsamples = nn.ModuleList(_conv(c) for c in md.downsamples)
            self.middle_conv = _conv(md.middle_conv)
            self.middle_block1 = ResBlock(md.middle_block1)
            self.middle_attention = None if md.middle_attention is None else Attention(md.middle_attention)
            self.middle_block2 = ResBlock(md.middle_block2)
            self.up_blocks = nn.ModuleList(ResBlock(b) for b in md.up_blocks)
            self.upsamples = nn.ModuleList(UpsampleConv(u) for u in md.upsamples)
            self.final_conv = _conv(md.final_conv)

        def forward(self, x, t, labels=None):
            L, nb = self.levels, self.blocks_per_level
            emb = self.time_embed(t)                                         # (B, E)
            if self.label_embed is not None:
                if labels is None:
                    labels = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
                emb = emb + self.label_embed(labels)
            h = self.init_conv(x)                                            # (B, c0, H, W)
            skips = []
            for l in range(L):
                for blk in self.down_blocks[l * nb:(l + 1) * nb]:
                    h = blk(h, emb)
                skips.append(h)
                if l < L - 1:
                    h = self.downsamples[l](h)                               # (B, c_{l+1}, H/2, W/2)
            h = self.middle_block1(self.middle_conv(h), emb)
            if self.middle_attention is not None:
                h = self.middle_attention(h)
            h = self.middle_block2(h, emb)
            for l in reversed(range(L)):
                h = torch.cat([skips[l], h], dim=1)                          # (B, c_l + c_{l+1}, H_l, W_l)
                p = L - 1 - l
                for blk in self.up_blocks[p * nb:(p + 1) * nb]:
                    h = blk(h, emb)
                if l > 0:
                    h = self.upsamples[p](h)                                 # (B, c_l, 2 H_l, 2 W_l)
            return self.final_conv(h)                                        # (B, in, H, W)


    MIRRORS = {"MLP": TorchMLP, "UNet": TorchUNet}


    def cuda_settings():
        """Set and return how torch runs on the GPU in the benchmark: float32 math without TF32 (cuBLAS
        and cuDNN, as CuPy's matmul by default and minidiff's kernels), cuDNN's autotuner on (its best
        algorithm for each fixed shape, the search paid by the first call)."""
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
        return {"allow_tf32": False, "cudnn_benchmark": True, "cudnn": torch.backends.cudnn.version()}


    def sync(device):
        """Wait for the device's queued work (nothing to wait for on the CPU)."""
        if device != "cpu":
            torch.cuda.synchronize()


    def from_minidiff(model, device="cpu"):
        """The torch mirror of a minidiff MLP or UNet (on the host or the GPU), holding a copy of its
        weights, on `device`.

        Raises ValueError when the parameter names, shapes or counts differ.
        """
        name = type(model).__name__
        if name not in MIRRORS:
            raise TypeError(f"model: expected one of {sorted(MIRRORS)}, got {name}")
        tmodel = MIRRORS[name](model)
        ours = model.state_dict()
        theirs = dict(tmodel.named_parameters())
        if set(ours) != set(theirs):
            raise ValueError(f"torch mirror of {name}: parameter names differ, only minidiff "
                             f"{sorted(set(ours) - set(theirs))[:5]}, only torch {sorted(set(theirs) - set(ours))[:5]}")
        n_ours, n_theirs = model.num_params(), sum(p.numel() for p in theirs.values())
        if n_ours != n_theirs:
            raise ValueError(f"torch mirror of {name}: {n_theirs} parameters, minidiff has {n_ours}")
        dtype = torch.float64 if model.dtype == np.float64 else torch.float32
        tmodel.to(dtype)
        with torch.no_grad():
            for key, p in theirs.items():
                if tuple(p.shape) != tuple(ours[key].shape):
                    raise ValueError(f"torch mirror of {name}: {key} has shape {tuple(p.shape)}, "
                                     f"minidiff {tuple(ours[key].shape)}")
                p.copy_(torch.from_numpy(np.array(to_host(ours[key]))))
        return tmodel.to(device)


    def num_params(tmodel):
        return int(sum(p.numel() for p in tmodel.parameters()))


    def matmul_gflops(n, repeats=5, device="cpu"):
        """Best GFLOP/s of torch.matmul on float32 (n, n) @ (n, n): torch's own GEMM ceiling
        (on a GPU each call waits for the device)."""
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        a @ b
        sync(device)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            sync(device)
            best = min(best, time.perf_counter() - t0)
        return 2 * n ** 3 / best / 1e9


    # --- the diffusion maths of the benchmark, in torch ------------------------------------
    def _at(buf, t, ndim):
        """buf[t] reshaped to (B, 1, ..., 1)."""
        return buf[t].reshape((-1,) + (1,) * (ndim - 1))


    def train_step(tmodel, diffusion, x0, lr=1e-3, device="cpu"):
        """A closure running one DDPM training step on x0 (numpy, (B, ...)) with Adam:

        t ~ U{0..T-1}, eps ~ N(0, I), x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps,
        loss = mean (model(x_t, t) - eps)^2, backward, Adam step.
        """
        x0 = torch.from_numpy(np.array(to_host(x0))).to(device)
        sab = torch.from_numpy(np.array(to_host(diffusion.sqrt_alphas_cumprod))).to(device)
        s1mab = torch.from_numpy(np.array(to_host(diffusion.sqrt_one_minus_alphas_cumprod))).to(device)
        T, B, n = diffusion.num_timesteps, x0.shape[0], x0.ndim
        opt = torch.optim.Adam(tmodel.parameters(), lr=lr)

        def step():
            t = torch.randint(0, T, (B,), device=device)
            noise = torch.randn_like(x0)
            x_t = _at(sab, t, n) * x0 + _at(s1mab, t, n) * noise             # (B, ...)
            loss = F.mse_loss(tmodel(x_t, t), noise)
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()
            return loss
        return step


    def forward_step(tmodel, x, t, device="cpu"):
        """A closure running model(x, t) without gradients."""
        x, t = (torch.from_numpy(np.array(to_host(a))).to(device) for a in (x, t))

        def step():
            with torch.no_grad():
                return tmodel(x, t)
        return step


    def ddim_sample_loop(tmodel, diffusion, shape, ts, ts_next, generator=None, device="cpu"):
        """DDIM, eta = 0, with x0_hat clipped to [-1, 1] (minidiff's defaults):

        x0_hat = clip(sqrt(1/abar_t) x_t - sqrt(1/abar_t - 1) eps_hat),
        eps_hat = (sqrt(1/abar_t) x_t - x0_hat) / sqrt(1/abar_t - 1),
        x_next = sqrt(abar_next) x0_hat + sqrt(1 - abar_next) eps_hat   (abar_{-1} = 1).
        """
        abar = np.asarray(diffusion._buffers64["alphas_cumprod"])
        dtype = torch.float64 if diffusion.dtype == np.float64 else torch.float32
        with torch.no_grad():
            x = torch.randn(shape, generator=generator, dtype=dtype, device=device)   # (B, ...)
            for t, t_next in zip(ts, ts_next):
                a_t, a_next = float(abar[t]), (float(abar[t_next]) if t_next >= 0 else 1.0)
                r, rm1 = (1 / a_t) ** 0.5, (1 / a_t - 1) ** 0.5
                eps = tmodel(x, torch.full((shape[0],), t, dtype=torch.long, device=device))  # (B, ...)
                x0 = (r * x - rm1 * eps).clamp_(-1.0, 1.0)
                eps = (r * x - x0) / rm1
                x = a_next ** 0.5 * x0 + (1 - a_next) ** 0.5 * eps
        return x


    def conv_op_step(op, args):
        """A no-grad closure computing in torch what minidiff.kernels.<op>(*args) computes
        (op from minidiff.bench.convs.CONV_OPS): conv2d; convs sharing a channel-split input,
        as one conv of the concatenation with the weights stacked; nearest x2 upsampling
        then a 3x3 conv."""
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a))
        if op == "conv2d_forward":
            x, w, b, stride, padding = args
            x, w, b = t(x), t(w), t(b)
            run = lambda: F.conv2d(x, w, b, stride=stride, padding=padding)
        elif op == "conv3x3_shared_forward":
            xs, ws, bs = args
            x, w, b = torch.cat([t(a) for a in xs], 1), torch.cat([t(a) for a in ws]), torch.cat([t(a) for a in bs])
            run = lambda: F.conv2d(x, w, b, padding=1)
        elif op == "upsample_conv3x3_forward":
            x, w, b = (t(a) for a in args)
            run = lambda: F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), w, b, padding=1)
        else:
            raise ValueError(f"conv_op_step: op must be a conv kernel name, got {op!r}")

        def step():
            with torch.no_grad():
                return run()
        return step


    def conv_step(md_conv, x, dy):
        """A closure running nn.Conv2d forward and backward (dx, dw, db), shapes of md_conv."""
        conv = _conv(md_conv)
        x = torch.from_numpy(np.array(x)).requires_grad_(True)
        dy = torch.from_numpy(np.array(dy))

        def step():
            x.grad = None
            conv.zero_grad(set_to_none=False)
            conv(x).backward(dy)
            return x.grad
        return step

    return dict(locals())
