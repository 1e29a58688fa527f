"""A checkpoint fuzzer (hypothesis): random truncations, byte flips, oversize declarations, foreign
HDF5 files and files that are not HDF5 at all. Every one must give a CheckpointError naming the
file, or load exactly what was saved: never another exception, a crash, a hang or other weights.

The example counts are fixed and the examples derandomised, so CI runs the same few hundred files
every time, in a few seconds; a watchdog ends the process if one load hangs.
"""
import faulthandler
import json

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from checkpoint_cases import assert_same_state, dataset_spans, resign, save_full, set_attr  # noqa: E402
from minidiff.checkpoint import CheckpointError, load_checkpoint  # noqa: E402

HANG_SECONDS = 60      # one load takes milliseconds


def fuzz_settings(n):
    return settings(max_examples=n, derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """(path, bytes, spans of the datasets' data, what was saved) of one full checkpoint."""
    path = tmp_path_factory.mktemp("fuzz") / "ck.h5"
    model, opt, ema, rng = save_full(path)
    return path, path.read_bytes(), dataset_spans(path), (model, opt, ema, rng.bit_generator.state)


def check(path, saved):
    """A clear CheckpointError naming the file, or exactly the saved state; nothing else. A load
    that hangs ends the process (faulthandler's watchdog, which works inside C code too)."""
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
    try:
        ck = load_checkpoint(path)
    except CheckpointError as e:
        assert str(path) in str(e)
        return "error"
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert_same_state(ck, *saved)
    return "same"


def write(tmp_path, data):
    path = tmp_path / "ck.h5"
    path.write_bytes(bytes(data))
    return path


class Outcomes:
    """Counts of each outcome, so that the test shows what the examples were."""
    def __init__(self):
        self.counts = {}

    def add(self, outcome):
        self.counts[outcome] = self.counts.get(outcome, 0) + 1


def test_truncations(original, tmp_path):
    path, data, _, saved = original
    seen = Outcomes()

    @fuzz_settings(60)
    @given(cut=st.integers(0, len(data) - 1))
    def run(cut):
        seen.add(check(write(tmp_path, data[:cut]), saved))

    run()
    assert seen.counts == {"error": 60}, seen.counts     # HDF5 records its end: every cut is seen


def test_byte_flips(original, tmp_path):
    path, data, spans, saved = original
    in_data = np.concatenate([np.arange(o, o + n) for o, n in spans])
    seen = Outcomes()
    position = st.one_of(st.integers(0, len(data) - 1),                              # anywhere
                         st.sampled_from(in_data.tolist()))                         # in the arrays

    @fuzz_settings(200)
    @given(flips=st.lists(st.tuples(position, st.integers(1, 255)), min_size=1, max_size=200))
    def run(flips):
        bad = bytearray(data)
        for i, x in flips:
            bad[i] ^= x
        seen.add(check(write(tmp_path, bad), saved))

    run()
    assert seen.counts.get("error", 0) > 100, seen.counts


KINDS = ("dataset", "chunk", "attribute", "config", "history")


def test_oversize_declarations(original, tmp_path):
    """A dataset, a chunk, an attribute or a model config declaring up to 2^40 elements, with the
    digest made valid again (as a hostile writer would): refused before anything that size exists."""
    path, data, _, saved = original
    seen = Outcomes()

    @fuzz_settings(40)
    @given(kind=st.sampled_from(KINDS), group=st.sampled_from(["model", "ema", "optimizer", "history"]),
           size=st.integers(2 ** 24, 2 ** 40), which=st.integers(0, 100))
    def run(kind, group, size, which):
        p = write(tmp_path, data)
        with h5py.File(p, "a") as f:
            if kind in ("dataset", "chunk", "history"):
                g = f["history" if kind == "history" else group]
                name = sorted(g)[which % len(g)]
                del g[name]
                if kind == "chunk":
                    g.create_dataset(name, shape=(4,), maxshape=(None,), dtype="f4",
                                     chunks=(min(size, 2 ** 30),), fletcher32=True)
                else:
                    g.create_dataset(name, shape=(size,), maxshape=(None,), dtype="f4",
                                     chunks=(4096,), fletcher32=True)
            elif kind == "attribute":       # attributes are scalars: any array is refused
                f[group].attrs.create("step_count" if group == "optimizer" else "decay",
                                      data=np.zeros(2 + size % 2 ** 16))
            else:
                config = json.loads(f.attrs["model_config"])
                sizes = sorted(k for k in config if k not in ("activation", "seed"))
                key = sizes[which % len(sizes)]
                config[key] = size
                set_attr(f, "model_config", json.dumps(config))
        resign(p)
        assert check(p, saved) == "error"
        seen.add(kind)

    run()
    assert set(seen.counts) == set(KINDS), seen.counts


@st.composite
def foreign_hdf5(draw):
    """Random HDF5 layouts, some of them dressed as minidiff checkpoints."""
    items = draw(st.lists(st.tuples(
        st.sampled_from(["", "model/", "ema/", "optimizer/", "history/", "x/y/"]),
        st.text("abcdefgh.0123", min_size=1, max_size=8),
        st.sampled_from(["f4", "f8", "i8", "u1", "f2"]),
        st.lists(st.integers(0, 5), min_size=0, max_size=3)), max_size=6))
    attrs = draw(st.dictionaries(
        st.sampled_from(["format", "format_version", "model_class", "model_config", "dtype", "extra",
                         "rng_state", "sha256", "other"]),
        st.one_of(st.integers(-3, 3), st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=20),
                  st.just("minidiff-checkpoint"),
                  st.just('{"in_dim": 2}'), st.just("MLP"), st.floats(allow_nan=True)), max_size=9))
    return items, attrs, draw(st.booleans())


def test_foreign_hdf5_files(tmp_path):
    seen = Outcomes()

    @fuzz_settings(60)
    @given(layout=foreign_hdf5())
    def run(layout):
        items, attrs, fixed_strings = layout
        p = tmp_path / "ck.h5"
        with h5py.File(p, "w") as f:
            for prefix, name, dtype, shape in items:
                if prefix + name not in f:
                    try:
                        f.create_dataset(prefix + name, data=np.ones(shape, dtype=dtype))
                    except (ValueError, TypeError):
                        pass                 # a name already taken by a group
            for k, v in attrs.items():
                if fixed_strings:
                    set_attr(f, k, v)            # as save_checkpoint writes strings
                else:
                    f.attrs[k] = v
        seen.add(check(p, None))

    run()
    assert seen.counts == {"error": 60}, seen.counts


def test_files_that_are_not_hdf5(tmp_path):
    seen = Outcomes()
    signature = b"\x89HDF\r\n\x1a\n"

    @fuzz_settings(40)
    @given(data=st.one_of(st.binary(max_size=4096), st.binary(max_size=4096).map(lambda b: signature + b),
                          st.just(b""), st.just(b"\x80\x04\x95" + b"pickle" * 10)))
    def run(data):
        seen.add(check(write(tmp_path, data), None))

    run()
    assert seen.counts == {"error": 40}, seen.counts
