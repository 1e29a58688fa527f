"""GroupNorm (+ per-channel shift) (+ SiLU), fused: the plain `xp` reference.

x (B, C, *spatial) is split into G groups of C/G channels; per sample b and
group g, over its n = C/G * prod(spatial) entries (biased variance):

    mean[b, g], var[b, g],   rstd = 1 / sqrt(var + eps)            (B, G)
    xhat = (x - mean) * rstd
    h    = weight[c] * xhat + bias[c] + shift[b, c]
    y    = SiLU(h) = h * sigmoid(h)          (silu=False: y = h)
    y   += residual                          (when a residual of x's shape is given)

weight, bias (C,) or None (1 and 0); shift (B, C) or None (0). Backward, with
dh = dy * SiLU'(h), SiLU'(h) = s (1 + h (1 - s)), s = sigmoid(h), g = dh * weight
and means over a group:

    dx      = rstd * (g - mean(g) - xhat * mean(g * xhat))
    dweight = sum_{b, spatial} dh * xhat     dbias = sum_{b, spatial} dh
    dshift  = sum_{spatial} dh               (B, C)

The backward pass recomputes xhat and h from x, mean and rstd: the forward
keeps nothing the size of x. groupnorm/cpu.py and groupnorm/cuda.py compute
the same with Numba; all three share `check_groupnorm_args`.
"""
from ..xp import get_xp


def check_groupnorm_args(x, weight, bias, shift, num_groups):
    """Validate shapes; returns (B, C, G, S) with S = prod(spatial) (1 for (B, C) input)."""
    if not hasattr(x, "ndim") or x.ndim < 2:
        raise ValueError(f"x: expected an array (B, C, *spatial), got shape {getattr(x, 'shape', None)}")
    if x.dtype.kind != "f":
        raise TypeError(f"x: expected a float array, got {x.dtype}")
    B, C = int(x.shape[0]), int(x.shape[1])
    if isinstance(num_groups, bool) or int(num_groups) != num_groups or num_groups < 1 or C % num_groups:
        raise ValueError(f"num_groups: expected a positive integer dividing C={C}, got {num_groups!r}")
    for name, a in (("weight", weight), ("bias", bias)):
        if a is not None and tuple(a.shape) != (C,):
            raise ValueError(f"{name}: expected shape ({C},) or None, got {tuple(a.shape)}")
    if shift is not None and tuple(shift.shape) != (B, C):
        raise ValueError(f"shift: expected shape ({B}, {C}) or None, got {tuple(shift.shape)}")
    S = 1
    for d in x.shape[2:]:
        S *= int(d)
    return B, C, int(num_groups), S


def check_residual(residual, x):
    """residual: None, or an array of x's shape and dtype (added to the forward's output)."""
    if residual is None:
        return
    if tuple(getattr(residual, "shape", ())) != tuple(x.shape):
        raise ValueError(f"residual: expected shape {tuple(x.shape)} or None, "
                         f"got {tuple(getattr(residual, 'shape', ()))}")
    if residual.dtype != x.dtype:
        raise TypeError(f"residual: expected dtype {x.dtype} (x's), got {residual.dtype}")


def check_stats(mean, rstd, B, G):
    for name, a in (("mean", mean), ("rstd", rstd)):
        if tuple(a.shape) != (B, G):
            raise ValueError(f"{name}: expected shape ({B}, {G}), got {tuple(a.shape)}")


def sigmoid(h):
    """sigmoid(h) = (1 + tanh(h/2)) / 2: never overflows, unlike 1 / (1 + exp(-h))."""
    return 0.5 * (1.0 + get_xp(h).tanh(0.5 * h))


def _xhat(x3, mean, rstd, G):
    """xhat (B, C, S) from x (B, C, S) and the (B, G) statistics."""
    B, C, S = x3.shape
    xg = x3.reshape(B, G, -1)                                          # (B, G, n)
    return ((xg - mean[:, :, None]) * rstd[:, :, None]).reshape(B, C, S)


def _rows(a_bg, C):
    """(B, G) -> (B, C, 1): each group's value repeated for its C/G channels."""
    G = a_bg.shape[1]
    return a_bg.repeat(C // G, axis=1)[:, :, None]


def _row_offset(bias, shift, rstd, C):
    """offset[b, c] = bias[c] + shift[b, c] as (B, C, 1), in rstd's dtype (0 where both are None)."""
    offset = get_xp(rstd).zeros((rstd.shape[0], C, 1), dtype=rstd.dtype)
    if bias is not None:
        offset += bias[None, :, None]
    if shift is not None:
        offset += shift[:, :, None]
    return offset


def groupnorm_silu_forward_reference(x, weight, bias, shift, num_groups, eps, silu=True, residual=None):
    """(y, mean, rstd): y = SiLU(weight xhat + bias + shift) [+ residual] (x's shape), mean and rstd (B, G)."""
    xp = get_xp(x)
    B, C, G, S = check_groupnorm_args(x, weight, bias, shift, num_groups)
    check_residual(residual, x)
    xg = x.reshape(B, G, -1)                                           # (B, G, n)
    mean = xg.mean(axis=2)                                             # (B, G)
    xc = xg - mean[:, :, None]                                         # (B, G, n)
    var = (xc * xc).mean(axis=2)                                       # (B, G)
    rstd = 1.0 / xp.sqrt(var + eps)                                    # (B, G)
    scale = _rows(rstd, C)                                             # (B, C, 1): rstd weight
    if weight is not None:
        scale = scale * weight[None, :, None]
    h = xc.reshape(B, C, S)                                            # xc is ours: h in place
    h *= scale
    h += _row_offset(bias, shift, rstd, C)                             # h = weight xhat + bias + shift
    if silu:
        h *= sigmoid(h)                                                # y = h sigmoid(h)
    if residual is not None:
        h += residual.reshape(B, C, S)
    return h.reshape(x.shape), mean, rstd


def groupnorm_silu_backward_reference(dy, x, mean, rstd, weight, bias, shift, num_groups, silu=True):
    """(dx, dweight, dbias, dshift); dweight/dbias/dshift None where weight/bias/shift are None.

    The group means of g = dh weight and g xhat come from per-(b, c) row sums,
    so dx = rstd weight dh - rstd mean(g xhat) xhat - rstd mean(g) is one
    scale-and-shift per row."""
    B, C, G, S = check_groupnorm_args(x, weight, bias, shift, num_groups)
    if tuple(dy.shape) != tuple(x.shape):
        raise ValueError(f"dy: expected shape {tuple(x.shape)}, got {tuple(dy.shape)}")
    check_stats(mean, rstd, B, G)
    x3, dy3 = x.reshape(B, C, S), dy.reshape(B, C, S)                  # (B, C, S)
    xhat = _xhat(x3, mean, rstd, G)                                    # (B, C, S)
    if silu:
        h = xhat if weight is None else xhat * weight[None, :, None]
        h = h + _row_offset(bias, shift, rstd, C)                      # (B, C, S)
        s = sigmoid(h)
        dh = 1.0 - s                                                   # dh = dy s (1 + h (1 - s)), in place
        dh *= h
        dh += 1.0
        dh *= s
        dh *= dy3
    else:
        dh = dy3
    row_dh = dh.sum(axis=2)                                            # (B, C): sum dh, = dshift
    row_dhx = (dh * xhat).sum(axis=2)                                  # (B, C): sum dh xhat
    dweight = None if weight is None else row_dhx.sum(axis=0)          # (C,)
    dbias = None if bias is None else row_dh.sum(axis=0)               # (C,)
    n = (C // G) * S
    g_dh, g_dhx = row_dh, row_dhx                                      # the same sums of g = dh weight
    if weight is not None:
        g_dh, g_dhx = row_dh * weight, row_dhx * weight
    mean_g = g_dh.reshape(B, G, -1).sum(axis=2) / n                    # (B, G)
    mean_gx = g_dhx.reshape(B, G, -1).sum(axis=2) / n                  # (B, G)
    r = _rows(rstd, C)                                                 # (B, C, 1)
    dx = dh * (r if weight is None else r * weight[None, :, None])     # rstd weight dh
    xhat *= r * _rows(mean_gx, C)
    dx -= xhat                                                         # - rstd mean(g xhat) xhat
    dx -= r * _rows(mean_g, C)                                         # - rstd mean(g)
    return dx.reshape(x.shape), dweight, dbias, (None if shift is None else row_dh)
