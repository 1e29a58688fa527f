"""A ResBlock's forward under no_grad on image lanes (CPU, Numba): the parts OnLines in, OnLines out.

conv -> GroupNorm+SiLU -> conv -> GroupNorm+SiLU + skip, each GroupNorm writing lines
(groupnorm/cpu_lines.py), the last one adding the skip (the input's lines, a 1x1 skip conv's
lines, or the 3x3 skip conv's grid, run with the first conv as one); the convs' grids are scratch.
"""
import numpy as np

from ..conv.cpu_3x3 import conv3x3_line, conv_biases, grid_rows, steps
from ..groupnorm.cpu_lines import groupnorm_silu_to_lines
from ..lines.activation import OnLines
from ..lines.copies import norm_arrays, stack_lines
from ..runtime.scratch import scratch

def resblock_on_lines(parts, ws, bs, norm_in, shift, w2, b2, norm_out, skip_1x1=None):
    """A ResBlock's forward on lines, y = SiLU(GN_out(conv(h, w2) + b2)) + skip, as OnLines:

        h    = SiLU(GN_in(conv(x, ws[0]) + bs[0]) + shift)    x the concatenation of the OnLines parts
        skip = conv(x, ws[1]) + bs[1] (a 3x3 skip, run with the first conv as one),
               x @ skip_1x1 = (w (Cout, Cin, 1, 1), b), or x itself (neither given)

    norm_in, norm_out: (weight, bias, num_groups, eps) of the two GroupNorms (None weight /
    bias: 1 / 0); shift (B, Cout)."""
    B, _, H, W = parts[0].shape
    g, dtype = parts[0].g, parts[0].line.dtype
    head = g.head
    xl = stack_lines(parts)                                                   # (Cin, L)
    C1, C2 = ws[0].shape[0], w2.shape[0]
    w = np.ascontiguousarray(ws[0] if len(ws) == 1 else np.concatenate(ws))   # (C1 [+ C2], Cin, 3, 3)
    bs = conv_biases(ws, bs, dtype)
    grid = conv3x3_line(xl, w, np.zeros(w.shape[0], dtype), *steps(g),
                        scratch("grid", (grid_rows(w.shape[0]), g.P), dtype), 0)          # (C1 [+ C2]+, P)
    if len(ws) > 1:
        residual = (grid[C1:], bs[1], 0)                                      # the skip conv's grid rows
    elif skip_1x1 is not None:
        sw, sb = skip_1x1
        res = np.dot(sw.reshape(C2, -1), xl)                                  # (C2, L): a 1x1 conv on the lines
        residual = (res, conv_biases([sw], [sb], dtype)[0], head)
    else:
        residual = (xl, np.zeros(C2, dtype), head)                            # the input's lines
    hl, _, _ = groupnorm_silu_to_lines(grid[:C1], g, H, W, bs[0], *norm_arrays(norm_in, C1, dtype),
                                       np.ascontiguousarray(shift), norm_in[2], float(norm_in[3]),
                                       scratch("hl", (C1, g.L), dtype))       # (C1, L)
    b2 = conv_biases([w2], [b2], dtype)[0]
    grid2 = conv3x3_line(hl, np.ascontiguousarray(w2), np.zeros(C2, dtype), *steps(g),
                         scratch("grid2", (grid_rows(C2), g.P), dtype), 0)
    y, _, _ = groupnorm_silu_to_lines(grid2[:C2], g, H, W, b2, *norm_arrays(norm_out, C2, dtype), np.zeros((B, C2), dtype),
                                      norm_out[2], float(norm_out[3]), np.empty((C2, g.L), dtype), residual)
    return OnLines(y, g, (B, C2, H, W))
