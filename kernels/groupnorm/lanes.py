"""GroupNorm + shift + SiLU (+ a residual) on image lanes (CPU, Numba): OnLines in, OnLines out.

Thin wrappers: the kernels are cpu_lines.py's (groupnorm_silu_to_lines reads the input's own
lines at their head and writes fresh lines, the residual's lines added in the same pass;
groupnorm_silu_backward_lanes). A residual's gradient is dy itself.
"""
import numpy as np

from ..lines.activation import OnLines
from ..lines.copies import norm_arrays
from .cpu_lines import groupnorm_silu_backward_lanes, groupnorm_silu_to_lines

def groupnorm_silu_forward_on_lines(X, weight, bias, shift, num_groups, eps, residual=None):
    """(Z, mean, rstd): Z = SiLU(GroupNorm(X) + shift) [+ residual] as OnLines (X, residual OnLines,
    shift (B, C) or None), mean and rstd (B, num_groups); cpu_lines.groupnorm_silu_lanes."""
    B, C, H, W = X.shape
    g, dtype = X.g, X.line.dtype
    shift = np.zeros((B, C), dtype) if shift is None else np.ascontiguousarray(shift)
    res = None if residual is None else (residual.line, np.zeros(C, dtype), g.head)
    z, mean, rstd = groupnorm_silu_to_lines(X.line, g, H, W, np.zeros(C, dtype),
                                            *norm_arrays((weight, bias), C, dtype), shift, num_groups, float(eps),
                                            np.empty((C, g.L), dtype), res, src_head=g.head)
    return OnLines(z, g, X.shape), mean, rstd


def groupnorm_silu_backward_on_lines(dZ, X, mean, rstd, weight, bias, shift, num_groups):
    """(dX, dweight, dbias, dshift) of groupnorm_silu_forward_on_lines (the residual's gradient
    is dZ itself); None for absent weight / bias / shift, as groupnorm_silu_backward_cpu."""
    B, C, H, W = X.shape
    dtype = X.line.dtype
    w, b = norm_arrays((weight, bias), C, dtype)
    sh = np.zeros((B, C), dtype) if shift is None else np.ascontiguousarray(shift)
    dx = np.empty_like(X.line)                                                 # (C, L)
    dshift = np.empty((B, C), np.float64)                                      # (B, C) partial sums
    dweight = np.empty((B, C), np.float64)
    groupnorm_silu_backward_lanes(dZ.line, X.line, np.ascontiguousarray(mean), np.ascontiguousarray(rstd),
                                  w, b, sh, num_groups, X.g.R, H, W, dx, dshift, dweight)
    return (OnLines(dx, X.g, X.shape),
            None if weight is None else dweight.sum(axis=0).astype(dtype),
            None if bias is None else dshift.sum(axis=0).astype(dtype),
            None if shift is None else dshift.astype(dtype))
