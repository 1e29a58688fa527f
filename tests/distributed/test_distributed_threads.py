"""train() and sample() on 2 and 3 ranks played by threads (tests/distributed/threadcomm.py), against one process.

The collectives are minidiff.distributed.comm's own code; only mpi4py is replaced.
This covers rank counts mpiexec is not asked for here (3) and runs in-process.
"""
import threading

import numpy as np
import pytest

import dist_cases as dc
from minidiff.checkpoint import load_checkpoint
from minidiff.diffusion import GaussianDiffusion
from minidiff.distributed import LocalWorld, rank_rng, sample, share
from minidiff.distributed.data_parallel import broadcast_state
from minidiff.models import MLP
from minidiff.nn.grad_mode import grad_enabled
from threadcomm import run_ranks


@pytest.fixture(scope="module")
def one_process():
    log = []
    st = dc.state(*dc.run(LocalWorld(), log=log)[:3])
    return st, log


@pytest.mark.parametrize("size", [2, 3])
def test_ranks_reproduce_one_process_and_its_batches(one_process, size):
    ref, ref_log = one_process
    logs = [[] for _ in range(size)]
    states = run_ranks(size, lambda w: dc.state(*dc.run(w, log=logs[w.rank])[:3]))
    assert dc.max_diff(states[0], ref) < 1e-12
    assert all(dc.max_diff(s, states[0]) == 0 for s in states)          # every rank holds the same weights
    assert all(len(log) == len(ref_log) for log in logs)
    for k, (x1, lab1) in enumerate(ref_log):                            # the same rows and labels per batch
        parts = [share(len(x1), r, size) for r in range(size)]
        x = np.concatenate([logs[r][k][0][:hi - lo] for r, (lo, hi) in enumerate(parts)])
        lab = np.concatenate([logs[r][k][1][:hi - lo] for r, (lo, hi) in enumerate(parts)])
        assert np.array_equal(x, x1) and np.array_equal(lab, lab1), k


def test_resume_from_two_ranks_on_three_and_one(tmp_path):
    straight = dc.state(*dc.run(LocalWorld(), epochs=4)[:3])
    ck = str(tmp_path / "ck.h5")
    run_ranks(2, lambda w: dc.run(w, epochs=2, checkpoint=ck))
    assert load_checkpoint(ck).extra["world_size"] == 2
    three = run_ranks(3, lambda w: dc.state(*dc.run(w, epochs=3, checkpoint=ck, resume=True)[:3]))
    assert dc.max_diff(three[2], dc.state(*dc.run(LocalWorld(), epochs=3)[:3])) < 1e-12
    extra = load_checkpoint(ck).extra
    assert extra["epoch"] == 3 and extra["world_size"] == 3
    one = dc.state(*dc.run(LocalWorld(), epochs=4, checkpoint=ck, resume=True)[:3])
    assert dc.max_diff(one, straight) < 1e-12                         # 2 ranks -> 3 ranks -> 1 process


def test_rank_zero_state_is_broadcast():
    def body(world):
        model = MLP(d_hid=8, num_timesteps=10, seed=world.rank, dtype=np.float64)   # different weights
        from minidiff.optim import EMA, Adam
        opt, ema = Adam(model, lr=1e-3 * (1 + world.rank)), EMA(model, decay=0.9)
        opt.m[...] = world.rank
        opt.step_count = 5 * world.rank
        ema.num_updates = 7 * world.rank
        broadcast_state(world, model, opt, ema)
        return model.flat()[0].copy(), opt.m.copy(), opt.lr, opt.step_count, ema.num_updates
    out = run_ranks(3, body)
    ref = MLP(d_hid=8, num_timesteps=10, seed=0, dtype=np.float64).flat()[0]
    for theta, m, lr, steps, updates in out:
        assert np.array_equal(theta, ref) and not m.any() and lr == 1e-3 and steps == 0 and updates == 0


def test_different_models_on_the_ranks_are_a_clear_error_on_every_rank():
    def body(world):
        model = MLP(d_hid=8 + 2 * world.rank, num_timesteps=10)
        try:
            broadcast_state(world, model)
        except ValueError as e:
            return str(e)
    messages = run_ranks(2, body)
    assert all("model, optimiser and EMA differs between ranks" in m for m in messages), messages


def test_sampling_is_split_and_gathered_in_order():
    model = MLP(d_hid=8, num_timesteps=10, seed=0, dtype=np.float64)
    diffusion = GaussianDiffusion(model, 10, schedule="cosine", data_shape=(2,), dtype=np.float64)
    labels = np.arange(7)
    one_at_a_time = threading.Lock()                # nn.no_grad's flag is process-wide, not per thread

    def loop(shape, labels, rng):                   # the samples of its rows, tagged by label and rng
        with one_at_a_time:
            return np.c_[labels, diffusion.p_sample_loop(shape, rng=rng, progress=False)]
    out = run_ranks(3, lambda w: (sample(loop, (7, 2), labels=labels, seed=5, world=w), w.rank))
    got = out[0][0]
    assert out[1][0] is None and out[2][0] is None and got.shape == (7, 3)
    assert np.array_equal(got[:, 0], labels)                             # the requested order
    for r in range(3):                                                   # rank r's rows: its own stream
        lo, hi = share(7, r, 3)
        rng = np.random.default_rng(5) if r == 0 else np.random.default_rng(np.random.SeedSequence(5, spawn_key=(r,)))
        np.testing.assert_array_equal(got[lo:hi, 1:], diffusion.p_sample_loop((hi - lo, 2), rng=rng, progress=False))
    single = sample(loop, (7, 2), labels=labels, seed=5, world=LocalWorld())
    np.testing.assert_array_equal(single[:, 1:], diffusion.p_sample_loop((7, 2), rng=5, progress=False))
    assert grad_enabled()


def test_rank_streams():
    streams = run_ranks(3, lambda w: rank_rng(11, w).random(4))
    assert np.array_equal(streams[0], np.random.default_rng(11).random(4))   # rank 0 = one process
    assert not np.allclose(streams[1], streams[2]) and not np.allclose(streams[0], streams[1])
    two = run_ranks(2, lambda w: rank_rng(11, w).random(4))
    assert np.array_equal(two[1], streams[1])                              # not a function of the rank count
    with pytest.raises(TypeError, match="seed: expected a non-negative int"):
        run_ranks(2, lambda w: rank_rng(np.random.default_rng(0), w))


def test_gather_rows_refuses_mismatched_rows():
    def body(world):
        return world.gather_rows(np.zeros((2, 3), np.float32 if world.rank else np.float64))
    with pytest.raises(ValueError, match="rank 1 sent 2 rows"):
        run_ranks(2, body)
