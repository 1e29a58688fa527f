"""Every layer of minidiff.nn: forward and backward give the same numbers whatever the memory
layout of the input and of dy (Fortran order, permuted, strided, reversed views), for a batch
of 1 and more; an empty batch is refused by name before any work."""
import numpy as np
import pytest

from layouts import NON_C, as_layout, assert_same_results
import minidiff.nn as nn
from minidiff.kernels import reference_mode


def _layers():
    """{name: (make_layer, x shape for B = 1, conditioning builder (B -> tuple) or None)}."""
    return {
        "Dense": (lambda: nn.Dense(4, 3, rng=0, dtype=np.float64), (1, 5, 4), None),
        "Conv2d": (lambda: nn.Conv2d(2, 3, 3, padding=1, rng=0, dtype=np.float64), (1, 2, 5, 5), None),
        "Conv2d_4x4s2": (lambda: nn.Conv2d(2, 3, 4, stride=2, padding=1, rng=0, dtype=np.float64), (1, 2, 6, 6), None),
        "GroupNorm": (lambda: nn.GroupNorm(2, 4, dtype=np.float64), (1, 4, 3, 3), None),
        "GroupNormSiLU": (lambda: nn.GroupNormSiLU(2, 4, dtype=np.float64), (1, 4, 3, 3),
                          lambda B: (np.random.default_rng(9).standard_normal((B, 4)),)),
        "MultiheadAttention": (lambda: nn.MultiheadAttention(4, 2, rng=0, dtype=np.float64), (1, 4, 3, 3), None),
        "ResBlock": (lambda: nn.ResBlock(4, 8, 6, groups=2, rng=0, dtype=np.float64), (1, 4, 4, 4),
                     lambda B: (np.random.default_rng(9).standard_normal((B, 6)),)),
        "ConvEmbed": (lambda: nn.ConvEmbed(4, 4, 6, groups=2, rng=0, dtype=np.float64), (1, 4, 4, 4),
                      lambda B: (np.random.default_rng(9).standard_normal((B, 6)),)),
        "UpsampleConv": (lambda: nn.UpsampleConv(2, 3, rng=0, dtype=np.float64), (1, 2, 3, 3), None),
        "SiLU": (nn.SiLU, (1, 2, 3), None),
        "GELU": (nn.GELU, (1, 2, 3), None),
        "GELU_exact": (lambda: nn.GELU("none"), (1, 2, 3), None),
        "ReLU": (nn.ReLU, (1, 2, 3), None),
        "Upsample": (nn.Upsample, (1, 2, 3, 3), None),
        "AvgPool2d": (lambda: nn.AvgPool2d(2), (1, 2, 4, 4), None),
        "MaxPool2d": (lambda: nn.MaxPool2d(2), (1, 2, 4, 4), None),
        "Flatten": (nn.Flatten, (1, 2, 3, 3), None),
    }


def _forward_backward(make, x, cond, dy):
    layer = make()
    y = layer.forward(x, *cond)
    dx = layer.backward(dy)
    grads = {k: g.copy() for k, g in layer.grads.items()}
    return y, dx, grads.get("weight"), getattr(layer, "d_emb", getattr(layer, "d_shift", None))


@pytest.mark.parametrize("reference", [True, False])
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("name", sorted(_layers()))
def test_any_layout_any_batch(name, B, reference):
    make, shape, cond = _layers()[name]
    rng = np.random.default_rng(B)
    x = rng.standard_normal((B,) + shape[1:])
    c = cond(B) if cond else ()
    y = make().forward(x, *c)
    dy = rng.standard_normal(y.shape)
    with reference_mode(reference):
        want = _forward_backward(make, x, c, dy)
        for layout in NON_C:
            assert_same_results(_forward_backward(make, as_layout(x, layout), c, dy), want, f"{name} x {layout}")
            assert_same_results(_forward_backward(make, x, c, as_layout(dy, layout)), want, f"{name} dy {layout}")
            if c:
                assert_same_results(_forward_backward(make, x, tuple(as_layout(a, layout) for a in c), dy), want,
                                    f"{name} conditioning {layout}")


@pytest.mark.parametrize("name", sorted(_layers()))
def test_empty_batch_is_refused_by_name(name):
    make, shape, cond = _layers()[name]
    layer = make()
    x = np.zeros((0,) + shape[1:])
    owner = name.split("_")[0]
    with pytest.raises(ValueError, match=rf"{owner}: x must be a batch of B >= 1 samples, got an empty batch "
                                         rf"\({0}, "):
        layer.forward(x, *(cond(0) if cond else ()))


def test_embeddings_refuse_an_empty_batch():
    for layer, name in ((nn.Embedding(3, 4), "labels"), (nn.SinusoidalPositionEmbedding(10, 4), "t")):
        with pytest.raises(ValueError, match=rf"{type(layer).__name__}: {name} must be a batch of B >= 1"):
            layer.forward(np.zeros(0, np.int64))


def test_resblock_parts_any_layout():
    """A ResBlock's input given as channel parts (the U-Net's skip concatenation), each in any layout."""
    rng = np.random.default_rng(4)
    parts = (rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((2, 1, 4, 4)))
    emb, dy = rng.standard_normal((2, 6)), rng.standard_normal((2, 8, 4, 4))
    make = lambda: nn.ResBlock(4, 8, 6, groups=2, rng=0, dtype=np.float64)   # noqa: E731
    want = _forward_backward(make, parts, (emb,), dy)
    for layout in NON_C:
        got = _forward_backward(make, tuple(as_layout(p, layout) for p in parts), (emb,), dy)
        assert_same_results(got, want, f"ResBlock parts {layout}")
    with nn.no_grad():
        fused = make().forward(tuple(as_layout(p, "F") for p in parts), emb)
    np.testing.assert_allclose(fused, want[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("call, message", [
    (lambda: nn.Dense(0, 3), r"Dense: in_features and out_features must be positive integers, got 0, 3"),
    (lambda: nn.Dense("a", 3), r"Dense: in_features and out_features must be positive integers, got 'a', 3"),
    (lambda: nn.Embedding(0, 4), r"Embedding: num_embeddings and dim must be positive integers, got 0, 4"),
    (lambda: nn.SinusoidalPositionEmbedding(0, 4), r"SinusoidalPositionEmbedding: num_positions must be a "
                                                   r"positive integer, got 0"),
    (lambda: nn.Embedding(3, 4).forward(np.array([0, 3])), r"Embedding: labels must be in \[0, 2\], got values in "
                                                           r"\[0, 3\]"),
    (lambda: nn.Embedding(3, 4).forward(np.array([0.5])), r"Embedding: labels must be an integer array"),
    (lambda: nn.SinusoidalPositionEmbedding(10, 4).forward(np.array([10])), r"SinusoidalPositionEmbedding: t must "
                                                                          r"be in \[0, 9\], got values in \[10, 10\]"),
])
def test_constructor_and_index_checks(call, message):
    """Each used to be a raw OverflowError, IndexError or int() error, or an empty layer."""
    with pytest.raises(ValueError, match=message):
        call()
