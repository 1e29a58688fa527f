"""Optimisers vs scalar references (and torch.optim), clipping, EMA, LR schedules."""
import math

import numpy as np
import pytest

from minidiff.models import MLP
from minidiff.optim import EMA, SGD, Adam, AdamW, clip_grad_norm, constant, cosine, warmup

STEPS = 5


def tiny_model(dtype=np.float64):
    return MLP(in_dim=2, d_hid=4, num_timesteps=10, num_layers=1, seed=0, dtype=dtype)


def grad_sequence(P, steps=STEPS, seed=1):
    return np.random.default_rng(seed).standard_normal((steps, P))   # (S, P)


def run(opt_cls, grads, **kw):
    """Apply the optimiser to the model with the given gradients; theta after each step."""
    model = tiny_model()
    theta, grad = model.flat()
    theta0 = theta.copy()
    opt = opt_cls(model, **kw)
    out = []
    for g in grads:
        grad[...] = g
        opt.step()
        out.append(theta.copy())
    return theta0, out


# --- scalar references (one parameter at a time, plain Python floats) ------
def sgd_ref(p, gs, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    b, out = None, []
    for g in gs:
        g = g + weight_decay * p
        if momentum:
            b = g if b is None else momentum * b + g
            g = g + momentum * b if nesterov else b
        p = p - lr * g
        out.append(p)
    return out


def adam_ref(p, gs, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
    b1, b2 = betas
    m = v = 0.0
    out = []
    for t, g in enumerate(gs, start=1):
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        p = p - lr * m_hat / (math.sqrt(v_hat) + eps)
        out.append(p)
    return out


CASES = [
    (SGD, sgd_ref, dict(lr=0.1)),
    (SGD, sgd_ref, dict(lr=0.1, momentum=0.9)),
    (SGD, sgd_ref, dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    (Adam, adam_ref, dict(lr=1e-2)),
    (Adam, adam_ref, dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    (AdamW, lambda p, gs, **kw: adam_ref(p, gs, decoupled=True, **kw), dict(lr=1e-2, weight_decay=0.1)),
]


@pytest.mark.parametrize("opt_cls,ref,kw", CASES)
def test_optimizer_matches_scalar_reference(opt_cls, ref, kw):
    model = tiny_model()
    grads = grad_sequence(model.num_params())
    theta0, thetas = run(opt_cls, grads, **kw)
    for i in range(0, theta0.size, 7):      # every 7th parameter is plenty
        expected = ref(float(theta0[i]), [float(g) for g in grads[:, i]], **kw)
        got = [float(th[i]) for th in thetas]
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


def test_adamw_default_decay_differs_from_adam():
    model = tiny_model()
    grads = grad_sequence(model.num_params(), steps=2)
    _, a = run(Adam, grads, lr=1e-2)
    _, w = run(AdamW, grads, lr=1e-2)
    assert not np.allclose(a[-1], w[-1])


TORCH_CASES = [
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.1)),
    ("Adam", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.05)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1)),
]


@pytest.mark.parametrize("name,kw", TORCH_CASES)
def test_optimizer_matches_torch(name, kw):
    torch = pytest.importorskip("torch")
    ours = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}[name]
    model = tiny_model()
    grads = grad_sequence(model.num_params(), steps=8)
    theta0, thetas = run(ours, grads, **kw)
    p = torch.nn.Parameter(torch.tensor(theta0, dtype=torch.float64))
    topt = getattr(torch.optim, name)([p], **kw)
    for g, ours_theta in zip(grads, thetas):
        p.grad = torch.tensor(g, dtype=torch.float64)
        topt.step()
        np.testing.assert_allclose(ours_theta, p.detach().numpy(), rtol=1e-6, atol=1e-12)


def test_float32_step_keeps_dtype():
    model = tiny_model(np.float32)
    opt = Adam(model)
    theta, grad = model.flat()
    grad[...] = 1.0
    before = theta.copy()
    opt.step()
    assert theta.dtype == np.float32 and opt.m.dtype == np.float32
    np.testing.assert_allclose(before - theta, 1e-3, rtol=1e-3)   # first Adam step is lr * sign(g)


@pytest.mark.parametrize("make", [
    lambda m: Adam(m, lr=0.0),
    lambda m: Adam(m, lr=-1.0),
    lambda m: Adam(m, betas=(1.0, 0.999)),
    lambda m: Adam(m, betas=(0.9,)),
    lambda m: Adam(m, eps=-1.0),
    lambda m: AdamW(m, weight_decay=-0.1),
    lambda m: SGD(m, lr=float("nan")),
    lambda m: SGD(m, lr=0.1, momentum=-0.5),
    lambda m: SGD(m, lr=0.1, nesterov=True),
])
def test_bad_hyperparameters_raise(make):
    with pytest.raises(ValueError):
        make(tiny_model())


def test_lr_setter_validates_and_takes_effect():
    model = tiny_model()
    opt = SGD(model, lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -1
    opt.lr = 0.0   # a schedule may reach zero
    theta, grad = model.flat()
    grad[...] = 1.0
    before = theta.copy()
    opt.step()
    np.testing.assert_array_equal(theta, before)


@pytest.mark.parametrize("opt_cls,kw", [(Adam, {}), (AdamW, {}), (SGD, dict(lr=0.1, momentum=0.9))])
def test_state_dict_roundtrip_continues_identically(opt_cls, kw):
    grads = grad_sequence(tiny_model().num_params(), steps=6)
    a_model, b_model = tiny_model(), tiny_model()
    a = opt_cls(a_model, **kw)
    for g in grads[:3]:
        a_model.flat()[1][...] = g
        a.step()
    b_model.load_state_dict(a_model.state_dict())
    state = {**a.state_dict(), "state": {k: v.copy() for k, v in a.state_dict()["state"].items()}}
    b = opt_cls(b_model, lr=0.5)
    b.load_state_dict(state)
    assert b.lr == a.lr and b.step_count == 3
    for g in grads[3:]:
        for model, opt in ((a_model, a), (b_model, b)):
            model.flat()[1][...] = g
            opt.step()
    np.testing.assert_array_equal(a_model.flat()[0], b_model.flat()[0])


def test_load_state_dict_rejects_other_type_and_shape():
    opt = Adam(tiny_model())
    with pytest.raises(ValueError, match="SGD"):
        opt.load_state_dict(SGD(tiny_model(), lr=0.1).state_dict())
    bad = opt.state_dict()
    bad["state"] = {"m": np.zeros(3), "v": np.zeros(3)}
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(bad)


# --- clipping -------------------------------------------------------------
def test_clip_grad_norm_scales_to_max_norm():
    g = np.array([3.0, 4.0, 0.0])
    norm = clip_grad_norm(g, 1.0)
    assert isinstance(norm, np.ndarray) and norm.shape == ()
    assert float(norm) == pytest.approx(5.0)
    np.testing.assert_allclose(g, [0.6, 0.8, 0.0], rtol=1e-6)


def test_clip_grad_norm_leaves_small_gradients_and_takes_a_model():
    model = tiny_model()
    _, grad = model.flat()
    grad[...] = np.random.default_rng(0).standard_normal(grad.shape)
    before = grad.copy()
    norm = float(clip_grad_norm(model, 1e6))
    assert norm == pytest.approx(np.linalg.norm(before))
    np.testing.assert_array_equal(grad, before)
    clip_grad_norm(model, 0.5)
    assert np.linalg.norm(grad) == pytest.approx(0.5, rel=1e-5)
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm(model, 0)


# --- EMA ------------------------------------------------------------------
def test_ema_formula():
    model = tiny_model()
    theta, _ = model.flat()
    ema = EMA(model, decay=0.9)
    expected = theta.copy()
    rng = np.random.default_rng(0)
    for _ in range(3):
        theta[...] = rng.standard_normal(theta.shape)
        ema.update()
        expected = 0.9 * expected + 0.1 * theta
    np.testing.assert_allclose(ema.shadow, expected, rtol=1e-12)


def test_ema_warmup_decay():
    ema = EMA(tiny_model(), decay=0.999, warmup=True)
    assert ema.current_decay() == pytest.approx(1 / 10)
    ema.update()
    assert ema.current_decay() == pytest.approx(2 / 11)
    ema.num_updates = 10 ** 6
    assert ema.current_decay() == 0.999


def test_ema_applied_swaps_and_restores():
    model = tiny_model()
    theta, _ = model.flat()
    ema = EMA(model, decay=0.5)
    trained = theta + 1.0
    theta[...] = trained
    ema.update()   # shadow = theta0 + 0.5
    with ema.applied(model):
        np.testing.assert_array_equal(theta, ema.shadow)
        assert not np.array_equal(theta, trained)
    np.testing.assert_array_equal(theta, trained)
    ema.copy_to(model)
    np.testing.assert_array_equal(theta, ema.shadow)


def test_ema_state_dict_roundtrip_and_validation():
    model = tiny_model()
    ema = EMA(model, decay=0.9)
    model.flat()[0][...] += 1.0
    ema.update()
    other = EMA(tiny_model(), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.decay == 0.9 and other.num_updates == 1
    np.testing.assert_array_equal(other.shadow, ema.shadow)
    with pytest.raises(ValueError, match="decay"):
        EMA(model, decay=1.0)


# --- LR schedules -----------------------------------------------------------
def test_schedules_values():
    assert constant()(0) == constant()(10 ** 6) == 1.0
    w = warmup(4)
    assert [w(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    c = cosine(10)
    assert c(0) == 1.0
    assert c(5) == pytest.approx(0.5)
    assert c(10) == pytest.approx(0.0) and c(20) == pytest.approx(0.0)
    c = cosine(12, warmup_steps=2, min_factor=0.1)
    assert c(0) == 0.5 and c(1) == 1.0 and c(2) == 1.0
    assert c(7) == pytest.approx(0.1 + 0.9 * 0.5)
    assert c(12) == pytest.approx(0.1)
    factors = [c(s) for s in range(2, 13)]
    assert all(a >= b for a, b in zip(factors, factors[1:]))   # monotone decay after warmup


@pytest.mark.parametrize("make", [lambda: warmup(0), lambda: cosine(0), lambda: cosine(5, warmup_steps=5),
                                  lambda: cosine(5, min_factor=2.0)])
def test_schedule_arguments_validated(make):
    with pytest.raises(ValueError):
        make()


def test_device_arrays_match_host():
    """The CuPy-like test backend refuses implicit host/device copies; results equal the host's."""
    from fakecupy import xp
    from minidiff.backend import to_host

    grads = grad_sequence(tiny_model().num_params(), steps=3)
    out = []
    for device in ("cpu", xp):
        model = tiny_model().to(device)
        theta, grad = model.flat()
        opts = [AdamW(model, lr=1e-2), SGD(model, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)]
        ema = EMA(model, decay=0.9, warmup=True)
        for g in grads:
            grad[...] = xp.asarray(g) if device is xp else g
            norm = clip_grad_norm(model, 1.0)
            for opt in opts:
                opt.step()
            ema.update()
        assert type(norm) is type(theta) and norm.shape == ()
        with ema.applied(model):
            in_ema = to_host(theta).copy()
        out.append((to_host(theta), in_ema, float(to_host(norm))))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])
    assert out[0][2] == out[1][2]


@pytest.mark.parametrize("opt_cls", [SGD, Adam, AdamW])
def test_learning_rate_must_be_finite_in_the_parameters_dtype(opt_cls):
    model32 = tiny_model(np.float32)
    for lr in (1e39, float("inf"), float("nan")):
        with pytest.raises(ValueError, match=r"lr.*float32"):
            opt_cls(model32, lr=lr)
    opt = opt_cls(model32, lr=1e-3)
    with pytest.raises(ValueError, match=r"lr.*float32.*1e\+39"):
        opt.lr = 1e39
    assert opt.lr == 1e-3
    assert opt_cls(tiny_model(np.float64), lr=1e39).lr == 1e39      # finite in float64
