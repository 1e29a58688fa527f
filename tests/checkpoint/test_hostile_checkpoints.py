"""Crafted and corrupted checkpoints: every declared size, dtype and config value is checked before
anything is read or built, and the contents are verified against their digest."""
import json
import tracemalloc

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from checkpoint_cases import dataset_spans, resign, save_full, set_attr, trained_setup  # noqa: E402
from minidiff.checkpoint import CheckpointError, load_checkpoint, save_checkpoint  # noqa: E402
from minidiff.models import MLP, UNet  # noqa: E402

MiB = 2 ** 20


def load_peak(path, **kw):
    """load_checkpoint(path) under tracemalloc: (the CheckpointError raised, peak bytes allocated)."""
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path, **kw)
        return info.value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def replace_dataset(path, group, declare):
    """Swap the first dataset of `group` for an unallocated one made by declare(group, name)."""
    with h5py.File(path, "a") as f:
        name = sorted(f[group])[0]
        del f[group][name]
        declare(f[group], name)
    resign(path)
    return f"/{group}/{name}"


@pytest.mark.parametrize("group", ["model", "ema", "optimizer", "history"])
def test_oversize_dataset_is_refused_before_it_is_read(tmp_path, group):
    """The issue's crafted file: a few kB declaring a 64 MiB dataset (7 GiB in the issue)."""
    path = tmp_path / "ck.h5"
    save_full(path)
    name = replace_dataset(path, group, lambda g, n: g.create_dataset(n, shape=(16 * MiB,), dtype="f4",
                                                                       chunks=(4096,), fletcher32=True))
    err, peak = load_peak(path)
    assert name in str(err) and str(path) in str(err)
    assert peak < 4 * MiB        # nothing of the declared 64 MiB was allocated


def test_oversize_chunk_is_refused(tmp_path):
    """A small dataset whose declared chunk is 64 MiB: HDF5 would allocate the chunk to read it."""
    path = tmp_path / "ck.h5"
    save_full(path)
    name = replace_dataset(path, "model", lambda g, n: g.create_dataset(
        n, shape=(8,), maxshape=(None,), dtype="f4", chunks=(16 * MiB,), fletcher32=True))
    err, peak = load_peak(path)
    assert name in str(err) and "chunk" in str(err)
    assert peak < 4 * MiB


@pytest.mark.parametrize("declare,match", [
    (lambda g, n: g.create_dataset(n, data=np.zeros(8, dtype=np.int64)), "dtype"),
    (lambda g, n: g.create_dataset(n, data=np.zeros(8, dtype=np.float16), fletcher32=True), "dtype"),
    (lambda g, n: g.create_dataset(n, data=np.zeros(8, dtype=">f4"), fletcher32=True), "dtype"),
    (lambda g, n: g.create_dataset(n, data=np.zeros(8, dtype=np.float32)), "fletcher32"),
    (lambda g, n: g.create_dataset(n, data=np.zeros(8, dtype=np.float32), fletcher32=True,
                                   compression="gzip"), "filter"),
    (lambda g, n: g.create_dataset(n, shape=(8,), dtype="f4", external=[("/dev/zero", 0, 32)]), "external"),
    (lambda g, n: g.__setitem__(n, h5py.SoftLink("/model")), "link"),
    (lambda g, n: g.__setitem__(n, h5py.ExternalLink("/etc/passwd", "/x")), "link"),
    (lambda g, n: g.create_group(n), "group"),
])
def test_foreign_dataset_kinds_are_refused(tmp_path, declare, match):
    path = tmp_path / "ck.h5"
    save_full(path)
    with h5py.File(path, "a") as f:
        name = sorted(f["model"])[0]
        del f["model"][name]
        declare(f["model"], name)
    resign(path)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_unknown_attribute_and_oversize_attribute(tmp_path):
    path = tmp_path / "ck.h5"
    save_full(path)
    with h5py.File(path, "a") as f:
        set_attr(f["model"], "surprise", 1)
    with pytest.raises(CheckpointError, match="surprise"):
        load_checkpoint(path)
    save_full(path)
    with h5py.File(path, "a") as f:       # an array where a JSON string belongs
        f.attrs.create("extra", data=np.zeros(4096))
    err, peak = load_peak(path)
    assert "extra" in str(err) and peak < 4 * MiB


def set_config(path, **changes):
    with h5py.File(path, "a") as f:
        config = json.loads(f.attrs["model_config"])
        config.update(changes)
        set_attr(f, "model_config", json.dumps(config))
    resign(path)


@pytest.mark.parametrize("changes,match", [
    (dict(d_hid=2 ** 20), "d_hid"),            # would build 2 x 2^40 weights
    (dict(num_timesteps=2 ** 30), "num_timesteps"),   # a 2^30 x 8 sinusoid table
    (dict(num_layers=10 ** 7), "num_layers"),
    (dict(d_hid="8"), "d_hid"),
    (dict(d_hid=8.5), "d_hid"),
    (dict(d_hid=True), "d_hid"),
    (dict(d_hid=-3), "d_hid"),
    (dict(d_hid=float("nan")), "d_hid"),
    (dict(activation="sigmoid"), "activation"),
    (dict(dtype="float16"), "dtype"),          # not a config key
    (dict(__class__="x"), "__class__"),
])
def test_model_config_is_checked_before_the_model_is_built(tmp_path, changes, match):
    path = tmp_path / "ck.h5"
    save_full(path)
    set_config(path, **changes)
    err, peak = load_peak(path)
    assert match in str(err)
    assert peak < 16 * MiB


def test_unet_config_is_bounded_too(tmp_path):
    path = tmp_path / "unet.h5"
    model = UNet(1, 8, 10, channel_multipliers=(1, 2), groups=4, attention_heads=2)
    save_checkpoint(path, model)
    for changes in (dict(model_channels=2 ** 14), dict(channel_multipliers=[1, 2, 2 ** 12]),
                    dict(num_blocks_per_level=10 ** 6), dict(num_classes=2 ** 31), dict(num_timesteps=2 ** 31)):
        save_checkpoint(path, model)
        set_config(path, **changes)
        err, peak = load_peak(path)
        assert next(iter(changes)) in str(err) or "too large" in str(err), err
        assert peak < 16 * MiB


def test_model_class_must_be_known(tmp_path):
    path = tmp_path / "ck.h5"
    save_full(path)
    with h5py.File(path, "a") as f:
        set_attr(f, "model_class", "os.system")
    resign(path)
    with pytest.raises(CheckpointError, match="unknown model class 'os.system'"):
        load_checkpoint(path)


@pytest.mark.parametrize("where", ["model", "ema", "optimizer"])
def test_non_finite_state_is_refused_even_with_a_valid_digest(tmp_path, where):
    path = tmp_path / "ck.h5"
    save_full(path)
    with h5py.File(path, "a") as f:
        ds = f[where][sorted(f[where])[-1]]
        a = ds[()]
        a.reshape(-1)[0] = np.inf
        ds[...] = a
    resign(path)
    with pytest.raises(CheckpointError, match="NaN or inf"):
        load_checkpoint(path)


@pytest.mark.parametrize("attr,value,match", [
    ("rng_state", '{"bit_generator": "PCG64", "state": {"state": 1e999, "inc": 1}}', "rng"),
    ("rng_state", '{"bit_generator": "PCG64", "state": {"state": ' + "9" * 200 + ', "inc": 1}}', "rng"),
    ("extra", "[" * 100_000, "extra"),
    ("extra", "[1, 2]", "extra"),
    ("model_config", "{" * 50, "model_config"),
])
def test_bad_json_is_a_checkpoint_error(tmp_path, attr, value, match):
    path = tmp_path / "ck.h5"
    save_full(path)
    with h5py.File(path, "a") as f:
        set_attr(f, attr, value)
    resign(path)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


@pytest.mark.parametrize("group,attr,value,match", [
    ("optimizer", "type", "Adagrad", "optimiser type"),
    ("optimizer", "hyper", '{"lr": -1}', "lr"),
    ("optimizer", "hyper", '{"momentum": 0.9}', "momentum"),
    ("optimizer", "step_count", -4, "step_count"),
    ("ema", "decay", 1.5, "decay"),
    ("ema", "num_updates", -1, "num_updates"),
])
def test_optimizer_and_ema_settings_are_checked(tmp_path, group, attr, value, match):
    path = tmp_path / "ck.h5"
    save_full(path)
    with h5py.File(path, "a") as f:
        set_attr(f[group], attr, value)
    resign(path)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


# --- integrity ------------------------------------------------------------------
def test_flipped_data_bytes_are_an_error_never_other_weights(tmp_path):
    """The issue's case: 200 bytes flipped inside the datasets' stored data."""
    path = tmp_path / "ck.h5"
    save_full(path)
    data = bytearray(path.read_bytes())
    positions = np.concatenate([np.arange(o, o + n) for o, n in dataset_spans(path)])
    rng = np.random.default_rng(0)
    for trial in range(10):
        bad = bytearray(data)
        for i in rng.choice(positions, 200, replace=False):
            bad[i] ^= 0x5A
        (tmp_path / "bad.h5").write_bytes(bad)
        with pytest.raises(CheckpointError, match="checksum|digest"):
            load_checkpoint(tmp_path / "bad.h5")


@pytest.mark.parametrize("group,attr,value", [
    ("ema", "decay", 0.8), ("ema", "num_updates", 4), ("optimizer", "step_count", 7),
    ("optimizer", "hyper", '{"lr": 0.02, "betas": [0.9, 0.999], "eps": 1e-08, "weight_decay": 0.0}'),
    ("", "extra", '{"epoch": 3}'), ("history", "other", '{"notes": {"run": "b"}}'),
])
def test_changed_metadata_is_detected(tmp_path, group, attr, value):
    path = tmp_path / "ck.h5"
    save_full(path)
    with h5py.File(path, "a") as f:
        set_attr(f[group] if group else f, attr, value)
    with pytest.raises(CheckpointError, match="digest"):
        load_checkpoint(path)


def test_every_dataset_has_a_checksum(tmp_path):
    path = tmp_path / "ck.h5"
    save_full(path)
    seen = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: seen.append((n, o.fletcher32)) if isinstance(o, h5py.Dataset) else None)
        assert len(f.attrs["sha256"]) == 64
    assert len(seen) > 10 and all(ok for _, ok in seen), seen


# --- a model passed in must be the saved one ------------------------------------------
def test_given_model_with_another_config_is_refused(tmp_path):
    path = tmp_path / "ck.h5"
    model, *_ = trained_setup()
    save_checkpoint(path, model)
    other = MLP(in_dim=2, d_hid=8, num_timesteps=10, num_layers=2, activation="relu")
    before = other.flat()[0].copy()
    with pytest.raises(CheckpointError, match=r"activation.*'swish'.*'relu'"):
        load_checkpoint(path, model=other)
    np.testing.assert_array_equal(other.flat()[0], before)     # untouched
    with pytest.raises(CheckpointError, match="float32.*float64"):
        load_checkpoint(path, model=MLP(in_dim=2, d_hid=8, num_timesteps=10, num_layers=2, dtype=np.float64))
    reseeded = MLP(in_dim=2, d_hid=8, num_timesteps=10, num_layers=2, seed=9)   # the seed only draws the init
    load_checkpoint(path, model=reseeded)
    np.testing.assert_array_equal(reseeded.flat()[0], model.flat()[0])


def test_failed_load_leaves_given_objects_untouched(tmp_path):
    """Everything is checked before anything is copied: a bad optimiser part keeps the model as it was."""
    from minidiff.optim import EMA, Adam

    path = tmp_path / "ck.h5"
    save_full(path)
    with h5py.File(path, "a") as f:
        set_attr(f["optimizer"], "step_count", -1)
    resign(path)
    model, opt, ema, _ = trained_setup(seed=5)
    state = [a.copy() for a in (model.flat()[0], opt.m, opt.v, ema.shadow)]
    with pytest.raises(CheckpointError):
        load_checkpoint(path, model=model, optimizer=opt, ema=ema)
    for a, b in zip(state, (model.flat()[0], opt.m, opt.v, ema.shadow)):
        np.testing.assert_array_equal(a, b)
    assert isinstance(opt, Adam) and isinstance(ema, EMA)


# --- the size bound behind the config check ---------------------------------------------------
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

from minidiff.checkpoint import SLACK_NUMBERS  # noqa: E402
from minidiff.models.sizes import MODEL_NUMBERS  # noqa: E402
from minidiff.models import LeNet5  # noqa: E402


def allocated(model):
    """Numbers a model holds: its weights and its buffers (sinusoid tables ...)."""
    return model.num_params() + sum(b.size for _, layer in model.named_layers() for b in layer.buffers.values())


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(config=st.one_of(
    st.fixed_dictionaries(dict(in_dim=st.integers(1, 9), d_hid=st.integers(2, 20).map(lambda k: 2 * k),
                               num_timesteps=st.integers(1, 300),
                               num_layers=st.integers(1, 4))).map(lambda c: ("MLP", c)),
    st.fixed_dictionaries(dict(
        in_channels=st.integers(1, 3), model_channels=st.sampled_from([4, 8, 12]), num_timesteps=st.integers(1, 200),
        channel_multipliers=st.lists(st.sampled_from([1, 2, 3]), min_size=1, max_size=3),
        num_blocks_per_level=st.integers(1, 2), groups=st.just(4), attention_heads=st.just(1),
        middle_attention=st.booleans(), num_classes=st.one_of(st.none(), st.integers(1, 12)))
    ).map(lambda c: ("UNet", c)),
    st.integers(2, 50).map(lambda k: ("LeNet5", dict(num_classes=k)))))
def test_model_size_bound_holds_every_model_it_may_build(config):
    """MODEL_NUMBERS never undercounts (else a crafted config could build more than it allows), and
    a real model's bound fits the budget its own weights give (else a real checkpoint is refused)."""
    from minidiff.models import MODELS

    import inspect

    name, kwargs = config
    model = MODELS[name](**kwargs)
    arguments = inspect.signature(MODELS[name]).bind(**kwargs)
    arguments.apply_defaults()
    bound = MODEL_NUMBERS[name](arguments.arguments)
    assert allocated(model) <= bound <= 16 * model.num_params() + SLACK_NUMBERS


def test_the_examples_models_load_under_the_bound(tmp_path):
    """The configs the examples train (spiral MLP, MNIST U-Nets, the LeNet-5 judge) all load."""
    models = [MLP(in_dim=2, d_hid=32, num_timesteps=40), LeNet5(),
              UNet(1, 16, 100, channel_multipliers=(1, 2, 3)),
              UNet(1, 16, 100, channel_multipliers=(1, 2, 3), num_classes=10)]
    for i, model in enumerate(models):
        save_checkpoint(tmp_path / f"{i}.h5", model)
        np.testing.assert_array_equal(load_checkpoint(tmp_path / f"{i}.h5").model.flat()[0], model.flat()[0])


# --- format 1 -------------------------------------------------------------------------------
def write_format_1(path, model):
    """A checkpoint as minidiff up to c83fd3d wrote it: variable-length strings, no checksums."""
    with h5py.File(path, "w") as f:
        f.attrs.update(format="minidiff-checkpoint", format_version=1, model_class=type(model).__name__,
                       model_config=json.dumps(model.config), dtype=np.dtype(model.dtype).name, extra="{}")
        g = f.create_group("model")
        for name, a in model.state_dict().items():
            g.create_dataset(name, data=a)
        f.create_group("history").attrs["other"] = "{}"


def test_format_1_is_refused_with_a_way_to_convert_it(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "old.h5"
    model, *_ = trained_setup()
    write_format_1(path, model)
    with pytest.raises(CheckpointError, match=r"format version 1.*--upgrade"):
        load_checkpoint(path)
    proc = subprocess.run([sys.executable, "-m", "minidiff.checkpoint", "--upgrade", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(load_checkpoint(path).model.flat()[0], model.flat()[0])
