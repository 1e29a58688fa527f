"""Several 3x3 convs of one input given in channel parts (kernels/conv/cpu_3x3.py:
conv3x3_shared_*_cpu, and the face's conv3x3_shared_forward / backward) against the
reference running each conv alone on the concatenated input."""
import numpy as np
import pytest

pytest.importorskip("numba")

from minidiff.kernels.check import check_kernel
from minidiff.kernels.conv import cpu_3x3 as conv3x3_cpu
from minidiff.kernels.conv import reference as conv_reference

DTYPES = [np.float32, np.float64]


def _shared_reference_forward(xs, ws, bs):
    """Each conv run alone by the reference on the concatenated input."""
    x = np.concatenate(xs, axis=1)
    return tuple(conv_reference.conv2d_forward_reference(x, w, b, (1, 1), (1, 1)) for w, b in zip(ws, bs))


def _shared_reference_backward(dys, xs, ws):
    x = np.concatenate(xs, axis=1)
    grads = [conv_reference.conv2d_backward_reference(dy, x, w, (1, 1), (1, 1)) for dy, w in zip(dys, ws)]
    dx = sum(g[0] for g in grads)
    c = np.cumsum([0] + [p.shape[1] for p in xs])
    return (*(dx[:, c[k]:c[k + 1]] for k in range(len(xs))), *(g[1] for g in grads), *(g[2] for g in grads))


# (B, H, W, channels of the input parts, Cout of each conv)
SHARED = [(1, 2, 2, [1], [1]), (2, 7, 7, [3, 2], [5, 4]), (3, 5, 9, [1, 4, 2], [2, 3, 1]),
          (2, 14, 13, [6, 5], [7, 5]), (16, 6, 5, [2, 3], [3, 2])]     # the last on lanes


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,H,W,cins,couts", SHARED)
def test_shared_input_convs_match_separate_convs(B, H, W, cins, couts, dtype, layout):
    """conv3x3_shared_*_cpu (convs reading one input given in channel parts) against
    the reference running each conv alone on the concatenation; the dx is their sum."""
    rng = np.random.default_rng(B + H + W + len(cins))
    xs = [rng.standard_normal((B, c, H, W)).astype(dtype) for c in cins]
    ws = [rng.standard_normal((o, sum(cins), 3, 3)).astype(dtype) for o in couts]
    bs = [rng.standard_normal(o).astype(dtype) for o in couts]
    dys = [rng.standard_normal((B, o, H, W)).astype(dtype) for o in couts]
    ys = check_kernel(lambda *a: tuple(conv3x3_cpu.conv3x3_shared_forward_cpu(*a)), _shared_reference_forward,
                      [xs, ws, bs])
    ys = ys if isinstance(ys, tuple) else (ys,)
    assert all(y.dtype == dtype and y.flags.c_contiguous for y in ys)

    def kernel(dys, xs, ws):
        dxs, dws, dbs = conv3x3_cpu.conv3x3_shared_backward_cpu(dys, xs, ws)
        return (*dxs, *dws, *dbs)
    grads = check_kernel(kernel, _shared_reference_backward, [dys, xs, ws])
    assert all(g.dtype == dtype for g in grads)
    assert [g.shape for g in grads[:len(xs)]] == [x.shape for x in xs]


def test_shared_input_convs_dispatch_and_errors():
    """The dispatcher sends NumPy arrays to the CPU kernel and gives the same numbers
    on the reference path; bad parts or weights are a ValueError naming what was expected."""
    from minidiff.kernels import conv3x3_shared_backward, conv3x3_shared_forward, reference_mode
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((2, c, 6, 5)) for c in (2, 3)]
    ws = [rng.standard_normal((o, 5, 3, 3)) for o in (4, 1)]
    bs = [rng.standard_normal(4), None]
    dys = [rng.standard_normal((2, o, 6, 5)) for o in (4, 1)]
    got = conv3x3_shared_forward(xs, ws, bs), conv3x3_shared_backward(dys, xs, ws)
    with reference_mode():
        want = conv3x3_shared_forward(xs, ws, bs), conv3x3_shared_backward(dys, xs, ws)
    for g, r in zip([*got[0], *got[1][0], *got[1][1], *got[1][2]], [*want[0], *want[1][0], *want[1][1], *want[1][2]]):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12)
    assert conv3x3_shared_backward(dys, xs, ws, need_bias=False)[2] == [None, None]
    with pytest.raises(ValueError, match="one B, H, W"):
        conv3x3_shared_forward([xs[0], xs[1][:, :, :5]], ws, bs)
    with pytest.raises(ValueError, match=r"\(Cout_k, 5, 3, 3\)"):
        conv3x3_shared_forward(xs, [ws[0][:, :4]], [None])
    with pytest.raises(ValueError, match="as many biases"):
        conv3x3_shared_forward(xs, ws, bs[:1])
