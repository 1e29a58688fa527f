"""Every operation of the face (kernels/ops.py) gives the same numbers whatever the memory
layout of each of its array arguments (Fortran order, permuted, strided and reversed views),
on the reference path, the Numba CPU kernels and image lanes, for a batch of 1 and more;
and an activation on lanes mixes with plain arrays in one call.

Each case runs once on C-contiguous float64 arrays, then once per argument and layout with
that one argument replaced; the results must agree to float64 rounding."""
import numpy as np
import pytest

from layouts import NON_C, as_layout, assert_any_layout, assert_same_results
import minidiff.kernels as K
from minidiff.kernels.check import ddim_case, ddpm_case


def _r(rng, *shape):
    return rng.standard_normal(shape)                                  # float64


def _cases(B):
    """{name: (fn, args)}: fn(*args) -> an array or a tuple / list of them (None allowed)."""
    rng = np.random.default_rng(B)
    x, x2, dy = _r(rng, B, 3, 6, 6), _r(rng, B, 2, 6, 6), _r(rng, B, 4, 6, 6)
    x8, xg = _r(rng, B, 3, 8, 8), _r(rng, B, 4, 5, 5)
    gw, gb, shift = _r(rng, 4), _r(rng, 4), _r(rng, B, 4)
    y, mean, rstd = K.groupnorm_silu_forward(xg, gw, gb, shift, 2, 1e-5)
    qkv = _r(rng, B, 5, 12)
    _, P = K.attention_forward(qkv, 2, 0.5)
    norm_in, norm_out = (_r(rng, 4), _r(rng, 4), 2, 1e-5), (_r(rng, 4), _r(rng, 4), 2, 1e-5)
    ddpm, ddim = list(ddpm_case(rng, (B, 2, 3, 4), np.float64)), list(ddim_case(rng, (B, 2, 3, 4), np.float64))
    return {
        "conv3x3": (lambda x, w, b: K.conv2d_forward(x, w, b, 1, 1), [x, _r(rng, 4, 3, 3, 3), _r(rng, 4)]),
        "conv3x3_backward": (lambda dy, x, w: K.conv2d_backward(dy, x, w, 1, 1), [dy, x, _r(rng, 4, 3, 3, 3)]),
        "conv4x4s2": (lambda x, w, b: K.conv2d_forward(x, w, b, 2, 1), [x8, _r(rng, 4, 3, 4, 4), _r(rng, 4)]),
        "conv4x4s2_backward": (lambda dy, x, w: K.conv2d_backward(dy, x, w, 2, 1),
                               [_r(rng, B, 4, 4, 4), x8, _r(rng, 4, 3, 4, 4)]),
        "conv5x5": (lambda x, w, b: K.conv2d_forward(x, w, b, 1, 2), [x, _r(rng, 4, 3, 5, 5), _r(rng, 4)]),
        "conv5x5_backward": (lambda dy, x, w: K.conv2d_backward(dy, x, w, 1, 2), [dy, x, _r(rng, 4, 3, 5, 5)]),
        "conv1x1": (lambda x, w, b: K.conv2d_forward(x, w, b, 1, 0), [x, _r(rng, 4, 3, 1, 1), _r(rng, 4)]),
        "conv1x1_backward": (lambda dy, x, w: K.conv2d_backward(dy, x, w, 1, 0), [dy, x, _r(rng, 4, 3, 1, 1)]),
        "conv3x3_shared": (lambda a, c, w0, w1: K.conv3x3_shared_forward([a, c], [w0, w1], [None, None]),
                           [x, x2, _r(rng, 4, 5, 3, 3), _r(rng, 2, 5, 3, 3)]),
        "conv3x3_shared_backward": (
            lambda d0, d1, a, c, w0, w1: K.conv3x3_shared_backward([d0, d1], [a, c], [w0, w1]),
            [dy, _r(rng, B, 2, 6, 6), x, x2, _r(rng, 4, 5, 3, 3), _r(rng, 2, 5, 3, 3)]),
        "upsample_conv3x3": (K.upsample_conv3x3_forward, [x, _r(rng, 4, 3, 3, 3), _r(rng, 4)]),
        "upsample_conv3x3_backward": (K.upsample_conv3x3_backward, [_r(rng, B, 4, 12, 12), x, _r(rng, 4, 3, 3, 3)]),
        "groupnorm_silu": (lambda x, w, b, s, r: K.groupnorm_silu_forward(x, w, b, s, 2, 1e-5, residual=r),
                           [xg, gw, gb, shift, _r(rng, B, 4, 5, 5)]),
        "groupnorm": (lambda x, w, b: K.groupnorm_silu_forward(x, w, b, None, 2, 1e-5, silu=False), [xg, gw, gb]),
        "groupnorm_silu_backward": (lambda *a: K.groupnorm_silu_backward(*a, 2),
                                    [_r(rng, B, 4, 5, 5), xg, mean, rstd, gw, gb, shift]),
        "resblock": (lambda p, w0, w1, s, w2: K.resblock_forward([p], [w0, w1], [None, None], norm_in, s, w2, None,
                                                                 norm_out),
                     [x, _r(rng, 4, 3, 3, 3), _r(rng, 4, 3, 3, 3), _r(rng, B, 4), _r(rng, 4, 4, 3, 3)]),
        "attention": (lambda q: K.attention_forward(q, 2, 0.5), [qkv]),
        "attention_backward": (lambda d, q, P: K.attention_backward(d, q, P, 2, 0.5), [_r(rng, B, 5, 4), qkv, P]),
        "ddpm_step": (lambda *a: K.ddpm_step(*a[:7], z=a[7]), ddpm),
        "ddim_step": (lambda *a: K.ddim_step(*a[:5], z=a[5]), ddim),
        "adam_step": (lambda th, g, m, v: K.adam_step(th.copy(), g, m.copy(), v.copy(), 1e-2, 0.9, 0.999, 1e-8, 3),
                      [_r(rng, 30), _r(rng, 30), _r(rng, 30), np.abs(_r(rng, 30))]),
    }


@pytest.mark.parametrize("family", ["reference", "cpu"])
@pytest.mark.parametrize("B, layouts", [(2, NON_C), (1, ("F", "strided"))])
@pytest.mark.parametrize("op", sorted(_cases(1)))
def test_any_layout_gives_the_same_result(family, B, layouts, op):
    if family == "cpu":
        pytest.importorskip("numba")
    with K.reference_mode(family == "reference"):
        fn, args = _cases(B)[op]
        assert_any_layout(fn, args, layouts=layouts, name=op, to_array=K.to_array)


LANES_CASES = ["conv3x3", "conv3x3_backward", "conv4x4s2", "conv4x4s2_backward", "conv1x1", "conv3x3_shared",
               "upsample_conv3x3", "upsample_conv3x3_backward", "groupnorm_silu", "groupnorm_silu_backward",
               "resblock"]
ACTIVATIONS = {"conv3x3_backward": (0, 1), "conv4x4s2_backward": (0, 1), "conv3x3_shared": (0, 1),
               "upsample_conv3x3_backward": (0, 1), "groupnorm_silu": (0, 4), "groupnorm_silu_backward": (0, 1)}


@pytest.mark.parametrize("op", LANES_CASES)
def test_lanes_any_layout_and_mixed_with_arrays(op):
    """On image lanes (batch 16), the arrays that stay arrays (weights, shifts, statistics) in
    Fortran order, and the activations put on lanes from any layout or left as arrays beside an
    activation on lanes, give the NCHW result."""
    pytest.importorskip("numba")
    fn, args = _cases(16)[op]
    want = fn(*args)
    acts = ACTIVATIONS.get(op, (0,))
    for i in range(len(args)):
        for layout in NON_C if i in acts else ("F",):
            changed = [K.to_lanes(a) if j in acts else a for j, a in enumerate(args)]
            changed[i] = as_layout(args[i], layout)
            if i in acts:
                changed[i] = K.to_lanes(changed[i]) if i != acts[-1] or len(acts) == 1 else changed[i]
            assert_same_results(fn(*changed), want, f"{op} on lanes, argument {i} {layout}", to_array=K.to_array)
