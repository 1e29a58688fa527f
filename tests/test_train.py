"""The training loop: learning, exact resume, NaN handling, labels, validation, data checks."""
import numpy as np
import pytest

from minidiff.checkpoint import load_checkpoint
from minidiff.models import MLP
from minidiff.optim import EMA, SGD, Adam, cosine, warmup
from minidiff.train import NonFiniteError, train

T = 10


class Denoiser:
    """A stand-in for GaussianDiffusion: predict the noise added to x0 (same p_losses signature)."""

    def __init__(self, model, nan_grad_at=None):
        self.model, self.calls, self.seen = model, 0, []
        self.nan_grad_at = nan_grad_at

    def p_losses(self, x0, t=None, noise=None, labels=None, loss="mse", rng=None):
        B = x0.shape[0]
        t = rng.integers(0, T, size=B) if t is None else t                       # (B,)
        noise = rng.standard_normal(x0.shape).astype(x0.dtype) if noise is None else noise
        out = self.model.forward(x0 + 0.5 * noise, t)                            # (B, 2)
        diff = out - noise
        self.calls += 1
        self.seen.append((x0, labels))
        d_out = diff * (2.0 / diff.size)
        if self.calls == self.nan_grad_at:
            d_out[0, 0] = np.nan
        return np.asarray((diff * diff).mean()), d_out


def make(dtype=np.float64, seed=0):
    """A small MLP standing in for a label-conditioned model: it declares two classes and ignores the
    labels (these tests check the loop's handling of labels; the plain MLP refuses them)."""
    model = MLP(in_dim=2, d_hid=8, num_timesteps=T, num_layers=2, seed=seed, dtype=dtype)
    model.num_classes = 2
    model.forward = lambda x, t, labels=None: MLP.forward(model, x, t)
    return model


def data(n=48, dtype=np.float64):
    x = np.random.default_rng(1).standard_normal((n, 2)).astype(dtype)   # (N, 2)
    return x, (1 + (x[:, 0] > 0)).astype(np.int64)                        # classes 1..2


def test_loss_decreases_and_history_shapes():
    model = make()
    x, _ = data(64)
    hist = train(Denoiser(model), x, epochs=6, batch_size=16, optimizer=Adam(model, lr=2e-2),
                 progress=False)
    assert len(hist["train_loss"]) == 6 and len(hist["epoch_time"]) == 6
    assert len(hist["batch_loss"]) == 6 * 4 and hist["val_loss"] == []
    assert np.mean(hist["batch_loss"][-4:]) < np.mean(hist["batch_loss"][:4])


def test_progress_bar_runs(capsys):
    model = make()
    x, _ = data(16)
    hist = train(Denoiser(model), x, epochs=1, batch_size=8, optimizer=Adam(model), progress=True)
    assert len(hist["batch_loss"]) == 2
    assert "train" in capsys.readouterr().err


def full_run(diffusion_factory, tmp_path, epochs, resume, name="ck.h5"):
    model = make()
    x, y = data()
    opt, ema = Adam(model, lr=1e-2), EMA(model, decay=0.9)
    hist = train(diffusion_factory(model), x, epochs=epochs, batch_size=10, optimizer=opt, ema=ema,
                 labels=y, prob_uncond=0.3, grad_clip=0.5, lr_schedule=cosine(25, warmup_steps=3),
                 val_fraction=0.25, checkpoint_path=tmp_path / name, resume=resume, seed=3,
                 progress=False)
    return model, opt, ema, hist


def check_resume_identical(diffusion_factory, tmp_path):
    a_model, a_opt, a_ema, a_hist = full_run(diffusion_factory, tmp_path, 4, False, "a.h5")
    full_run(diffusion_factory, tmp_path, 2, False, "b.h5")
    b_model, b_opt, b_ema, b_hist = full_run(diffusion_factory, tmp_path, 4, True, "b.h5")  # fresh objects
    assert np.array_equal(a_model.flat()[0], b_model.flat()[0])
    assert np.array_equal(a_ema.shadow, b_ema.shadow)
    assert np.array_equal(a_opt.v, b_opt.v) and a_opt.lr == b_opt.lr
    assert a_hist == {**b_hist, "epoch_time": a_hist["epoch_time"]}
    assert load_checkpoint(tmp_path / "b.h5").extra["epoch"] == 4


def test_resume_is_bit_identical(tmp_path):
    check_resume_identical(Denoiser, tmp_path)


def test_resume_when_finished_or_missing(tmp_path):
    model = make()
    x, _ = data(20)
    path = tmp_path / "ck.h5"
    h1 = train(Denoiser(model), x, epochs=2, batch_size=10, optimizer=Adam(model), checkpoint_path=path,
               resume=True, progress=False)   # no checkpoint yet: starts from scratch
    assert len(h1["train_loss"]) == 2
    before = model.flat()[0].copy()
    d = Denoiser(model)
    h2 = train(d, x, epochs=2, batch_size=10, optimizer=Adam(model), checkpoint_path=path,
               resume=True, progress=False)
    assert d.calls == 0 and h2["train_loss"] == h1["train_loss"]
    np.testing.assert_array_equal(model.flat()[0], before)


class NaNAt:
    """Callback: remember the weights after each epoch; poison them at (epoch, batch)."""

    def __init__(self, model, epoch, batch):
        self.model, self.at, self.saved = model, (epoch, batch), []

    def on_batch_end(self, epoch, batch, loss):
        if (epoch, batch) == self.at:
            self.model.flat()[0][0] = np.nan

    def on_epoch_end(self, epoch, history):
        self.saved.append(self.model.flat()[0].copy())


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path):
    model = make()
    x, _ = data(40)
    path = tmp_path / "ck.h5"
    cb = NaNAt(model, epoch=1, batch=1)
    with pytest.raises(FloatingPointError, match=r"loss.*epoch 2, batch 3/4"):
        train(Denoiser(model), x, epochs=3, batch_size=10, optimizer=Adam(model), checkpoint_path=path,
              callbacks=[cb], progress=False)
    ck = load_checkpoint(path)
    assert ck.extra["epoch"] == 1 and len(cb.saved) == 1
    np.testing.assert_array_equal(ck.model.flat()[0], cb.saved[0])


def test_nan_gradient_stops_before_the_update(tmp_path):
    model = make()
    x, _ = data(40)
    for clip in (None, 1.0):
        before = model.flat()[0].copy()
        with pytest.raises(NonFiniteError, match=r"gradient.*epoch 1, batch 2/4"):
            train(Denoiser(model, nan_grad_at=2), x, epochs=1, batch_size=10, optimizer=SGD(model, lr=0.1),
                  grad_clip=clip, progress=False)
        assert np.isfinite(model.flat()[0]).all()
        assert not np.array_equal(model.flat()[0], before)   # the first batch was applied


def test_labels_follow_their_rows_and_are_dropped():
    model = make()
    x, y = data(400)
    d = Denoiser(model)
    train(d, x, epochs=1, batch_size=50, optimizer=Adam(model), labels=y, prob_uncond=0.5, progress=False)
    xs = np.concatenate([s[0] for s in d.seen])
    labs = np.concatenate([s[1] for s in d.seen])
    kept = labs != 0
    np.testing.assert_array_equal(labs[kept], 1 + (xs[kept, 0] > 0))
    assert 0.35 < 1 - kept.mean() < 0.65
    assert np.array_equal(np.sort(xs, axis=0), np.sort(x, axis=0))   # each sample once per epoch

    d = Denoiser(model)
    train(d, x, epochs=1, batch_size=50, optimizer=Adam(model), labels=y, progress=False)
    assert all((s[1] != 0).all() for s in d.seen)


def test_validation_loss_uses_fixed_noise():
    model = make()
    x, _ = data(40)
    opt = SGD(model, lr=0.1)
    opt.lr = 0.0   # weights never change, so the validation loss must not either
    hist = train(Denoiser(model), x, epochs=3, batch_size=10, optimizer=opt, val_fraction=0.25,
                 progress=False)
    assert len(hist["val_loss"]) == 3 and hist["val_loss"][0] == hist["val_loss"][2]
    assert len(hist["batch_loss"]) == 3 * 3   # 30 training samples
    assert hist["train_loss"][0] != hist["train_loss"][1]   # training batches do get fresh noise

    xv, yv = data(12)
    hist = train(Denoiser(model), x, epochs=1, batch_size=10, optimizer=opt, val_data=xv, progress=False)
    assert len(hist["val_loss"]) == 1 and np.isfinite(hist["val_loss"][0])


def test_lr_schedule_is_applied():
    model = make()
    x, _ = data(40)
    opt = SGD(model, lr=0.1)
    train(Denoiser(model), x, epochs=1, batch_size=10, optimizer=opt, lr_schedule=warmup(10),
          progress=False)
    assert opt.lr == pytest.approx(0.1 * 4 / 10)   # the 4th step used factor (3 + 1) / 10


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(data=np.array([[0.0, np.nan]])), ValueError, "data"),
    (dict(data=np.zeros((4, 2), dtype=np.int64)), TypeError, "data"),
    (dict(labels=np.ones(3, dtype=np.int64)), ValueError, "labels"),
    (dict(labels=np.zeros(8, dtype=np.int64)), ValueError, "labels"),
    (dict(labels=np.ones(8)), TypeError, "labels"),
    (dict(prob_uncond=0.5), ValueError, "prob_uncond"),
    (dict(val_fraction=0.2, val_data=np.zeros((2, 2))), ValueError, "val_data"),
    (dict(val_fraction=1.5), ValueError, "val_fraction"),
    (dict(val_data=np.full((2, 2), np.inf)), ValueError, "val_data"),
    (dict(epochs=0), ValueError, "epochs"),
    (dict(batch_size=2.5), ValueError, "batch_size"),
    (dict(resume=True), ValueError, "resume"),
])
def test_bad_arguments(kwargs, err, match):
    model = make()
    args = dict(data=data(8)[0], epochs=1, batch_size=4, optimizer=Adam(model), progress=False)
    args.update(kwargs)
    with pytest.raises(err, match=match):
        train(Denoiser(model), args.pop("data"), **args)


# --- with the real GaussianDiffusion ---------------------------------------------
def real_diffusion(model):
    diffusion = pytest.importorskip("minidiff.diffusion")
    return diffusion.GaussianDiffusion(model, T, schedule="cosine", dtype=model.dtype)


def test_trains_real_gaussian_diffusion(tmp_path):
    model = make(np.float32)
    x, _ = data(64, np.float32)
    hist = train(real_diffusion(model), x, epochs=3, batch_size=16, optimizer=Adam(model, lr=1e-2),
                 ema=EMA(model), checkpoint_path=tmp_path / "ck.h5", progress=False)
    assert len(hist["batch_loss"]) == 12 and np.isfinite(hist["batch_loss"]).all()
    assert model.flat()[0].dtype == np.float32
    assert load_checkpoint(tmp_path / "ck.h5").history == hist


def test_resume_is_bit_identical_with_real_diffusion(tmp_path):
    check_resume_identical(real_diffusion, tmp_path)


def test_device_run_matches_host_run(tmp_path):
    """On the CuPy-like test backend (no implicit host/device copies) the run is the host run."""
    from fakecupy import xp

    diffusion = pytest.importorskip("minidiff.diffusion")
    x, y = data(40, np.float32)
    weights = []
    for device in ("cpu", xp):
        model = make(np.float32).to(device)
        diff = diffusion.GaussianDiffusion(model, T, schedule="cosine", device=device)
        opt, ema = Adam(model, lr=1e-2), EMA(model)
        kw = dict(batch_size=10, optimizer=opt, ema=ema, labels=y, prob_uncond=0.2, grad_clip=1.0,
                  val_fraction=0.2, checkpoint_path=tmp_path / f"{device}.h5", progress=False)
        train(diff, x, epochs=1, **kw)
        train(diff, x, epochs=2, resume=True, **kw)   # host data are copied to the device once
        assert type(model.flat()[0]) is type(opt.m) is type(ema.shadow)
        weights.append(load_checkpoint(tmp_path / f"{device}.h5").model.flat()[0])
    np.testing.assert_array_equal(weights[0], weights[1])


# --- resuming with other settings ----------------------------------------------------
def diffusion_with(T_diffusion, schedule="cosine", T_model=20, activation="swish", **kw):
    diffusion = pytest.importorskip("minidiff.diffusion")
    model = MLP(in_dim=2, d_hid=8, num_timesteps=T_model, num_layers=2, activation=activation, seed=0)
    return diffusion.GaussianDiffusion(model, T_diffusion, schedule=schedule, **kw)


def short_run(diff, path, epochs=2, lr=1e-2, **kw):
    x, _ = data(40, np.float32)
    args = dict(epochs=epochs, batch_size=10, optimizer=Adam(diff.model, lr=lr), checkpoint_path=path,
                resume=True, progress=False)
    args.update(kw)
    return train(diff, x, **args)


@pytest.mark.parametrize("change,match", [
    (dict(T_diffusion=20), r"num_timesteps.*10.*20"),
    (dict(schedule="sigmoid"), r"betas"),
    (dict(objective="v"), r"objective.*'eps'.*'v'"),
    (dict(min_snr_gamma=5.0), r"min_snr_gamma.*None.*5\.0"),
    (dict(activation="relu"), r"activation.*'swish'.*'relu'"),
    (dict(T_model=30), r"num_timesteps.*20.*30"),
])
def test_resume_whose_maths_would_differ_is_refused(tmp_path, change, match):
    from minidiff.checkpoint import CheckpointError

    path = tmp_path / "ck.h5"
    short_run(diffusion_with(10), path, epochs=1)
    saved = load_checkpoint(path)
    other = diffusion_with(**{"T_diffusion": 10, **change})
    before = other.model.flat()[0].copy()
    with pytest.raises(CheckpointError, match=match):
        short_run(other, path, epochs=2)
    np.testing.assert_array_equal(other.model.flat()[0], before)     # refused before anything changed
    assert load_checkpoint(path).extra == saved.extra


def test_a_new_learning_rate_is_applied_and_reported_on_resume(tmp_path, caplog):
    path, schedule = tmp_path / "ck.h5", warmup(100)
    short_run(diffusion_with(10), path, epochs=1, lr=1e-2, lr_schedule=schedule)
    diff = diffusion_with(10)
    with caplog.at_level("WARNING", logger="minidiff.train"):
        hist = short_run(diff, path, epochs=2, lr=3e-3, lr_schedule=schedule)
    assert hist["resume_changes"] == [{"epoch": 1, "lr": [1e-2, 3e-3]}]
    assert "lr: 0.01 -> 0.003" in caplog.text
    ck = load_checkpoint(path)
    assert ck.optimizer.lr == pytest.approx(3e-3 * schedule(7))     # the 8th step: base 3e-3
    assert ck.extra["base_lr"] == 3e-3 and ck.history["resume_changes"] == hist["resume_changes"]
    # resuming again with the same (new) lr reports nothing new
    caplog.clear()
    hist = short_run(diffusion_with(10), path, epochs=3, lr=3e-3, lr_schedule=schedule)
    assert hist["resume_changes"] == [{"epoch": 1, "lr": [1e-2, 3e-3]}] and "->" not in caplog.text


def test_other_training_settings_are_reported_on_resume(tmp_path, caplog):
    path = tmp_path / "ck.h5"
    diff = diffusion_with(10)
    short_run(diff, path, epochs=1, ema=EMA(diff.model, decay=0.9))
    diff = diffusion_with(10)
    opt = Adam(diff.model, lr=1e-2, betas=(0.8, 0.99))
    with caplog.at_level("WARNING", logger="minidiff.train"):
        hist = short_run(diff, path, epochs=2, batch_size=5, optimizer=opt, ema=EMA(diff.model, decay=0.5))
    change = hist["resume_changes"][0]
    assert change["batch_size"] == [10, 5] and change["betas"] == [[0.9, 0.999], [0.8, 0.99]]
    assert change["ema_decay"] == [0.9, 0.5]
    assert opt.betas == (0.8, 0.99) and len(hist["batch_loss"]) == 4 + 8


# --- the NaN guard after the step ------------------------------------------------------
class Scaled(Denoiser):
    """The stand-in with its gradient scaled: finite, but large enough to overflow what follows."""

    def __init__(self, model, scale):
        super().__init__(model)
        self.scale = scale

    def p_losses(self, *args, **kw):
        value, d_out = super().p_losses(*args, **kw)
        return value, d_out * self.scale


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_weights_made_non_finite_by_the_step_are_never_saved(tmp_path):
    """The issue's case: one batch per epoch, a step that overflows the weights."""
    model = make(np.float32)
    x, _ = data(10, np.float32)
    path = tmp_path / "ck.h5"
    train(Scaled(model, 1.0), x, epochs=1, batch_size=10, optimizer=SGD(model, lr=0.1), checkpoint_path=path,
          progress=False)
    saved = load_checkpoint(path).model.flat()[0]
    with pytest.raises(NonFiniteError, match=r"weights.*after the optimiser step.*epoch 2, batch 1/1"):
        train(Scaled(model, 1e6), x, epochs=3, batch_size=10, optimizer=SGD(model, lr=3e38),
              checkpoint_path=path, resume=True, progress=False)
    np.testing.assert_array_equal(load_checkpoint(path).model.flat()[0], saved)


def test_non_finite_optimizer_state_is_never_saved(tmp_path):
    """Adam's v = g^2 overflows float32 while the step itself stays finite (m / sqrt(inf) = 0)."""
    model = make(np.float32)
    x, _ = data(10, np.float32)
    path = tmp_path / "ck.h5"
    with pytest.raises(NonFiniteError, match=r"optimiser state v"):
        train(Scaled(model, 1e25), x, epochs=1, batch_size=10, optimizer=Adam(model), checkpoint_path=path,
              progress=False)
    assert not path.exists()


def test_weights_poisoned_after_the_last_batch_are_never_saved(tmp_path):
    model = make()
    x, _ = data(10)
    path = tmp_path / "ck.h5"
    cb = NaNAt(model, epoch=1, batch=0)       # after the only batch of epoch 2, before its checkpoint
    with pytest.raises(NonFiniteError, match="model weights"):
        train(Denoiser(model), x, epochs=3, batch_size=10, optimizer=Adam(model), checkpoint_path=path,
              callbacks=[cb], progress=False)
    np.testing.assert_array_equal(load_checkpoint(path).model.flat()[0], cb.saved[0])
