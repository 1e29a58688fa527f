"""Nearest x2 upsampling then a 3x3 stride-1 padding-1 conv, as Numba CUDA kernels,
without building the upsampled image: four 2x2 phase convs on the small one.

It computes y = conv3x3(up2(x), w) + bias, the same as nn.Upsample(2) followed by
the 3x3 conv and as upconv/cpu.py (whose docstring derives the maths). With
W = phase_weights(w) (4, Cout, Cin, 2, 2), W[2a + e] = W_ae (upconv/phases.py),
output pixel (2u + a, 2v + e) is a 2x2 conv of x starting one row/column up-left:

    y[b, o, 2u + a, 2v + e] = bias[o] + sum_{c,t,s} W_ae[o, c, t, s] x[b, c, u + a + t - 1, v + e + s - 1]

(x zero outside the image). Backward, the adjoints of that sum:

    dx[b, c, p, q]       = sum_{a,t,e,s,o} W_ae[o, c, t, s] dy[b, o, 2u + a, 2v + e],
                           u = p + 1 - a - t in [0, H),  v = q + 1 - e - s in [0, W)
    dW_ae[o, c, t, s]    = sum_{b,u,v} dy[b, o, 2u + a, 2v + e] x[b, c, u + a + t - 1, v + e + s - 1]
    dw = phase_weights_grad(dW),   db = sum of dy over (B, 2H, 2W)

Memory layout: x (B, Cin, H, W), y and dy (B, Cout, 2H, 2W), W and dW
(4, Cout, Cin, 2, 2), all C-order; no padded or upsampled copy is made.
Thread mapping: one thread per output element, flat index in C order:
y (forward), dx (backward) and dW (weight gradient). Each thread gathers the
terms of its own sum and writes only its element, so there are no atomics.
The forward and dx sums (4 Cin or 4 Cout terms) run in the array dtype, the
dW sums (B H W terms) in float64, rounded to the dtype when stored.

Arrays are CuPy (zero-copy through `__cuda_array_interface__`) or NumPy under
the CUDA simulator. Nothing is launched at import.
"""
import numpy as np
from numba import config, cuda

from ..runtime.cuda_launch import TPB as LAUNCH_TPB, as_kernel_arg, blocks_for
from ..xp import get_xp
from .phases import phase_weights, phase_weights_grad

TPB = 16 if config.ENABLE_CUDASIM else LAUNCH_TPB       # threads per block


# Thread mapping: one thread per n = ((b Cout + o) 2H + h) 2W + l of y, h = 2u + a,
# l = 2v + e; it reads the 2x2 window of x at rows u + a - 1 + t, columns
# v + e - 1 + s (skipping the zero padding) for every input channel c.
@cuda.jit(cache=True)
def upconv_forward_kernel(x, Wp, bias, y):
    n = cuda.grid(1)
    B, Cout, H2, W2 = y.shape
    if n >= B * Cout * H2 * W2:
        return
    Cin, H, W = x.shape[1], x.shape[2], x.shape[3]
    b, o = n // (Cout * H2 * W2), (n // (H2 * W2)) % Cout
    h, l = (n // W2) % H2, n % W2
    u, a, v, e = h // 2, h % 2, l // 2, l % 2
    ae = 2 * a + e
    acc = bias[o]
    for c in range(Cin):
        for t in range(2):
            p = u + a + t - 1
            if p < 0 or p >= H:
                continue
            for s in range(2):
                q = v + e + s - 1
                if 0 <= q < W:
                    acc += Wp[ae, o, c, t, s] * x[b, c, p, q]
    y[b, o, h, l] = acc


# Thread mapping: one thread per n = ((b Cin + c) H + p) W + q of dx; it
# gathers every (output pixel, phase tap) that read x[b, c, p, q]: phase row a
# and tap t read row p from small-grid row u = p + 1 - a - t (same for columns).
@cuda.jit(cache=True)
def upconv_backward_dx_kernel(dy, Wp, dx):
    n = cuda.grid(1)
    B, Cin, H, W = dx.shape
    if n >= B * Cin * H * W:
        return
    Cout = dy.shape[1]
    b, c = n // (Cin * H * W), (n // (H * W)) % Cin
    p, q = (n // W) % H, n % W
    acc = dy[0, 0, 0, 0] * 0
    for a in range(2):
        for t in range(2):
            u = p + 1 - a - t
            if u < 0 or u >= H:
                continue
            for e in range(2):
                for s in range(2):
                    v = q + 1 - e - s
                    if v < 0 or v >= W:
                        continue
                    for o in range(Cout):
                        acc += Wp[2 * a + e, o, c, t, s] * dy[b, o, 2 * u + a, 2 * v + e]
    dx[b, c, p, q] = acc


# Thread mapping: one thread per n = (((ae Cout + o) Cin + c) 2 + t) 2 + s of
# dW (4, Cout, Cin, 2, 2); it sums phase (a, e) of dy[b, o] times the shifted
# x[b, c] over all b, u, v (in float64: `* 1.0` promotes a float32 entry).
@cuda.jit(cache=True)
def upconv_backward_dW_kernel(dy, x, dW):
    n = cuda.grid(1)
    Cout, Cin = dW.shape[1], dW.shape[2]
    if n >= 16 * Cout * Cin:
        return
    B, H, W = x.shape[0], x.shape[2], x.shape[3]
    ae, o = n // (Cout * Cin * 4), (n // (Cin * 4)) % Cout
    c, t, s = (n // 4) % Cin, (n // 2) % 2, n % 2
    a, e = ae // 2, ae % 2
    acc = 0.0
    for b in range(B):
        for u in range(H):
            p = u + a + t - 1
            if p < 0 or p >= H:
                continue
            for v in range(W):
                q = v + e + s - 1
                if 0 <= q < W:
                    acc += dy[b, o, 2 * u + a, 2 * v + e] * 1.0 * x[b, c, p, q]
    dW[ae, o, c, t, s] = acc


# --- launch helpers ----------------------------------------------------------
def _check(x, w, bias=None, dy=None):
    """ValueError unless x (B, Cin, H, W), w (Cout, Cin, 3, 3), bias (Cout,) and dy (B, Cout, 2H, 2W)
    fit together; TypeError unless x is float32 / float64 and w, dy share its dtype."""
    if x.ndim != 4:
        raise ValueError(f"upsample_conv3x3 (CUDA): x: expected (B, Cin, H, W), "
                         f"got shape {tuple(x.shape)}")
    B, Cin, H, W = x.shape
    if w.ndim != 4 or tuple(w.shape[1:]) != (Cin, 3, 3):
        raise ValueError(f"upsample_conv3x3 (CUDA): w: expected (Cout, {Cin}, 3, 3), "
                         f"got shape {tuple(w.shape)}")
    Cout = w.shape[0]
    if bias is not None and tuple(bias.shape) != (Cout,):
        raise ValueError(f"upsample_conv3x3 (CUDA): bias: expected ({Cout},), got shape {tuple(bias.shape)}")
    if dy is not None and tuple(dy.shape) != (B, Cout, 2 * H, 2 * W):
        raise ValueError(f"upsample_conv3x3 backward (CUDA): dy: expected {(B, Cout, 2 * H, 2 * W)}, "
                         f"got shape {tuple(dy.shape)}")
    arrays = (x, w) if dy is None else (x, w, dy)
    if x.dtype not in (np.float32, np.float64) or any(a.dtype != x.dtype for a in arrays):
        raise TypeError(f"upsample_conv3x3 (CUDA): expected float32 or float64 arrays of one dtype, "
                        f"got {[str(a.dtype) for a in arrays]}")


def upsample_conv3x3_forward_cuda(x, w, bias):
    """y = conv3x3(up2(x), w) + bias:  x (B, Cin, H, W) -> y (B, Cout, 2H, 2W); bias may be None."""
    _check(x, w, bias)
    xp = get_xp(x)
    B, _, H, W = x.shape
    Cout = w.shape[0]
    x = xp.ascontiguousarray(x)                                                 # (B, Cin, H, W)
    Wp = phase_weights(xp.ascontiguousarray(w))                                 # (4, Cout, Cin, 2, 2)
    bias = xp.zeros(Cout, x.dtype) if bias is None else xp.ascontiguousarray(bias, dtype=x.dtype)  # (Cout,)
    y = xp.empty((B, Cout, 2 * H, 2 * W), dtype=x.dtype)                        # (B, Cout, 2H, 2W)
    upconv_forward_kernel[blocks_for(y.size, TPB), TPB](*map(as_kernel_arg, (x, Wp, bias, y)))
    return y


def upsample_conv3x3_backward_cuda(dy, x, w, need_bias=True):
    """(dx, dw, db) of upsample_conv3x3_forward_cuda; db is None unless need_bias."""
    _check(x, w, dy=dy)
    xp = get_xp(x)
    Cout, Cin = w.shape[:2]
    dy = xp.ascontiguousarray(dy)                                               # (B, Cout, 2H, 2W)
    x = xp.ascontiguousarray(x)                                                 # (B, Cin, H, W)
    Wp = phase_weights(xp.ascontiguousarray(w))                                 # (4, Cout, Cin, 2, 2)
    dx = xp.empty_like(x)                                                       # (B, Cin, H, W)
    upconv_backward_dx_kernel[blocks_for(dx.size, TPB), TPB](*map(as_kernel_arg, (dy, Wp, dx)))
    dW = xp.empty((4, Cout, Cin, 2, 2), dtype=x.dtype)                          # (4, Cout, Cin, 2, 2)
    upconv_backward_dW_kernel[blocks_for(dW.size, TPB), TPB](*map(as_kernel_arg, (dy, x, dW)))
    dw = phase_weights_grad(dW)                                                 # (Cout, Cin, 3, 3)
    db = dy.sum(axis=(0, 2, 3)) if need_bias else None                          # (Cout,)
    return dx, dw, db
