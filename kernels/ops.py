"""The face of minidiff.kernels: one function per operation, and the one place that picks its implementation.

Each operation takes NumPy arrays, CuPy arrays (or the test backend's) or, for
the activations, an OnLines (lines/activation.py), and returns the same kind.
route.py names the family of the arguments (lines, cpu, cuda, reference);
each function below then picks the implementation of that family, and among
the convolutions the shape specialisation (conv_shape):

    operation                   reference                  cpu (Numba)            cuda (Numba)       lines (OnLines)
    conv2d 3x3 s1 p1            conv/reference_3x3.py      conv/cpu_3x3.py        conv/cuda.py       conv/lanes.py
    conv2d 4x4 s2 p1            conv/reference.py          conv/cpu_4x4s2.py      conv/cuda.py       conv/lanes.py
    conv2d, any other shape     conv/reference.py          conv/cpu.py            conv/cuda.py       via NCHW
    conv3x3_shared              conv2d per weight          conv/cpu_3x3.py        conv2d per weight  conv/lanes.py
    upsample_conv3x3            upconv/reference.py        upconv/cpu.py          upconv/cuda.py     upconv/lanes.py
    groupnorm_silu              groupnorm/reference.py     groupnorm/cpu.py       groupnorm/cuda.py  groupnorm/lanes.py (silu), else via NCHW
    resblock_forward (no_grad)  the layer ops in turn      resblock/cpu.py        the layer ops      resblock/lanes.py
    attention                   attention/reference.py     attention/cpu.py       attention/cuda.py -
    ddpm_step, ddim_step        sampling/reference.py      sampling/cpu.py        sampling/cuda.py -
    solver_step                 sampling/reference.py      sampling/cpu.py        sampling/cuda.py -
      dpmpp_step, euler_step, euler_ancestral_step, heun_step: their coefficients (sampling/solvers.py),
      then solver_step
    adam_step                   adam/reference.py          adam/cpu.py            adam/cuda.py     -

Every operation has a reference, and every call returns a result (never None).
The Numba modules are imported inside the functions, on first use, so
`import minidiff.kernels` needs nothing but NumPy. Layout: lanes_fit, to_lanes
and to_array move an activation onto image lanes and back; the model that owns
the activations (minidiff.models.UNet) decides when.
"""
from .adam.reference import adam_step_reference
from .attention.reference import attention_backward_reference, attention_forward_reference
from .conv.reference import check_shapes, conv2d_backward_reference, conv2d_forward_reference, conv_geometry, pair
from .conv.reference_3x3 import conv3x3_backward_reference, conv3x3_forward_reference
from .groupnorm.reference import groupnorm_silu_backward_reference, groupnorm_silu_forward_reference
from .lines.activation import OnLines
from .route import CPU, CUDA, LINES, route
from .sampling import solvers
from .sampling.reference import ddim_step_reference, ddpm_step_reference, solver_step_reference
from .upconv.reference import upsample_conv3x3_backward_reference, upsample_conv3x3_forward_reference
from .xp import get_xp


# --- layout: image lanes -------------------------------------------------------------------------
def lanes_fit(x):
    """True when x (B, C, H, W) can go onto image lanes: a NumPy array on the CPU kernels and B a
    positive multiple of LANES (lines/geometry.py)."""
    if route(x) is not CPU:
        return False
    from .lines.copies import lines_fit
    return lines_fit(x)


def to_lanes(x):
    """x (B, C, H, W) as an OnLines (an OnLines is returned as it is); see lanes_fit."""
    if type(x) is OnLines:
        return x
    from .lines.copies import image_to_lines
    return image_to_lines(x)


def to_array(x):
    """The activation as an array (B, C, H, W): an OnLines is copied off its lanes, an array returned as it is."""
    if type(x) is not OnLines:
        return x
    from .lines.copies import lines_to_image
    return lines_to_image(x)


def _on_lanes(parts):
    """The parts with any array among OnLines put onto lanes too (a call with one OnLines runs on lanes)."""
    return [to_lanes(p) for p in parts]


def concat_channels(parts):
    """The parts (B, C_i, H, W) joined along the channels (one part is returned as it is)."""
    if len(parts) == 1:
        return parts[0]
    if any(type(p) is OnLines for p in parts):
        from .lines.copies import concat_lines
        return concat_lines(_on_lanes(parts))
    return get_xp(*parts).concatenate(parts, axis=1)


def split_channels(a, sizes):
    """The inverse of concat_channels: a (B, sum sizes, H, W) split into views of sizes[i] channels."""
    if type(a) is OnLines:
        from .lines.copies import split_lines
        return split_lines(a, list(sizes))
    parts, c = [], 0
    for n in sizes:
        parts.append(a[:, c:c + n])
        c += n
    return parts


# --- convolution ---------------------------------------------------------------------------------
def conv_shape(w, stride, padding):
    """'3x3' (stride 1, padding 1), '4x4s2' (stride 2, padding 1) or 'general': the shape
    specialisation a conv with weights w (Cout, Cin, kh, kw) can take."""
    kh, kw = w.shape[2], w.shape[3]
    (sh, sw), (ph, pw) = pair(stride, "stride"), pair(padding, "padding")
    if kh == kw == 3 and sh == sw == 1 and ph == pw == 1:
        return "3x3"
    if kh == kw == 4 and sh == sw == 2 and ph == pw == 1:
        return "4x4s2"
    return "general"


def _check_conv(x, w, stride, padding, dy=None):
    """ValueError unless x, w (and dy) fit a conv with this stride and padding."""
    check_shapes(x, w)
    Cout, _, kh, kw = w.shape
    _, _, _, _, Ho, Wo = conv_geometry(x.shape, kh, kw, stride, padding)
    if dy is not None and tuple(dy.shape) != (x.shape[0], Cout, Ho, Wo):
        raise ValueError(f"conv2d backward: dy has shape {tuple(dy.shape)}, expected {(x.shape[0], Cout, Ho, Wo)}")


def conv2d_forward(x, w, b, stride, padding):
    """y (B, Cout, Ho, Wo) = conv2d(x (B, Cin, H, W), w (Cout, Cin, kh, kw)) + b (Cout,) or None."""
    _check_conv(x, w, stride, padding)
    family, shape = route(x, w, b), conv_shape(w, stride, padding)
    if family is LINES:
        if shape == "3x3":
            from .conv.lanes import conv3x3_on_lines
            return conv3x3_on_lines(x, w, b)
        if shape == "4x4s2":
            from .conv.lanes import conv4x4s2_on_lines
            return conv4x4s2_on_lines(x, w, b)
        return to_lanes(conv2d_forward(to_array(x), w, b, stride, padding))
    if family is CPU:
        if shape == "3x3":
            from .conv.cpu_3x3 import conv3x3_forward_cpu
            return conv3x3_forward_cpu(x, w, b)
        if shape == "4x4s2":
            from .conv.cpu_4x4s2 import conv4x4s2_forward_cpu
            return conv4x4s2_forward_cpu(x, w, b)
        from .conv.cpu import conv2d_forward_cpu
        return conv2d_forward_cpu(x, w, b, stride, padding)
    if family is CUDA:
        from .conv.cuda import conv2d_forward_cuda
        return conv2d_forward_cuda(x, w, b, stride, padding)
    if shape == "3x3":
        return conv3x3_forward_reference(x, w, b)
    return conv2d_forward_reference(x, w, b, stride, padding)


def conv2d_backward(dy, x, w, stride, padding, need_bias=True):
    """(dx, dw, db) of conv2d_forward, x the forward's input; db is None unless need_bias."""
    _check_conv(x, w, stride, padding, dy)
    family, shape = route(dy, x, w), conv_shape(w, stride, padding)
    if family is LINES:
        if shape == "3x3":
            from .conv.lanes import conv3x3_backward_on_lines
            return conv3x3_backward_on_lines(*_on_lanes([dy, x]), w, need_bias)
        if shape == "4x4s2":
            from .conv.lanes import conv4x4s2_backward_on_lines
            return conv4x4s2_backward_on_lines(*_on_lanes([dy, x]), w, need_bias)
        dx, dw, db = conv2d_backward(to_array(dy), to_array(x), w, stride, padding, need_bias)
        return to_lanes(dx), dw, db
    if family is CPU:
        if shape == "3x3":
            from .conv.cpu_3x3 import conv3x3_backward_cpu
            return conv3x3_backward_cpu(dy, x, w, need_bias)
        if shape == "4x4s2":
            from .conv.cpu_4x4s2 import conv4x4s2_backward_cpu
            return conv4x4s2_backward_cpu(dy, x, w, need_bias)
        from .conv.cpu import conv2d_backward_cpu
        return conv2d_backward_cpu(dy, x, w, stride, padding, need_bias)
    if family is CUDA:
        from .conv.cuda import conv2d_backward_cuda
        return conv2d_backward_cuda(dy, x, w, stride, padding, need_bias)
    if shape == "3x3":
        return conv3x3_backward_reference(dy, x, w, need_bias)
    return conv2d_backward_reference(dy, x, w, stride, padding, need_bias)


def _check_shared(xs, ws, per_conv, name):
    """ValueError unless the parts, the weights and `per_conv` (named `name`: one per weight) fit together."""
    if not xs or not ws or len(ws) != len(per_conv):
        raise ValueError(f"conv3x3_shared: expected one or more input parts and weights, "
                         f"and as many {name} as weights")
    if any(len(x.shape) != 4 or x.shape[:1] + x.shape[2:] != xs[0].shape[:1] + xs[0].shape[2:] for x in xs):
        raise ValueError(f"conv3x3_shared: the input parts must be (B, C_i, H, W) with one B, H, W, "
                         f"got {[tuple(x.shape) for x in xs]}")
    Cin = sum(x.shape[1] for x in xs)
    if any(w.ndim != 4 or w.shape[1:] != (Cin, 3, 3) for w in ws):
        raise ValueError(f"conv3x3_shared: weights must be (Cout_k, {Cin}, 3, 3), got {[tuple(w.shape) for w in ws]}")


def conv3x3_shared_forward(xs, ws, bs):
    """[y_k] = [conv3x3(x, w_k) + b_k], stride 1, padding 1, for x = concat_channels(xs): several
    convs of one input that comes in channel parts. The CPU kernels read the parts once as one
    conv with the weights stacked and never build x (conv/cpu_3x3.py); the other families
    concatenate the parts and run conv2d_forward per conv."""
    _check_shared(xs, ws, bs, "biases")
    family = route(*xs, *ws, *bs)
    if family is LINES:
        from .conv.lanes import conv3x3_shared_on_lines
        return conv3x3_shared_on_lines(_on_lanes(xs), ws, bs)
    if family is CPU:
        from .conv.cpu_3x3 import conv3x3_shared_forward_cpu
        return conv3x3_shared_forward_cpu(xs, ws, bs)
    x = concat_channels(xs)                                            # (B, sum C_i, H, W)
    return [conv2d_forward(x, w, b, (1, 1), (1, 1)) for w, b in zip(ws, bs)]


def conv3x3_shared_backward(dys, xs, ws, need_bias=True):
    """(dxs, dws, dbs) of conv3x3_shared_forward: dx = the sum of the convs' input
    gradients, split like xs; one dw and db per conv (db None unless need_bias)."""
    _check_shared(xs, ws, dys, "output gradients")
    family = route(*dys, *xs, *ws)
    if family is LINES:
        from .conv.lanes import conv3x3_shared_backward_on_lines
        return conv3x3_shared_backward_on_lines(_on_lanes(dys), _on_lanes(xs), ws, need_bias)
    if family is CPU:
        from .conv.cpu_3x3 import conv3x3_shared_backward_cpu
        return conv3x3_shared_backward_cpu(dys, xs, ws, need_bias)
    x = concat_channels(xs)
    dx, dws, dbs = None, [], []
    for dy, w in zip(dys, ws):
        dx_k, dw, db = conv2d_backward(dy, x, w, (1, 1), (1, 1), need_bias)
        dx = dx_k if dx is None else dx + dx_k                         # (B, sum C_i, H, W)
        dws.append(dw)
        dbs.append(db)
    return split_channels(dx, [a.shape[1] for a in xs]), dws, dbs


def upsample_conv3x3_forward(x, w, b):
    """y (B, Cout, 2H, 2W) = conv3x3(nearest x2 upsampling of x (B, Cin, H, W)) + b. The kernels
    run it as four 2x2 convs on the small image (upconv/); the reference runs the two steps."""
    family = route(x, w, b)
    if family is LINES:
        from .upconv.lanes import upsample_conv3x3_on_lines
        return upsample_conv3x3_on_lines(x, w, b)
    if family is CPU:
        from .upconv.cpu import upsample_conv3x3_forward_cpu
        return upsample_conv3x3_forward_cpu(x, w, b)
    if family is CUDA:
        from .upconv.cuda import upsample_conv3x3_forward_cuda
        return upsample_conv3x3_forward_cuda(x, w, b)
    return upsample_conv3x3_forward_reference(x, w, b)


def upsample_conv3x3_backward(dy, x, w, need_bias=True):
    """(dx, dw, db) of upsample_conv3x3_forward, x its input; db is None unless need_bias."""
    family = route(dy, x, w)
    if family is LINES:
        from .upconv.lanes import upsample_conv3x3_backward_on_lines
        return upsample_conv3x3_backward_on_lines(*_on_lanes([dy, x]), w, need_bias)
    if family is CPU:
        from .upconv.cpu import upsample_conv3x3_backward_cpu
        return upsample_conv3x3_backward_cpu(dy, x, w, need_bias)
    if family is CUDA:
        from .upconv.cuda import upsample_conv3x3_backward_cuda
        return upsample_conv3x3_backward_cuda(dy, x, w, need_bias)
    return upsample_conv3x3_backward_reference(dy, x, w, need_bias)


# --- normalisation -------------------------------------------------------------------------------
def groupnorm_silu_forward(x, weight, bias, shift, num_groups, eps, silu=True, residual=None):
    """(y, mean, rstd): y = SiLU(GroupNorm(x) + shift[:, :, None...]) [+ residual], mean and rstd
    (B, num_groups); see groupnorm/reference.py."""
    family = route(x, weight, bias, shift, residual)
    if family is LINES:
        if silu:
            from .groupnorm.lanes import groupnorm_silu_forward_on_lines
            return groupnorm_silu_forward_on_lines(to_lanes(x), weight, bias, shift, num_groups, eps,
                                                   None if residual is None else to_lanes(residual))
        y, mean, rstd = groupnorm_silu_forward(to_array(x), weight, bias, shift, num_groups, eps, silu=False,
                                               residual=None if residual is None else to_array(residual))
        return to_lanes(y), mean, rstd
    if family is CPU:
        from .groupnorm.cpu import groupnorm_silu_forward_cpu as forward
    elif family is CUDA:
        from .groupnorm.cuda import groupnorm_silu_forward_cuda as forward
    else:
        forward = groupnorm_silu_forward_reference
    return forward(x, weight, bias, shift, num_groups, eps, silu=silu, residual=residual)


def groupnorm_silu_backward(dy, x, mean, rstd, weight, bias, shift, num_groups, silu=True):
    """(dx, dweight, dbias, dshift) of groupnorm_silu_forward; None for absent weight/bias/shift."""
    family = route(dy, x, mean, rstd, weight, bias, shift)
    if family is LINES:
        if silu:
            from .groupnorm.lanes import groupnorm_silu_backward_on_lines
            return groupnorm_silu_backward_on_lines(*_on_lanes([dy, x]), mean, rstd, weight, bias, shift,
                                                    num_groups)
        dx, *rest = groupnorm_silu_backward(to_array(dy), to_array(x), mean, rstd, weight, bias, shift,
                                            num_groups, silu=False)
        return (to_lanes(dx), *rest)
    if family is CPU:
        from .groupnorm.cpu import groupnorm_silu_backward_cpu as backward
    elif family is CUDA:
        from .groupnorm.cuda import groupnorm_silu_backward_cuda as backward
    else:
        backward = groupnorm_silu_backward_reference
    return backward(dy, x, mean, rstd, weight, bias, shift, num_groups, silu=silu)


# --- a ResBlock under no_grad --------------------------------------------------------------------
def resblock_forward(parts, ws, bs, norm_in, shift, w2, b2, norm_out, skip=None):
    """y (B, C2, H, W) of a ResBlock's forward when no backward follows (nn.no_grad):

        h = SiLU(GN_in(conv3x3(x, ws[0]) + bs[0]) + shift)          x = concat_channels(parts)
        y = SiLU(GN_out(conv3x3(h, w2) + b2)) + s
        s = conv3x3(x, ws[1]) + bs[1]  when ws has a second weight (a 3x3 skip, run with the first conv),
            conv1x1(x, skip[0]) + skip[1]  for a 1x1 skip conv `skip` = (w, b),  else x itself

    norm_in / norm_out = (weight, bias, num_groups, eps), shift (B, C1). The CPU kernels keep h on
    the conv lines (resblock/cpu.py) or the whole block on image lanes (resblock/lanes.py); the
    reference (and CUDA) runs the layers' operations in turn."""
    _check_shared(parts, ws, bs, "biases")
    family = route(*parts, *ws, *bs, shift, w2, b2)
    if family is LINES:
        from .resblock.lanes import resblock_on_lines
        return resblock_on_lines(_on_lanes(parts), ws, bs, norm_in, shift, w2, b2, norm_out, skip)
    if family is CPU:
        from .resblock.cpu import conv3x3_norm_conv3x3_forward_cpu
        outs = conv3x3_norm_conv3x3_forward_cpu(parts, ws, bs, norm_in[0], norm_in[1], shift, norm_in[2],
                                                norm_in[3], w2, b2)
        h2 = outs[0]                                                   # conv3x3(h, w2) + b2
    else:
        outs = conv3x3_shared_forward(parts, ws, bs)                   # [conv(x, ws[0]) + bs[0], (skip)]
        h = groupnorm_silu_forward(outs[0], *norm_in[:2], shift, *norm_in[2:])[0]
        h2 = conv2d_forward(h, w2, b2, (1, 1), (1, 1))
    if len(ws) > 1:
        s = outs[1]                                                    # the 3x3 skip conv
    else:
        x = concat_channels(parts)                                     # (B, Cin, H, W)
        s = x if skip is None else conv2d_forward(x, skip[0], skip[1], (1, 1), (0, 0))
    return groupnorm_silu_forward(h2, *norm_out[:2], None, *norm_out[2:], residual=s)[0]


# --- attention -----------------------------------------------------------------------------------
def attention_forward(qkv, heads, scale):
    """(out (B, N, C), P (B, heads, N, N)) of multi-head attention on qkv (B, N, 3C); see attention/reference.py."""
    family = route(qkv)
    if family is CPU:
        from .attention.cpu import attention_forward_cpu as forward
    elif family is CUDA:
        from .attention.cuda import attention_forward_cuda as forward
    else:
        forward = attention_forward_reference
    return forward(qkv, heads, scale)


def attention_backward(d_out, qkv, P, heads, scale):
    """d_qkv (B, N, 3C) of attention_forward."""
    family = route(d_out, qkv, P)
    if family is CPU:
        from .attention.cpu import attention_backward_cpu as backward
    elif family is CUDA:
        from .attention.cuda import attention_backward_cuda as backward
    else:
        backward = attention_backward_reference
    return backward(d_out, qkv, P, heads, scale)


# --- sampling ------------------------------------------------------------------------------------
def ddpm_step(x_t, eps_hat, sqrt_recip_abar, sqrt_recipm1_abar, c1, c2, sigma,
              z=None, clip=True, out=None, x0_out=None):
    """(x_prev, x0_hat) of one DDPM reverse step; see sampling/reference.py."""
    family = route(x_t, eps_hat, z, out, x0_out)
    if family is CPU:
        from .sampling.cpu import ddpm_step_cpu as step
    elif family is CUDA:
        from .sampling.cuda import ddpm_step_cuda as step
    else:
        step = ddpm_step_reference
    return step(x_t, eps_hat, sqrt_recip_abar, sqrt_recipm1_abar, c1, c2, sigma,
                z=z, clip=clip, out=out, x0_out=x0_out)


def ddim_step(x_t, eps_hat, abar, abar_next, sigma, z=None, clip=True, out=None, x0_out=None):
    """(x_next, x0_hat) of one DDIM step; see sampling/reference.py."""
    family = route(x_t, eps_hat, z, out, x0_out)
    if family is CPU:
        from .sampling.cpu import ddim_step_cpu as step
    elif family is CUDA:
        from .sampling.cuda import ddim_step_cuda as step
    else:
        step = ddim_step_reference
    return step(x_t, eps_hat, abar, abar_next, sigma, z=z, clip=clip, out=out, x0_out=x0_out)


def solver_step(x_eval, model_out, x, x0_prev, a, b, cx, c0, c1, c2, sigma, z=None, clip=True, out=None,
                x0_out=None):
    """(x_next, x0_hat) of the few-step samplers' shared update; see sampling/reference.py:
    x0_hat = clip(a x_eval + b model_out), x_next = cx x + c0 x0_hat + c1 x0_prev[0] + c2 x0_prev[1] + sigma z."""
    family = route(x_eval, model_out, x, *x0_prev, z, out, x0_out)
    if family is CPU:
        from .sampling.cpu import solver_step_cpu as step
    elif family is CUDA:
        from .sampling.cuda import solver_step_cuda as step
    else:
        step = solver_step_reference
    return step(x_eval, model_out, x, x0_prev, a, b, cx, c0, c1, c2, sigma, z=z, clip=clip, out=out, x0_out=x0_out)


def dpmpp_step(x_t, model_out, abar_t, abar_next, objective="eps", x0_prev=(), lambda_prev=(), eta=0.0, z=None,
               clip=True, out=None, x0_out=None):
    """(x_next, x0_hat) of DPM-Solver++'s multistep update of order 1 + len(x0_prev) (eta > 0: the SDE
    variant, which adds sigma z); x0_prev / lambda_prev: the earlier x0_hats and their log-SNRs, most
    recent first. See sampling/solvers.py, dpmpp_coefficients."""
    if len(x0_prev) != len(lambda_prev):
        raise ValueError(f"lambda_prev: expected one log-SNR per earlier x0_hat ({len(x0_prev)}), "
                         f"got {len(lambda_prev)}")
    cx, c0, c1, c2, sigma = solvers.dpmpp_coefficients(abar_t, abar_next, lambda_prev, eta)
    if sigma > 0 and z is None:
        raise ValueError("z: the SDE update (eta > 0) needs noise z")
    a, b = solvers.x0_coefficients(objective, abar_t)
    return solver_step(x_t, model_out, x_t, x0_prev, a, b, cx, c0, c1, c2, sigma, z=z if sigma > 0 else None,
                       clip=clip, out=out, x0_out=x0_out)


def euler_step(x_t, model_out, abar_t, abar_next, objective="eps", clip=True, out=None, x0_out=None):
    """(x_next, x0_hat) of an Euler step on the probability-flow ODE; see sampling/solvers.py."""
    cx, c0 = solvers.euler_coefficients(abar_t, abar_next)
    a, b = solvers.x0_coefficients(objective, abar_t)
    return solver_step(x_t, model_out, x_t, (), a, b, cx, c0, 0.0, 0.0, 0.0, clip=clip, out=out, x0_out=x0_out)


def euler_ancestral_step(x_t, model_out, abar_t, abar_next, z, objective="eps", eta=1.0, clip=True, out=None,
                         x0_out=None):
    """(x_next, x0_hat) of an Euler ancestral step (noise z of std alpha_next s_up); see sampling/solvers.py."""
    cx, c0, sigma = solvers.euler_ancestral_coefficients(abar_t, abar_next, eta)
    a, b = solvers.x0_coefficients(objective, abar_t)
    if sigma > 0 and z is None:
        raise ValueError("z: the ancestral step (eta > 0, abar_next < 1) needs noise z")
    return solver_step(x_t, model_out, x_t, (), a, b, cx, c0, 0.0, 0.0, sigma, z=z if sigma > 0 else None,
                       clip=clip, out=out, x0_out=x0_out)


def heun_step(x_t, x_pred, model_out, x0_hat, abar_t, abar_next, objective="eps", clip=True, out=None,
              x0_out=None):
    """(x_next, x0_hat') of Heun's corrector: x_pred is euler_step's result, x0_hat its data prediction,
    model_out the model at (x_pred, t_next), x0_hat' the data prediction from it; see sampling/solvers.py."""
    cx, c0, c1 = solvers.heun_coefficients(abar_t, abar_next)
    a, b = solvers.x0_coefficients(objective, abar_next)
    return solver_step(x_pred, model_out, x_t, (x0_hat,), a, b, cx, c0, c1, 0.0, 0.0, clip=clip, out=out,
                       x0_out=x0_out)


# --- optimiser -----------------------------------------------------------------------------------
def adam_step(theta, g, m, v, lr, beta1, beta2, eps, t, weight_decay=0.0, decoupled=False):
    """One Adam (AdamW if decoupled) step in place on the flat theta, m, v (P,); see adam/reference.py."""
    family = route(theta, g, m, v)
    if family is CPU:
        from .adam.cpu import adam_step_cpu as step
    elif family is CUDA:
        from .adam.cuda import adam_step_cuda as step
    else:
        step = adam_step_reference
    return step(theta, g, m, v, lr, beta1, beta2, eps, t, weight_decay=weight_decay, decoupled=decoupled)

