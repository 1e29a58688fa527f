"""Properties of the layers (minidiff.nn) and models (minidiff.models) over drawn cases: shapes,
kernel sizes, strides, paddings, groups, heads, float32 or float64, any memory layout of x, of
the conditioning and of dy, batch sizes 0 to 3, the reference and the Numba CPU path. forward and
backward (input gradient and every parameter gradient) equal the same layer's float64 run on
C-contiguous inputs to the dtype's rounding; an empty batch is a ValueError naming the layer."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import DTYPES, arrays, close
import minidiff.nn as nn
from minidiff.kernels import reference_mode
from minidiff.models import MLP, UNet

FAMILIES = [True, False]                                       # reference path, Numba CPU


def run(layer, x, cond, dy):
    """(y, dx, the flat parameter gradient or None, d_emb / d_shift or None) of one forward and backward."""
    y = layer.forward(x, *cond)
    dx = layer.backward(dy)
    grad = layer.flat()[1].copy() if layer.num_params() else None
    return y, dx, grad, getattr(layer, "d_emb", getattr(layer, "d_shift", None))


def check_layer(data, make, x_shape, cond_shapes=(), owner=None, factor=1.0, cond_ints=()):
    """Draw dtype, layouts and values; compare the run in dtype with the float64 run on C arrays.
    make(dtype) builds the layer (the same weights for any dtype); cond_ints are integer
    conditioning arrays (t, labels) passed as they are."""
    dtype = data.draw(DTYPES)
    x, x64 = data.draw(arrays(x_shape, dtype))
    conds = [data.draw(arrays(s, dtype)) for s in cond_shapes]
    layer, layer64 = make(dtype), make(np.float64)
    if x_shape[0] == 0:
        with pytest.raises(ValueError, match=rf"{owner}: x must be a batch of B >= 1 samples"):
            layer.forward(x, *[c for c, _ in conds], *cond_ints)
        return
    y64 = layer64.forward(x64, *[c64 for _, c64 in conds], *cond_ints)
    dy, dy64 = data.draw(arrays(y64.shape, dtype))
    want = run(make(np.float64), x64, [c64 for _, c64 in conds] + list(cond_ints), dy64)
    got = run(layer, x, [c for c, _ in conds] + list(cond_ints), dy)
    for k, (g, w) in enumerate(zip(got, want)):
        if w is None:
            assert g is None
            continue
        assert g.dtype == dtype, f"output {k}: dtype {g.dtype}, expected {dtype}"
        close(g, w, dtype, factor, f"{owner} output {k}")


@pytest.mark.parametrize("reference", FAMILIES)
@given(data=st.data())
def test_conv2d(data, reference):
    k, s, p = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 3)), data.draw(st.integers(0, 2))
    cin, cout, B = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4)), data.draw(st.integers(0, 3))
    H, W = data.draw(st.integers(max(1, k - 2 * p), 8)), data.draw(st.integers(max(1, k - 2 * p), 8))
    with reference_mode(reference):
        check_layer(data, lambda dt: nn.Conv2d(cin, cout, k, stride=s, padding=p, rng=1, dtype=dt),
                    (B, cin, H, W), owner="Conv2d")


@pytest.mark.parametrize("reference", FAMILIES)
@given(data=st.data())
def test_groupnorm_silu_and_upsample_conv(data, reference):
    G, per, B = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)), data.draw(st.integers(0, 3))
    spatial = tuple(data.draw(st.lists(st.integers(1, 5), min_size=1, max_size=2)))
    C = G * per
    with reference_mode(reference):
        check_layer(data, lambda dt: nn.GroupNormSiLU(G, C, dtype=dt), (B, C) + spatial, [(B, C)],
                    owner="GroupNormSiLU")
        check_layer(data, lambda dt: nn.GroupNorm(G, C, dtype=dt), (B, C) + spatial, owner="GroupNorm")
        if len(spatial) == 2:
            check_layer(data, lambda dt: nn.UpsampleConv(C, per, rng=2, dtype=dt), (B, C) + spatial,
                        owner="UpsampleConv")


@pytest.mark.parametrize("reference", FAMILIES)
@given(data=st.data())
def test_attention_and_resblock(data, reference):
    heads, d, B = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3)), data.draw(st.integers(0, 3))
    H, W = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    C = heads * d
    with reference_mode(reference):
        check_layer(data, lambda dt: nn.MultiheadAttention(C, heads, rng=3, dtype=dt), (B, C, H, W),
                    owner="MultiheadAttention")
        cout, skip = data.draw(st.sampled_from([2, 4])), data.draw(st.sampled_from([1, 3]))
        check_layer(data, lambda dt: nn.ResBlock(2, cout, 4, groups=2, skip_kernel=skip, rng=4, dtype=dt),
                    (B, 2, H, W), [(B, 4)], owner="ResBlock")


@given(data=st.data())
def test_dense_activations_pools(data):
    B = data.draw(st.integers(0, 3))
    lead = (B,) + tuple(data.draw(st.lists(st.integers(1, 3), max_size=2)))
    check_layer(data, lambda dt: nn.Dense(3, 2, rng=5, dtype=dt), lead + (3,), owner="Dense")
    for name, make in (("SiLU", nn.SiLU), ("GELU", nn.GELU), ("ReLU", nn.ReLU), ("Flatten", nn.Flatten)):
        check_layer(data, lambda dt: make(), lead + (3,), owner=name)
    k = data.draw(st.integers(1, 3))
    s = data.draw(st.integers(1, 3))
    hw = (data.draw(st.integers(k, 7)), data.draw(st.integers(k, 7)))
    for name, make in (("AvgPool2d", lambda: nn.AvgPool2d(k, s)), ("MaxPool2d", lambda: nn.MaxPool2d(k, s)),
                       ("Upsample", lambda: nn.Upsample(k))):
        check_layer(data, lambda dt: make(), (B, 2) + hw, owner=name)


@given(data=st.data())
def test_mlp(data):
    """The MLP, forward and backward, t drawn."""
    T, B = 10, data.draw(st.integers(0, 3))
    t = np.array(data.draw(st.lists(st.integers(0, T - 1), min_size=B, max_size=B)), dtype=np.int64)
    check_layer(data, lambda dt: MLP(2, 8, T, num_layers=2, seed=6, dtype=dt), (B, 2), owner="MLP", cond_ints=(t,))


@settings(max_examples=max(4, settings().max_examples // 3))          # a U-Net forward and backward per dtype
@given(data=st.data())
def test_unet(data):
    """A conditional two-level U-Net (the route follows the dtype and layout of x: reference or
    CPU kernels), forward and backward, t and labels drawn."""
    T, B = 10, data.draw(st.integers(0, 3))
    t = np.array(data.draw(st.lists(st.integers(0, T - 1), min_size=B, max_size=B)), dtype=np.int64)
    labels = np.array(data.draw(st.lists(st.integers(0, 3), min_size=B, max_size=B)), dtype=np.int64)
    size = data.draw(st.sampled_from([2, 4]))
    check_layer(data, lambda dt: UNet(1, 4, T, channel_multipliers=(1, 2), groups=2, attention_heads=2,
                                      num_classes=3, seed=7, dtype=dt),
                (B, 1, size, size), owner="UNet", factor=5.0, cond_ints=(t, labels))
