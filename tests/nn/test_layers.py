"""The basic layers, containers and the MLP: gradients, protocol, bookkeeping."""
import numpy as np
import pytest

from gradcheck import assert_gradients, check_gradients
from minidiff.models import MLP
from minidiff.nn import (GELU, ConditionalChain, ConditionalSum, Dense, Embedding, ReLU, Sequential, SiLU,
                         SinusoidalPositionEmbedding, sinusoidal_table)

F64 = dict(dtype=np.float64)


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("layer", [Dense(5, 3, **F64), Dense(4, 6, bias=False, **F64), SiLU(),
                                   GELU("tanh"), GELU("none"), Sequential(Dense(3, 4, **F64), SiLU(), Dense(4, 2, **F64))])
def test_layer_gradients(layer):
    x = rand(6, layer.in_features if isinstance(layer, Dense) else 3)
    assert_gradients(layer, x)


def test_relu_gradient_away_from_kink():
    x = rand(5, 4)
    x[np.abs(x) < 1e-3] = 0.5                 # the derivative is undefined at 0
    assert_gradients(ReLU(), x)


def test_dense_matches_formula_and_torch_layout():
    d = Dense(3, 2, **F64)
    x = rand(4, 3)
    np.testing.assert_allclose(d.forward(x), x @ d.params["weight"].T + d.params["bias"])
    assert d.params["weight"].shape == (2, 3)
    with pytest.raises(ValueError, match="expected 3"):
        d.forward(rand(4, 5))


def test_dense_on_leading_dims_and_transposed_views():
    """A (B, N, in) input, also a transposed view (the attention's tokens): the same values
    as per-row products, and gradients by central differences."""
    d = Dense(4, 3, **F64)
    x = rand(2, 4, 5).transpose(0, 2, 1)                # (2, 5, 4), not contiguous
    y = d.forward(x)
    assert y.shape == (2, 5, 3)
    np.testing.assert_allclose(y, np.einsum("bni,oi->bno", x, d.params["weight"]) + d.params["bias"])
    assert d.backward(np.ones_like(y)).shape == x.shape
    assert_gradients(Dense(4, 3, **F64), x)


def test_activation_values():
    x = np.linspace(-30, 30, 13)
    # sigmoid as (1 + tanh(x/2))/2: no overflow; relative precision only fades far in the negative tail
    np.testing.assert_allclose(SiLU().forward(x), x / (1 + np.exp(-x)), rtol=1e-12, atol=1e-15)
    near = np.linspace(-8, 8, 33)
    np.testing.assert_allclose(SiLU().forward(near), near / (1 + np.exp(-near)), rtol=1e-12)
    from scipy.special import erf
    np.testing.assert_allclose(GELU("none").forward(x), 0.5 * x * (1 + erf(x / np.sqrt(2))))
    np.testing.assert_allclose(GELU("tanh").forward(x), GELU("none").forward(x), atol=1e-3)
    with pytest.raises(ValueError, match="approximate"):
        GELU("erf")
    assert SiLU().forward(np.ones(3, np.float32)).dtype == np.float32


def test_sinusoidal_table_formula():
    tab = sinusoidal_table(10, 8)                                  # (10, 8)
    k = np.arange(4)
    w = 10000.0 ** (-k / 3)
    np.testing.assert_allclose(tab[7], np.r_[np.sin(7 * w), np.cos(7 * w)])
    emb = SinusoidalPositionEmbedding(10, 8)
    assert emb.forward(np.array([7, 0])).shape == (2, 8) and emb.backward(np.ones((2, 8))) is None
    assert emb.num_params() == 0
    with pytest.raises(ValueError):
        sinusoidal_table(10, 7)


def test_embedding_gradient_accumulates_repeated_labels():
    e = Embedding(4, 3, **F64)
    labels = np.array([1, 3, 1, 0])
    dy = rand(4, 3)
    e.forward(labels)
    e.backward(dy)
    expected = np.zeros((4, 3))
    np.add.at(expected, labels, dy)
    np.testing.assert_allclose(e.grads["weight"], expected)


def test_conditional_sum_and_chain_route_the_condition():
    rng = np.random.default_rng(0)
    t_branch = Sequential(SinusoidalPositionEmbedding(10, 4, **F64), Dense(4, 4, rng=rng, **F64))
    block = ConditionalSum(Dense(2, 4, rng=rng, **F64), t_branch)
    chain = ConditionalChain(block, SiLU(), Dense(4, 2, rng=rng, **F64))
    x, t = rand(5, 2), np.array([0, 3, 9, 3, 1])
    manual = SiLU().forward(block.f.forward(x) + t_branch.forward(t))
    np.testing.assert_allclose(chain.forward(x, t), chain.layers[2].forward(manual))
    assert_gradients(chain, x, t)


@pytest.mark.parametrize("activation", ["swish", "gelu"])
def test_whole_mlp_gradients(activation):
    model = MLP(d_hid=8, num_timesteps=10, activation=activation).astype(np.float64)
    errors = assert_gradients(model, rand(7, 2), np.array([0, 1, 9, 4, 4, 2, 7]))
    assert len(errors) == 1 + 2 * 7                  # the input + weight and bias of 7 Dense layers


def test_gradient_check_catches_a_wrong_backward():
    class Broken(Dense):
        def backward(self, dy):
            super().backward(dy)
            self.grads["bias"] *= 1.001              # a 0.1% error must be caught
            return dy @ self.params["weight"]
    errors = check_gradients(Broken(3, 2, **F64), rand(4, 3))
    assert errors["bias"] > 1e-4


def test_parameters_bookkeeping():
    m = MLP(d_hid=32, num_timesteps=40)
    # 3 x (Dense(in, 32) + Dense(32, 32)) + Dense(32, 2); in = 2 then 32
    expected = (2 * 32 + 32) + 2 * (32 * 32 + 32) + 3 * (32 * 32 + 32) + (32 * 2 + 2)
    assert m.num_params() == expected == 5442
    assert "Dense(2 => 32)" in repr(m) and "SinusoidalPositionEmbedding(40, 32)" in repr(m)
    theta, grad = m.flat()
    assert theta.shape == (expected,) and theta.dtype == np.float32
    w = m.layers[0].f.params["weight"]
    assert np.shares_memory(w, theta)                # layers hold views into the flat vector
    theta += 1.0
    np.testing.assert_array_equal(m.layers[0].f.params["weight"], w)
    m.forward(rand(3, 2).astype(np.float32), np.array([1, 2, 3]))
    m.backward(np.ones((3, 2), np.float32))
    assert np.abs(grad).sum() > 0
    m.zero_grad()
    assert not grad.any()
    state = {k: v.copy() for k, v in m.state_dict().items()}
    m2 = MLP(d_hid=32, num_timesteps=40, seed=1)
    m2.load_state_dict(state)
    np.testing.assert_array_equal(m2.flat()[0], theta)
    with pytest.raises(ValueError, match="shape"):
        MLP(d_hid=16, num_timesteps=40).load_state_dict(state)


def test_astype_keeps_flat_views_and_backward_adds():
    m = MLP(d_hid=8, num_timesteps=10)
    m.flat()
    m.astype(np.float64)
    theta, grad = m.flat()
    assert theta.dtype == np.float64 and np.shares_memory(m.layers[-1].params["bias"], theta)
    x, t = rand(4, 2), np.array([0, 1, 2, 3])
    m.forward(x, t)
    m.backward(np.ones((4, 2)))
    once = grad.copy()
    m.forward(x, t)
    m.backward(np.ones((4, 2)))
    np.testing.assert_allclose(grad, 2 * once)       # backward adds into grads


@pytest.mark.parametrize("kw", [dict(activation="tanh"), dict(d_hid=0), dict(num_layers=1.5)])
def test_mlp_bad_arguments(kw):
    with pytest.raises(ValueError):
        MLP(**kw)


def test_mlp_bad_input_shape():
    with pytest.raises(ValueError, match="x must be"):
        MLP().forward(np.zeros((4, 3), np.float32), np.zeros(4, int))
