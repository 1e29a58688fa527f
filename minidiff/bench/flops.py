"""FLOPs counted from the layer shapes: what a case's GFLOP/s divide.

conv 2 B Cout Ho Wo Cin kh kw, dense 2 N in out, attention 2 x 2 B h N^2 d;
a backward costs 2 x its forward (input and weight gradients). Pointwise ops
and norms are not counted.
"""
import numpy as np

from .. import kernels
from ..nn import Conv2d, Dense, MultiheadAttention, ResBlock, UpsampleConv


def conv_flops(x_shape, out_channels, kernel_size, stride, padding):
    """2 B Cout Ho Wo Cin kh kw: the multiply-adds of one conv forward."""
    B, Cin, H, W = x_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    return 2 * B * out_channels * Ho * Wo * Cin * kh * kw


def forward_flops(model):
    """FLOPs of the last forward of `model`, from the inputs its layers kept.

    Conv2d and Dense count their GEMMs (a ResBlock's first conv and skip conv
    also when they ran as one); attention adds q k^T and P v. An
    UpsampleConv counts its conv on the upsampled image, as PyTorch computes it,
    also when minidiff's fused kernel does 2.25x fewer multiply-adds there.
    """
    layers = [layer for _, layer in model.named_layers()]
    inner = {id(layer.conv) for layer in layers if isinstance(layer, UpsampleConv)}  # counted by their parent
    shared = {id(layer): layer for layer in layers if isinstance(layer, ResBlock) and layer.shared}
    inner |= {id(conv) for blk in shared.values() for conv in (blk.in_layers.conv, blk.skip)}
    total = 0
    for layer in layers:
        if id(layer) in shared:                      # its first conv and skip conv, run as one
            B, _, H, W = layer.x[0].shape
            total += sum(conv_flops((B, conv.in_channels, H, W), conv.out_channels, conv.kernel_size,
                                    conv.stride, conv.padding) for conv in (layer.in_layers.conv, layer.skip))
        elif isinstance(layer, UpsampleConv):
            B, C, H, W = layer.x.shape
            conv = layer.conv
            total += conv_flops((B, C, 2 * H, 2 * W), conv.out_channels, conv.kernel_size,
                                conv.stride, conv.padding)
        elif isinstance(layer, Conv2d) and id(layer) not in inner:
            total += conv_flops(layer.x.shape, layer.out_channels, layer.kernel_size,
                                layer.stride, layer.padding)
        elif isinstance(layer, Dense):
            n = layer.x.size // layer.in_features
            total += 2 * n * layer.in_features * layer.out_features
        elif isinstance(layer, MultiheadAttention):
            B, h, N, _ = layer.P.shape
            d = layer.head_dim
            total += 2 * (2 * B * h * N * N * d)
    return total


def flops_per_sample(model, sample_shape):
    """Forward FLOPs of one sample: a batch-1 forward, then `forward_flops`.

    Every counted layer is linear in the batch size, so B samples cost B times
    this (and the benchmark never allocates a full batch just to count).
    """
    with kernels.reference_mode():       # plain NumPy: counting compiles no kernel (a GPU run needs none)
        model.forward(np.zeros((1,) + tuple(sample_shape), dtype=model.dtype), np.zeros(1, dtype=np.int64))
    return forward_flops(model)
