"""--conv-shapes: the U-Net forward's convolutions one at a time, against the same conv in torch.

Which shapes decide the forward's ratio against PyTorch: every distinct conv
kernel call of the anchor U-Net's forward (recorded as the layers make it,
through minidiff.kernels), run alone at batch 64 on minidiff's default path
and in torch, their calls alternating, each timed call after an untimed one
(N = 25 pairs by default), with how often the forward runs it.
"""
import numpy as np

from .. import kernels
from ..models import UNet
from .cases import ANCHOR
from .flops import conv_flops
from .timing import call_samples, timed_after_warmup

CONV_OPS = ("conv2d_forward", "conv3x3_shared_forward", "upsample_conv3x3_forward")


def _conv_spec(op, args):
    """One conv kernel call as (parts, (H, W), weight shapes, stride, padding, upsampled),
    batch left out: every op in CONV_OPS is one or more convs of one input whose
    channels come in parts (upsampled x2 first for upsample_conv3x3_forward)."""
    if op == "conv2d_forward":
        x, w, _, stride, padding = args
        xs, ws = [x], [w]
    else:
        xs, ws, _ = args if op == "conv3x3_shared_forward" else ([args[0]], [args[1]], None)
        stride = padding = (1, 1)
    return (tuple(x.shape[1] for x in xs), tuple(xs[0].shape[2:]), tuple(tuple(w.shape) for w in ws),
            tuple(stride), tuple(padding), op == "upsample_conv3x3_forward")


def unet_conv_calls(model, sample_shape):
    """{(op, spec): calls} of one batch-1 forward of `model`: every conv kernel call
    (the ops in CONV_OPS, as the layers call them through minidiff.kernels; spec from _conv_spec)."""
    counts, saved = {}, {op: getattr(kernels, op) for op in CONV_OPS}

    def recorder(op):
        def call(*args):
            key = (op, _conv_spec(op, args))
            counts[key] = counts.get(key, 0) + 1
            return saved[op](*args)
        return call
    try:
        for op in CONV_OPS:
            setattr(kernels, op, recorder(op))
        model.forward(np.zeros((1,) + tuple(sample_shape), model.dtype), np.zeros(1, np.int64))
    finally:
        for op, fn in saved.items():
            setattr(kernels, op, fn)
    return counts


def conv_spec_arrays(op, spec, batch, rng):
    """Random float32 arguments of minidiff.kernels.<op> for `spec` at `batch` (a list)."""
    parts, (H, W), wshapes, stride, padding, _ = spec
    xs = [rng.standard_normal((batch, c, H, W)).astype(np.float32) for c in parts]
    ws = [rng.standard_normal(s).astype(np.float32) for s in wshapes]
    bs = [rng.standard_normal(s[0]).astype(np.float32) for s in wshapes]
    if op == "conv3x3_shared_forward":
        return [xs, ws, bs]
    return [xs[0], ws[0], bs[0]] + ([stride, padding] if op == "conv2d_forward" else [])


def conv_spec_flops(spec, batch):
    """FLOPs of one call at `batch`; an upsample conv counted on the upsampled image."""
    parts, (H, W), wshapes, stride, padding, up = spec
    k = 2 if up else 1
    return sum(conv_flops((batch, sum(parts), k * H, k * W), s[0], s[2:], stride, padding) for s in wshapes)


def describe_conv_spec(spec):
    """e.g. '3x3 16->16 @28', '4x4 s2 16->32 @14', '3x3 (32+48)->48+48 @7', 'up+3x3 48->32 @7->14'."""
    parts, (H, _), wshapes, (s, _), _, up = spec
    kh, kw = wshapes[0][2:]
    cin = str(parts[0]) if len(parts) == 1 else f"({'+'.join(map(str, parts))})"
    cout = "+".join(str(w[0]) for w in wshapes)
    return (f"{'up+' if up else ''}{kh}x{kw}{' s%d' % s if s != 1 else ''} {cin}->{cout} "
            f"@{H}{'->%d' % (2 * H) if up else ''}")


def conv_shape_rows(bt, batch=64, repeats=25, model=None, size=28):
    """One row per distinct conv of a U-Net's forward on size x size images (the
    anchor U-Net by default): minidiff's kernel
    (minidiff.kernels.<op>, the default path) and the same conv in torch (bt, or
    None) at `batch`, their calls alternating, each timed call after an untimed
    one of its own (timed_after_warmup); medians, and the median of the
    per-pair ratios ('paired', robust to slow spells that hit both)."""
    model = model or UNet(**ANCHOR)
    rng = np.random.default_rng(0)
    rows = []
    for (op, spec), calls in unet_conv_calls(model, (model.in_channels, size, size)).items():
        args = conv_spec_arrays(op, spec, batch, rng)
        fns = [lambda op=op, args=args: getattr(kernels, op)(*args)]
        if bt is not None:
            fns.append(bt.conv_op_step(op, args))
        for fn in fns:
            call_samples(fn, 1, warmup=1, warmup_s=0.1)
        times = [[] for _ in fns]
        for _ in range(repeats):
            for t, fn in zip(times, fns):
                t.append(timed_after_warmup(fn))
        ours = float(np.median(times[0]))
        theirs = float(np.median(times[1])) if bt is not None else None
        flop = conv_spec_flops(spec, batch)
        rows.append({"conv": describe_conv_spec(spec), "op": op, "calls_per_forward": calls,
                     "minidiff_s": ours, "torch_s": theirs,
                     "ratio_vs_torch": None if theirs is None else ours / theirs,
                     "paired_ratio": None if theirs is None else
                     float(np.median(np.array(times[0]) / np.array(times[1]))),
                     "gflops": flop / ours / 1e9, "torch_gflops": None if theirs is None else flop / theirs / 1e9})
    return rows
