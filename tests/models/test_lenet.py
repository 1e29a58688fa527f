"""LeNet-5: shapes, float64 gradient checks (sampled entries), the cross-entropy gradient, training."""
import numpy as np
import pytest

from gradcheck import check_gradients, numerical_grad, rel_error
from minidiff.models.lenet import LeNet5, softmax_cross_entropy


@pytest.mark.parametrize("activation,pool", [("relu", "max"), ("silu", "avg")])
def test_lenet_gradients_float64(activation, pool):
    model = LeNet5(seed=1, activation=activation, pool=pool, dtype=np.float64)
    x = np.random.default_rng(2).uniform(-1, 1, (2, 1, 28, 28))      # (B, 1, 28, 28)
    errors = check_gradients(model, x, max_entries=12, max_input_entries=12)
    assert len(errors) == 1 + 10                                      # input + 5 weights + 5 biases
    worst = max(errors, key=errors.get)
    assert errors[worst] <= 1e-6, f"{worst}: {errors[worst]:.2e} (all: {errors})"


def test_lenet_shapes_and_features():
    model = LeNet5()
    assert model.num_params() == 156 + 2416 + 48120 + 10164 + 850
    x = np.random.default_rng(0).uniform(-1, 1, (3, 1, 28, 28)).astype(np.float32)
    logits = model.forward(x)
    assert logits.shape == (3, 10) and logits.dtype == np.float32
    f = model.features(x)
    assert f.shape == (3, 84) and np.all(f >= 0)                      # after a ReLU
    np.testing.assert_allclose(f @ model.head.params["weight"].T + model.head.params["bias"],
                               logits, rtol=1e-5, atol=1e-6)
    assert model.config == dict(num_classes=10, seed=0, activation="relu", pool="max")
    np.testing.assert_array_equal(LeNet5(**model.config).forward(x), logits)   # rebuilt from config
    with pytest.raises(ValueError, match="28, 28"):
        model.forward(x[:, :, :27])
    with pytest.raises(ValueError, match="activation"):
        LeNet5(activation="tanh")


def test_softmax_cross_entropy_value_and_gradient():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((5, 10)) * 3                          # (B, K) float64
    labels = rng.integers(0, 10, 5)
    loss, dlogits = softmax_cross_entropy(logits, labels)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(5), labels])), rel=1e-12)
    numeric = numerical_grad(lambda: softmax_cross_entropy(logits, labels)[0], logits)
    assert rel_error(dlogits, numeric) <= 1e-6
    np.testing.assert_allclose(dlogits.sum(axis=1), 0, atol=1e-12)
    # huge logits stay finite
    loss, d = softmax_cross_entropy(np.array([[1000.0, -1000.0]]), np.array([0]))
    assert loss == pytest.approx(0.0, abs=1e-12) and np.all(np.isfinite(d))


def test_softmax_cross_entropy_bad_labels():
    with pytest.raises(ValueError, match="labels must be in"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="labels must be 2 integers"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0]))


def test_a_few_adam_steps_fit_a_tiny_batch():
    from minidiff.judge import train_judge
    rng = np.random.default_rng(4)
    y = np.arange(8) % 2                                               # two classes
    x = rng.uniform(-1, -0.5, (8, 1, 28, 28)).astype(np.float32)
    x[y == 1, :, 10:18, 10:18] = 1.0                                   # class 1 has a bright square
    model, history = train_judge(x, y, x, y, epochs=15, batch_size=8, lr=3e-3, max_shift=0,
                                 progress=False, log=None)
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["test_accuracy"][-1] == 1.0


def test_random_shift_moves_whole_images():
    from minidiff.judge import random_shift
    rng = np.random.default_rng(5)
    x = -np.ones((50, 1, 28, 28), np.float32)
    x[:, :, 10:18, 10:18] = 1.0                                        # an 8x8 square, away from edges
    y = random_shift(x, rng, max_shift=2)
    assert y.shape == x.shape
    assert np.all(y.sum(axis=(1, 2, 3)) == x.sum(axis=(1, 2, 3)))     # nothing cut off, -1 fill
    rows = np.argmax(y[:, 0].max(axis=2) > 0, axis=1)                  # first bright row
    assert set(rows) <= set(range(8, 13)) and len(set(rows)) > 1
    assert random_shift(x, rng, max_shift=0) is x


def test_load_judge_roundtrip(tmp_path):
    pytest.importorskip("h5py")
    from minidiff.checkpoint import save_checkpoint
    from minidiff.judge import load_judge
    with pytest.raises(FileNotFoundError, match="python -m minidiff.judge"):
        load_judge(tmp_path / "none.h5", train_if_missing=False)
    model = LeNet5(seed=3, pool="avg")
    save_checkpoint(tmp_path / "j.h5", model)
    judge = load_judge(tmp_path / "j.h5", train_if_missing=False)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 1, 28, 28)).astype(np.float32)
    assert isinstance(judge, LeNet5)
    np.testing.assert_array_equal(judge.forward(x), model.forward(x))
