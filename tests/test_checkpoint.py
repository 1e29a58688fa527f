"""HDF5 checkpoints: exact round trips, atomic writes and clear errors."""
import os

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

import minidiff.checkpoint as ckpt  # noqa: E402
from checkpoint_cases import trained_setup  # noqa: E402
from minidiff.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from minidiff.models import MLP  # noqa: E402
from minidiff.optim import EMA, SGD, Adam  # noqa: E402


def test_round_trip_restores_everything(tmp_path):
    model, opt, ema, rng = trained_setup()
    history = {"train_loss": [1.0, 0.5], "batch_loss": [1.5, 0.25], "val_loss": [],
               "notes": {"run": "a"}, "labels": ["x", "y"]}
    path = save_checkpoint(tmp_path / "ck.h5", model, optimizer=opt, ema=ema, rng=rng,
                           history=history, extra={"epoch": 2, "step": 6})
    expected_draws = np.random.default_rng(0)
    expected_draws.bit_generator.state = rng.bit_generator.state

    ck = load_checkpoint(path)   # everything rebuilt from the file
    assert ck.model_class == "MLP" and ck.model_config == model.config
    assert ck.model.dtype == np.float32
    for name, p in model.state_dict().items():
        np.testing.assert_array_equal(ck.model.state_dict()[name], p)
    assert type(ck.optimizer) is Adam and ck.optimizer.step_count == 3 and ck.optimizer.lr == 1e-2
    np.testing.assert_array_equal(ck.optimizer.m, opt.m)
    np.testing.assert_array_equal(ck.optimizer.v, opt.v)
    np.testing.assert_array_equal(ck.ema.shadow, ema.shadow)
    assert ck.ema.decay == 0.9 and ck.ema.num_updates == 3
    assert ck.history == history and ck.extra == {"epoch": 2, "step": 6}
    np.testing.assert_array_equal(ck.rng.standard_normal(5), expected_draws.standard_normal(5))


def test_load_into_given_objects(tmp_path):
    model, opt, ema, rng = trained_setup(dtype=np.float64)
    save_checkpoint(tmp_path / "ck.h5", model, optimizer=opt, ema=ema, rng=rng)
    other = MLP(in_dim=2, d_hid=8, num_timesteps=10, num_layers=2, seed=5, dtype=np.float64)
    o_opt, o_ema = Adam(other), EMA(other)
    ck = load_checkpoint(tmp_path / "ck.h5", model=other, optimizer=o_opt, ema=o_ema)
    assert ck.model is other and ck.optimizer is o_opt and ck.ema is o_ema
    np.testing.assert_array_equal(other.flat()[0], model.flat()[0])
    np.testing.assert_array_equal(o_opt.v, opt.v)
    np.testing.assert_array_equal(o_ema.shadow, ema.shadow)
    with pytest.raises(ValueError, match="Adam"):
        load_checkpoint(tmp_path / "ck.h5", model=other, optimizer=SGD(other, lr=0.1))


def test_ema_weights_are_stored_by_name(tmp_path):
    model, opt, ema, _ = trained_setup()
    save_checkpoint(tmp_path / "ck.h5", model, ema=ema)
    with ema.applied(model):
        ema_named = {k: v.copy() for k, v in model.state_dict().items()}
    with h5py.File(tmp_path / "ck.h5", "r") as f:
        assert set(f["ema"]) == set(ema_named)
        for name, a in ema_named.items():
            np.testing.assert_array_equal(f["ema"][name][()], a)


def test_crash_mid_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ck.h5"
    model, opt, ema, rng = trained_setup()
    good = model.flat()[0].copy()
    save_checkpoint(path, model, optimizer=opt, ema=ema, rng=rng)

    model.flat()[0][...] += 1.0   # new weights that must NOT reach the file

    def crash(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ckpt, "_write_optimizer", crash)   # after the weights were written
    with pytest.raises(RuntimeError, match="disk on fire"):
        save_checkpoint(path, model, optimizer=opt, ema=ema, rng=rng)
    assert os.listdir(tmp_path) == ["ck.h5"]   # the temporary file was removed
    ck = load_checkpoint(path)
    np.testing.assert_array_equal(ck.model.flat()[0], good)


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.h5")


def test_truncated_file(tmp_path):
    model, opt, ema, rng = trained_setup()
    path = tmp_path / "ck.h5"
    save_checkpoint(path, model, optimizer=opt, ema=ema, rng=rng)
    data = path.read_bytes()
    for cut in (len(data) // 2, 100):
        bad = tmp_path / f"cut{cut}.h5"
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=str(bad)):
            load_checkpoint(bad)


def test_not_hdf5_at_all(tmp_path):
    bad = tmp_path / "text.h5"
    bad.write_text("hello")
    with pytest.raises(ValueError, match="HDF5"):
        load_checkpoint(bad)


def test_foreign_hdf5_file(tmp_path):
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("weights", data=np.zeros(3))
    with pytest.raises(ValueError, match="not a minidiff checkpoint"):
        load_checkpoint(path)


def test_wrong_format_version(tmp_path):
    model, *_ = trained_setup()
    path = save_checkpoint(tmp_path / "ck.h5", model)
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(ValueError, match="version 99"):
        load_checkpoint(path)


def test_weights_must_match_the_model(tmp_path):
    model, *_ = trained_setup()
    path = save_checkpoint(tmp_path / "ck.h5", model)
    wider = MLP(in_dim=2, d_hid=16, num_timesteps=10, num_layers=2)
    with pytest.raises(ValueError, match="shape"):
        load_checkpoint(path, model=wider)
    deeper = MLP(in_dim=2, d_hid=8, num_timesteps=10, num_layers=3)
    with pytest.raises(ValueError, match="missing"):
        load_checkpoint(path, model=deeper)


def test_no_pickle_and_string_metadata(tmp_path):
    model, opt, ema, rng = trained_setup()
    path = save_checkpoint(tmp_path / "ck.h5", model, optimizer=opt, ema=ema, rng=rng)
    with h5py.File(path, "r") as f:
        assert f.attrs["format"].decode() == "minidiff-checkpoint"     # fixed-length UTF-8
        assert f.attrs["model_class"].decode() == "MLP"
        kinds = []
        f.visititems(lambda name, obj: kinds.append(obj.dtype.kind) if isinstance(obj, h5py.Dataset) else None)
        assert kinds and set(kinds) == {"f"}   # only float arrays, no opaque blobs


def test_save_validates_arguments(tmp_path):
    model, *_ = trained_setup()
    with pytest.raises(TypeError, match="rng"):
        save_checkpoint(tmp_path / "ck.h5", model, rng=123)
    with pytest.raises(TypeError, match="model"):
        save_checkpoint(tmp_path / "ck.h5", {"w": np.zeros(2)})


def test_save_refuses_non_finite_state(tmp_path):
    """No NaN or inf is ever written: not in the weights, the EMA or the optimiser state."""
    model, opt, ema, rng = trained_setup()
    save_checkpoint(tmp_path / "ck.h5", model, optimizer=opt, ema=ema)
    before = (tmp_path / "ck.h5").read_bytes()
    for array, what in ((model.flat()[0], "model weights"), (ema.shadow, "EMA weights"), (opt.v, "state v")):
        keep = array[3]
        array[3] = np.nan
        with pytest.raises(ValueError, match=what):
            save_checkpoint(tmp_path / "ck.h5", model, optimizer=opt, ema=ema)
        array[3] = keep
        assert (tmp_path / "ck.h5").read_bytes() == before and os.listdir(tmp_path) == ["ck.h5"]
