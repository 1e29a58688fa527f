"""Nearest x2 upsampling followed by a 3x3 convolution, in plain `xp` (NumPy or CuPy).

    y = conv3x3(up2(x), w) + b,   up2(x)[b, c, h, w] = x[b, c, h // 2, w // 2]
    x (B, Cin, H, W), w (Cout, Cin, 3, 3), b (Cout,) or None -> y (B, Cout, 2H, 2W)

The two steps as they are: the reference the fused kernels (cpu.py, cuda.py:
four 2x2 convs on the small image, phases.py) are checked against. Backward
runs the conv's backward on the upsampled input (rebuilt from x, so only the
small x is kept between the passes), then sums dx over each 2x2 block: the
adjoint of nearest upsampling.
"""
from ..conv.reference_3x3 import conv3x3_backward_reference, conv3x3_forward_reference
from ..xp import get_xp


def check_upconv_args(x, w, dy=None):
    """ValueError unless x (B, Cin, H, W), w (Cout, Cin, 3, 3) and dy (B, Cout, 2H, 2W) fit together."""
    if x.ndim != 4 or w.ndim != 4 or tuple(w.shape[1:]) != (x.shape[1], 3, 3):
        raise ValueError(f"upsample_conv3x3: expected x (B, Cin, H, W) and w (Cout, Cin, 3, 3), "
                         f"got {tuple(x.shape)} and {tuple(w.shape)}")
    B, _, H, W = x.shape
    if dy is not None and tuple(dy.shape) != (B, w.shape[0], 2 * H, 2 * W):
        raise ValueError(f"upsample_conv3x3 backward: dy has shape {tuple(dy.shape)}, "
                         f"expected {(B, w.shape[0], 2 * H, 2 * W)}")


def upsample2(x):
    """x (B, C, H, W) -> (B, C, 2H, 2W), each pixel repeated over a 2x2 block (one strided copy per offset)."""
    B, C, H, W = x.shape
    y = get_xp(x).empty((B, C, 2 * H, 2 * W), dtype=x.dtype)
    for i in range(2):
        for j in range(2):
            y[:, :, i::2, j::2] = x
    return y


def upsample2_backward(dy):
    """The adjoint of upsample2: dy (B, C, 2H, 2W) -> dx (B, C, H, W), the sum over each 2x2 block."""
    dx = dy[:, :, 0::2, 0::2].copy()
    for i in range(2):
        for j in range(2):
            if i or j:
                dx += dy[:, :, i::2, j::2]
    return dx


def upsample_conv3x3_forward_reference(x, w, b):
    """y (B, Cout, 2H, 2W) = conv3x3(up2(x), w) + b, stride 1, padding 1."""
    check_upconv_args(x, w)
    return conv3x3_forward_reference(upsample2(x), w, b)


def upsample_conv3x3_backward_reference(dy, x, w, need_bias=True):
    """(dx (B, Cin, H, W), dw (Cout, Cin, 3, 3), db (Cout,) or None) of upsample_conv3x3_forward_reference."""
    check_upconv_args(x, w, dy)
    d_up, dw, db = conv3x3_backward_reference(dy, upsample2(x), w, need_bias)
    return upsample2_backward(d_up), dw, db
