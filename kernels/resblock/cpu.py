"""A ResBlock's conv -> GroupNorm+SiLU -> conv without leaving the lines (CPU, inference only).

    h = conv3x3(SiLU(GroupNorm(conv3x3(x, w_1) + b_1) + shift), w_2) + b_2

Layer by layer, the middle activation goes from the first conv's grid to
NCHW, through GroupNorm+SiLU, and onto the second conv's lines again. Here
groupnorm/cpu_lines.py takes it from the grid straight onto the lines, so
two copies (and one pass) per ResBlock are never made. Nothing is kept for
a backward pass: nn.ResBlock calls this under nn.no_grad() only.

Both layouts of lines/geometry.py are taken. The two convs must share one, so the
first runs on the second's: they differ only where min(Cin, Cout) does
(in the anchor U-Net the 28x28 up block, whose first conv and 3x3 skip
together would take lanes). In one process, 30 alternating no_grad forwards
at batch 64, twice: 0.980x and 0.985x the time of running that block
layer by layer instead.

The block's end (out_conv's grid -> GroupNorm+SiLU -> + residual, to NCHW) was
fused the same way too and not kept: the scatter to NCHW is most of that work,
and in one process (30 alternating no_grad forwards, batch 64, twice) the U-Net
forward took 0.971x and 1.002x the time of from_lines + GroupNorm+SiLU + add.
"""
import numpy as np

from ..conv.cpu_3x3 import conv3x3_grid, conv3x3_line, conv_biases, grid_rows, steps
from ..groupnorm.cpu_lines import groupnorm_silu_to_lines
from ..lines.geometry import from_lines, lines
from ..runtime.scratch import scratch


def conv3x3_norm_conv3x3_forward_cpu(xs, ws, bs, norm_weight, norm_bias, shift, num_groups, eps, w2, b2):
    """[h, s_1, ...]: h as above for x = concatenate(xs, axis=1) and w_1 = ws[0], and
    s_k = conv3x3(x, ws[k]) + bs[k] for the other weights (run as one conv with w_1, as
    conv3x3_shared_forward_cpu does). shift (B, Cout_1). Both convs run on the second
    conv's layout (lines.lines of it), so that the GroupNorm can write its lines."""
    B, _, H, W = xs[0].shape
    dtype = xs[0].dtype
    C1, C2 = ws[0].shape[0], w2.shape[0]
    g = lines(B, H, W, min(C1, C2))                  # the second conv's layout, for both
    grid, _, o = conv3x3_grid(xs, ws, g)                                     # (Cout+, P)
    bs = conv_biases(ws, bs, dtype)
    others = [from_lines(grid[o[k]:o[k + 1]], g, bs[k], np.empty((B, o[k + 1] - o[k], H, W), dtype))
              for k in range(1, len(ws))]                                  # [(B, Cout_k, H, W)]
    weight = np.ones(C1, dtype) if norm_weight is None else np.ascontiguousarray(norm_weight)
    bias = np.zeros(C1, dtype) if norm_bias is None else np.ascontiguousarray(norm_bias)
    xl, _, _ = groupnorm_silu_to_lines(grid[:C1], g, H, W, bs[0], weight, bias, np.ascontiguousarray(shift),
                                       num_groups, float(eps),
                                       scratch("xl", (C1, g.L), dtype))    # (C1, L): the first conv's are done with
    b2 = np.zeros(C2, dtype) if b2 is None else np.ascontiguousarray(b2)
    grid = conv3x3_line(xl, np.ascontiguousarray(w2), b2, *steps(g), scratch("grid", (grid_rows(C2), g.P), dtype), 0)
    return [from_lines(grid, g, np.zeros(C2, dtype), np.empty((B, C2, H, W), dtype))] + others
