"""Pick a kernel implementation from the array type.

    NumPy array                      -> Numba CPU kernels   ("numba-cpu")
    CuPy array (module 'cupy...')    -> Numba CUDA kernels + cuBLAS ("numba-cuda")
    other array with __minidiff_xp__ -> the plain-xp reference ("reference")

While NumPy arrays run on the Numba CPU kernels, NumPy's BLAS is kept on one
thread (blas_threads.py, numba_threads.py explain why); the reference path
restores it. The reference path is also taken when Numba cannot be imported, for dtypes the
kernels do not cover (anything but float32/float64, or mixed dtypes), and when
forced by `use_reference(True)`, `with reference_mode():` or the environment
variable MINIDIFF_KERNELS=reference. Numba is imported on first use only, so
`import minidiff` needs nothing but NumPy.
"""
import importlib
import os
from contextlib import contextmanager

import numpy as np

from minidiff.backend import concat_channels, split_channels

from .adam import adam_step_reference
from .attention_reference import attention_backward_reference, attention_forward_reference
from .blas_threads import kernels_mode
from .heap import keep_freed_memory
from .conv_reference import conv2d_backward_reference, conv2d_forward_reference
from .groupnorm_reference import groupnorm_silu_backward_reference, groupnorm_silu_forward_reference
from .sampling import ddim_step_reference, ddpm_step_reference

_ENV = "MINIDIFF_KERNELS"
_forced_reference = False
_modules = {}            # "conv_cpu" -> module, or None when it failed to import


def use_reference(flag=True):
    """Force (True) or stop forcing (False) the reference path for every array type."""
    global _forced_reference
    _forced_reference = bool(flag)


@contextmanager
def reference_mode(flag=True):
    """`with reference_mode(): ...` runs the block on the reference path, then restores."""
    global _forced_reference
    old = _forced_reference
    _forced_reference = bool(flag)
    try:
        yield
    finally:
        _forced_reference = old


def reference_forced():
    """True when use_reference/reference_mode or MINIDIFF_KERNELS=reference say so."""
    env = os.environ.get(_ENV, "").strip().lower()
    if env not in ("", "auto", "reference"):
        raise ValueError(f"{_ENV}: expected 'auto' or 'reference', got {env!r}")
    return _forced_reference or env == "reference"


def _module(name):
    """minidiff.kernels.<name>, imported on first use; None if Numba is missing."""
    if name not in _modules:
        try:
            _modules[name] = importlib.import_module(f"{__package__}.{name}")
        except ImportError:
            _modules[name] = None
    return _modules[name]


def _device(a):
    """'cpu' for NumPy arrays, 'cuda' for CuPy arrays, None for anything else."""
    if type(a) is np.ndarray:
        return "cpu"
    t = type(a)
    if getattr(t, "__minidiff_xp__", None) is None and t.__module__.startswith("cupy"):
        return "cuda"
    return None


_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _route(arrays):
    """'cpu' or 'cuda' when these arrays (None entries skipped) can go to the Numba
    kernels: all on one device, all of one float dtype. Else None. (A plain loop:
    it runs before every kernel call, ~80 times a train step.)"""
    if reference_forced():
        return None
    device = dt = None
    for a in arrays:
        if a is None:
            continue
        if device is None:
            device, dt = _device(a), a.dtype
            if device is None or dt not in _KERNEL_DTYPES:
                return None
        elif a.dtype != dt or _device(a) != device:
            return None
    return device


def _kernel(module, name, arrays):
    """The Numba version `<name>_<device>` from kernels/<module>_<device>.py, or None.

    On the CPU this also switches NumPy's BLAS to one thread for the kernels, and
    back for the reference path (blas_threads.py; why in numba_threads.py), and
    the first time makes malloc keep freed memory (heap.py).
    """
    device = _route(arrays)
    mod = None if device is None else _module(f"{module}_{device}")
    if device == "cpu" or device is None:
        kernels_mode(mod is not None)
        if mod is not None:
            keep_freed_memory()
    return None if mod is None else getattr(mod, f"{name}_{device}", None)


def backend_name(x):
    """'numba-cpu', 'numba-cuda' or 'reference': the path an array `x` takes."""
    device = _route([x])
    if device is None or _module(f"conv_{device}") is None:
        return "reference"
    return f"numba-{device}"


def conv2d_forward(x, w, b, stride, padding):
    """y (B, Cout, Ho, Wo) = conv2d(x (B, Cin, H, W), w (Cout, Cin, kh, kw)) + b (Cout,)."""
    fwd = _kernel("conv", "conv2d_forward", [x, w, b]) or conv2d_forward_reference
    return fwd(x, w, b, stride, padding)


def conv2d_backward(dy, x, w, stride, padding, need_bias=True):
    """(dx, dw, db) of conv2d; db is None unless need_bias."""
    bwd = _kernel("conv", "conv2d_backward", [dy, x, w]) or conv2d_backward_reference
    return bwd(dy, x, w, stride, padding, need_bias)


def _check_shared(xs, ws, per_conv, name):
    """ValueError unless the parts, the weights and `per_conv` (named `name`: one per weight) fit together."""
    if not xs or not ws or len(ws) != len(per_conv):
        raise ValueError(f"conv3x3_shared: expected one or more input parts and weights, "
                         f"and as many {name} as weights")
    if any(x.ndim != 4 or x.shape[:1] + x.shape[2:] != xs[0].shape[:1] + xs[0].shape[2:] for x in xs):
        raise ValueError(f"conv3x3_shared: the input parts must be (B, C_i, H, W) with one B, H, W, "
                         f"got {[tuple(x.shape) for x in xs]}")
    Cin = sum(x.shape[1] for x in xs)
    if any(w.ndim != 4 or w.shape[1:] != (Cin, 3, 3) for w in ws):
        raise ValueError(f"conv3x3_shared: weights must be (Cout_k, {Cin}, 3, 3), got {[tuple(w.shape) for w in ws]}")


def conv3x3_shared_forward(xs, ws, bs):
    """[y_k] = [conv3x3(x, w_k) + b_k], stride 1, padding 1, for x = concatenate(xs, axis=1):
    several convs of one input that comes in channel parts. The Numba CPU kernel
    reads the parts once and never builds x (conv3x3_cpu.py); other paths
    concatenate them and run conv2d_forward per conv."""
    _check_shared(xs, ws, bs, "biases")
    fwd = _kernel("conv", "conv3x3_shared_forward", [*xs, *ws, *bs])
    if fwd is not None:
        return fwd(xs, ws, bs)
    x = concat_channels(xs)                                        # (B, sum C_i, H, W)
    return [conv2d_forward(x, w, b, (1, 1), (1, 1)) for w, b in zip(ws, bs)]


def conv3x3_shared_backward(dys, xs, ws, need_bias=True):
    """(dxs, dws, dbs) of conv3x3_shared_forward: dx = the sum of the convs' input
    gradients, split like xs; one dw and db per conv (db None unless need_bias)."""
    _check_shared(xs, ws, dys, "output gradients")
    bwd = _kernel("conv", "conv3x3_shared_backward", [*dys, *xs, *ws])
    if bwd is not None:
        return bwd(dys, xs, ws, need_bias)
    x = concat_channels(xs)
    dx, dws, dbs = None, [], []
    for dy, w in zip(dys, ws):
        dx_k, dw, db = conv2d_backward(dy, x, w, (1, 1), (1, 1), need_bias)
        dx = dx_k if dx is None else dx + dx_k                     # (B, sum C_i, H, W)
        dws.append(dw)
        dbs.append(db)
    return split_channels(dx, [a.shape[1] for a in xs]), dws, dbs


def conv3x3_norm_conv3x3_forward(xs, ws, bs, norm_weight, norm_bias, shift, num_groups, eps, w2, b2):
    """[h, s_1, ...] for inference: h = conv3x3(SiLU(GroupNorm(conv3x3(x, ws[0]) + bs[0]) + shift), w2) + b2
    and s_k = conv3x3(x, ws[k]) + bs[k], x = concatenate(xs, axis=1), all 3x3 stride 1
    padding 1; the GroupNorm's groups and eps as in nn.GroupNorm, shift (B, Cout_0).
    On the CPU kernels the middle activation stays on the conv lines
    (conv_norm_conv_cpu.py); None when no kernel takes these arrays (the caller then
    runs the layers): on the reference path, and for CuPy arrays (no CUDA version)."""
    _check_shared(xs, ws, bs, "biases")
    fwd = _kernel("conv_norm_conv", "conv3x3_norm_conv3x3_forward",
                  [*xs, *ws, *bs, norm_weight, norm_bias, shift, w2, b2])
    return None if fwd is None else fwd(xs, ws, bs, norm_weight, norm_bias, shift, num_groups, eps, w2, b2)


def lines_flow(x):
    """True when a no_grad forward of x (B, C, H, W) may hand its layers OnLines
    (kernels/on_lines.py): x goes to the CPU kernels and B is a multiple of lines.LANES."""
    flow = _kernel("on_lines", "lines_flow", [x])
    return flow is not None and flow(x)


def upsample_conv3x3_forward(x, w, b):
    """y (B, Cout, 2H, 2W) = conv3x3(nearest x2 upsampling of x (B, Cin, H, W)) + b, in one
    kernel (upconv_cpu.py, upconv_cuda.py) when one takes these arrays; None when none
    does (the reference path, no Numba, other arrays): the caller then runs the two
    steps (nn.UpsampleConv), as a reference needs no fused version."""
    fwd = _kernel("upconv", "upsample_conv3x3_forward", [x, w, b])
    return None if fwd is None else fwd(x, w, b)


def upsample_conv3x3_backward(dy, x, w, need_bias=True):
    """(dx, dw, db) of upsample_conv3x3_forward, or None when no kernel takes these arrays."""
    bwd = _kernel("upconv", "upsample_conv3x3_backward", [dy, x, w])
    return None if bwd is None else bwd(dy, x, w, need_bias)


def ddpm_step(x_t, eps_hat, sqrt_recip_abar, sqrt_recipm1_abar, c1, c2, sigma,
              z=None, clip=True, out=None, x0_out=None):
    """(x_prev, x0_hat) of one DDPM reverse step; see sampling.ddpm_step_reference."""
    step = _kernel("sampling", "ddpm_step", [x_t, eps_hat, z, out, x0_out]) or ddpm_step_reference
    return step(x_t, eps_hat, sqrt_recip_abar, sqrt_recipm1_abar, c1, c2, sigma,
                z=z, clip=clip, out=out, x0_out=x0_out)


def ddim_step(x_t, eps_hat, abar, abar_next, sigma, z=None, clip=True, out=None, x0_out=None):
    """(x_next, x0_hat) of one DDIM step; see sampling.ddim_step_reference."""
    step = _kernel("sampling", "ddim_step", [x_t, eps_hat, z, out, x0_out]) or ddim_step_reference
    return step(x_t, eps_hat, abar, abar_next, sigma, z=z, clip=clip, out=out, x0_out=x0_out)


def groupnorm_silu_forward(x, weight, bias, shift, num_groups, eps, silu=True, residual=None):
    """(y, mean, rstd): y = SiLU(GroupNorm(x) + shift[:, :, None...]) [+ residual]; see groupnorm_reference.py."""
    fwd = (_kernel("groupnorm", "groupnorm_silu_forward", [x, weight, bias, shift, residual])
           or groupnorm_silu_forward_reference)
    return fwd(x, weight, bias, shift, num_groups, eps, silu=silu, residual=residual)


def groupnorm_silu_backward(dy, x, mean, rstd, weight, bias, shift, num_groups, silu=True):
    """(dx, dweight, dbias, dshift) of groupnorm_silu_forward; None for absent weight/bias/shift."""
    bwd = (_kernel("groupnorm", "groupnorm_silu_backward", [dy, x, mean, rstd, weight, bias, shift])
           or groupnorm_silu_backward_reference)
    return bwd(dy, x, mean, rstd, weight, bias, shift, num_groups, silu=silu)


def attention_forward(qkv, heads, scale):
    """(out (B, N, C), P (B, heads, N, N)) of multi-head attention on qkv (B, N, 3C); see attention_reference.py."""
    fwd = _kernel("attention", "attention_forward", [qkv]) or attention_forward_reference
    return fwd(qkv, heads, scale)


def attention_backward(d_out, qkv, P, heads, scale):
    """d_qkv (B, N, 3C) of attention_forward."""
    bwd = _kernel("attention", "attention_backward", [d_out, qkv, P]) or attention_backward_reference
    return bwd(d_out, qkv, P, heads, scale)


def adam_step(theta, g, m, v, lr, beta1, beta2, eps, t, weight_decay=0.0, decoupled=False):
    """One Adam (AdamW if decoupled) step in place on the flat theta, m, v (P,); see adam.py."""
    step = _kernel("adam", "adam_step", [theta, g, m, v]) or adam_step_reference
    return step(theta, g, m, v, lr, beta1, beta2, eps, t, weight_decay=weight_decay, decoupled=decoupled)
