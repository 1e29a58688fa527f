"""minidiff.distributed's parts that need no second rank: shares, draws, deadlines, set-up."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from minidiff.diffusion import GaussianDiffusion
from minidiff.distributed import CollectiveTimeout, LocalWorld, get_world, launch, share
from minidiff.distributed.faults import abort_on_uncaught_exception, check_timeout, default_timeout, wait
from minidiff.distributed.data_parallel import draw_t_noise
from minidiff.models import MLP


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_shares_cover_the_rows_in_order_and_differ_by_at_most_one(size):
    for n in range(0, 23):
        parts = [share(n, r, size) for r in range(size)]
        assert parts[0][0] == 0 and parts[-1][1] == n
        assert all(parts[r][1] == parts[r + 1][0] for r in range(size - 1))           # contiguous, in rank order
        sizes = [hi - lo for lo, hi in parts]
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)  # the first ranks take more


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shared_draws_are_p_losses_own(dtype):
    """draw_t_noise + explicit t, noise == p_losses drawing them itself, bit for bit, same rng state after."""
    model = MLP(d_hid=8, num_timesteps=10, seed=0, dtype=dtype)
    diffusion = GaussianDiffusion(model, 10, schedule="cosine", data_shape=(2,), dtype=dtype)
    x0 = np.random.default_rng(1).standard_normal((6, 2)).astype(dtype)
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    loss_a, d_a = diffusion.p_losses(x0, rng=rng_a)
    t, noise = draw_t_noise(rng_b, 10, 6, (2,), dtype)
    loss_b, d_b = diffusion.p_losses(x0, t=t, noise=noise)
    assert noise.dtype == dtype and np.array_equal(d_a, d_b) and loss_a == loss_b
    assert rng_a.bit_generator.state == rng_b.bit_generator.state


def test_one_process_world_is_the_identity():
    w, a = LocalWorld(), np.arange(3.0)
    assert (w.rank, w.size, w.is_root, w.share(7)) == (0, 1, True, (0, 7))
    assert w.allreduce_sum_(a) is a and w.bcast_(a) is a and w.gather_rows(a) is a and w.bcast_json({"k": 1}) == {"k": 1}


def test_wait_returns_when_done_and_times_out_with_a_clear_message():
    polls = iter([False] * 50 + [True])
    wait(lambda: next(polls), "allreduce(x)", 0, 2, timeout=5.0)
    start = time.monotonic()
    with pytest.raises(CollectiveTimeout, match=r"rank 1 of 3 waited 0.3 s in broadcast\(parameters\) and no peer"):
        wait(lambda: False, "broadcast(parameters)", 1, 3, timeout=0.3)
    assert 0.3 <= time.monotonic() - start < 2.0


def test_timeouts_are_checked(monkeypatch):
    for bad in (0, -1, "soon", float("inf"), None):
        with pytest.raises(ValueError, match="timeout: expected a number of seconds > 0"):
            check_timeout(bad)
    monkeypatch.setenv("MINIDIFF_DIST_TIMEOUT", "12.5")
    assert default_timeout() == 12.5
    monkeypatch.setenv("MINIDIFF_DIST_TIMEOUT", "0")
    with pytest.raises(ValueError, match="MINIDIFF_DIST_TIMEOUT: expected a number of seconds > 0, got '0'"):
        default_timeout()


def test_uncaught_exception_prints_and_aborts_every_rank(monkeypatch, capsys):
    aborted = []
    monkeypatch.setattr(sys, "excepthook", lambda *a: None)
    hook = abort_on_uncaught_exception(aborted.append, 1, 4)
    assert sys.excepthook is hook
    hook(MemoryError, MemoryError(), None)
    assert aborted == [1]
    assert "rank 1 of 4 stopped on an uncaught MemoryError; aborting all 4 ranks" in capsys.readouterr().err


def test_a_single_process_needs_no_mpi4py():
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_RANK")}
    code = ("import sys, minidiff.train, minidiff.distributed as d; w = d.get_world(); "
            "assert type(w).__name__ == 'LocalWorld', w; assert 'mpi4py' not in sys.modules; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "ok", proc.stderr


def test_launcher_without_mpi4py_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)          # import mpi4py -> ImportError
    monkeypatch.setitem(launch._state, "world", None)
    monkeypatch.setenv("PMI_SIZE", "2")
    with pytest.raises(ImportError, match=r"started by an MPI launcher \(PMI_SIZE=2\) but mpi4py is not installed"):
        get_world()
    monkeypatch.setenv("PMI_SIZE", "two")
    with pytest.raises(ValueError, match="PMI_SIZE: expected an integer number of ranks, got 'two'"):
        get_world()
    monkeypatch.setenv("PMI_SIZE", "1")                       # a launcher with one rank: one process
    assert isinstance(get_world(), LocalWorld)


def test_train_refuses_a_world_that_is_not_one():
    from minidiff.optim import Adam
    from minidiff.train import train
    model = MLP(d_hid=8, num_timesteps=10)
    diffusion = GaussianDiffusion(model, 10, schedule="cosine", data_shape=(2,))
    with pytest.raises(TypeError, match="world: expected a LocalWorld or MPIWorld, got str"):
        train(diffusion, np.zeros((4, 2), np.float32), epochs=1, batch_size=2, optimizer=Adam(model),
              progress=False, world="mpi")


def test_select_gpu_takes_the_local_rank_and_refuses_more_ranks_than_gpus(monkeypatch):
    import types

    from minidiff import backend
    from minidiff.distributed import select_gpu
    used = []
    cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 2),
                                 Device=lambda i: types.SimpleNamespace(use=lambda: used.append(i)))
    monkeypatch.setattr(backend, "_cupy", types.SimpleNamespace(cuda=cuda))
    world = types.SimpleNamespace(**{name: None for name in ("rank", "size", "is_root", "share", "allreduce_sum_",
                                                              "sum_scalars", "bcast_", "bcast_json", "gather_rows")})
    world.local_rank, world.local_size = 1, 2
    assert select_gpu(world) == 1 and used == [1]
    world.local_size = 3
    with pytest.raises(RuntimeError, match="3 ranks on this machine but 2 GPU"):
        select_gpu(world)
