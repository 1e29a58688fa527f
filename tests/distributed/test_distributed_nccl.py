"""The GPU gradient all-reduce (minidiff/distributed/device.py) through the CuPy-like test backend.

Two ranks are threads (threadcomm.py); arrays are tests/fakecupy.py's DeviceArrays,
which raise on any implicit device -> host copy; `cuda` is a stand-in for
cupy.cuda with a fake NCCL whose communicators find each other by their unique
id (as real ones do) and sum through the raw pointers they are given.

What a real GPU would run here, call for call: nccl.get_unique_id() on rank 0,
its bytes broadcast over MPI, NcclCommunicator(2, id, rank), then per step
ncclAllReduce(grad.data.ptr, grad.data.ptr, P, ncclFloat64, ncclSum,
stream.ptr) on the current stream, stream.record() and polling of the event
with ncclCommGetAsyncError. What needs a GPU and is not checked: that NCCL
itself sums correctly across devices, that the event and stream order the
kernels, the one-rank-per-GPU device choice, and a CUDA-aware MPI given real
device pointers.
"""
import ctypes
import threading
import types

import numpy as np
import pytest

import dist_cases as dc
from fakecupy import DeviceArray, xp
from minidiff.distributed import LocalWorld
from threadcomm import run_ranks

STEPS = 8                                             # 2 epochs of 4 batches (dist_cases)


class FakeNccl:
    """cupy.cuda.nccl for N threads: the communicators of one unique id sum each other's buffers."""
    NCCL_SUM, NCCL_FLOAT32, NCCL_FLOAT64 = 0, 7, 8     # NCCL's enum values
    CTYPES = {7: ctypes.c_float, 8: ctypes.c_double}

    def __init__(self):
        self.groups, self.lock, self.calls = {}, threading.Lock(), []
        self.NcclCommunicator = self._communicator_class()

    def get_unique_id(self):
        return tuple(int(v) for v in np.random.default_rng().integers(-128, 128, 128))

    def _communicator_class(self):
        nccl = self

        class NcclCommunicator:
            def __init__(self, ndev, commId, rank):
                with nccl.lock:
                    self.group = nccl.groups.setdefault(tuple(commId), {"barrier": threading.Barrier(ndev, timeout=30),
                                                                        "slots": [None] * ndev})
                self.rank, self.ndev, self.comm_id = rank, ndev, tuple(commId)
                nccl.calls.append(("init", rank, ndev, tuple(commId)))

            def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream):
                nccl.calls.append(("allReduce", self.rank, sendbuf, recvbuf, count, datatype, op, stream))
                assert op == nccl.NCCL_SUM
                src = np.ctypeslib.as_array((nccl.CTYPES[datatype] * count).from_address(sendbuf))
                g = self.group
                g["slots"][self.rank] = src.copy()
                g["barrier"].wait()
                total = g["slots"][0]
                for part in g["slots"][1:]:
                    total = total + part
                g["barrier"].wait()
                np.ctypeslib.as_array((nccl.CTYPES[datatype] * count).from_address(recvbuf))[...] = total

            def check_async_error(self):
                nccl.calls.append(("check_async_error", self.rank))

            def abort(self):
                nccl.calls.append(("abort", self.rank))
        return NcclCommunicator


class FakeStream:
    def __init__(self, rank, log):
        self.ptr, self.rank, self.log = 0x1000 + rank, rank, log

    def record(self):
        self.log.append(("record", self.rank))
        return types.SimpleNamespace(done=True)

    def synchronize(self):
        self.log.append(("synchronize", self.rank))


@pytest.fixture
def device_pointers(monkeypatch):
    """DeviceArray.data.ptr, as cupy.ndarray has: the address of the array's memory."""
    monkeypatch.setattr(DeviceArray, "data", property(lambda a: types.SimpleNamespace(ptr=a._data.ctypes.data)),
                        raising=False)


@pytest.fixture(scope="module")
def one_device():
    """One process on the fake device: the reference."""
    model, opt, ema, _ = dc.run(LocalWorld(), device=xp)
    assert isinstance(model.flat()[0], DeviceArray)
    return dc.state(model, opt, ema)


def _cuda_for(nccl, log):
    return lambda rank: types.SimpleNamespace(nccl=nccl, get_current_stream=lambda s=FakeStream(rank, log): s)


def _train(world, grads):
    model, opt, ema, _ = dc.run(world, device=xp)
    grads[world.rank] = model.flat()[1]
    return dc.state(model, opt, ema)


def test_nccl_allreduce_of_the_device_gradient(device_pointers, one_device, monkeypatch):
    monkeypatch.delenv("MINIDIFF_GPU_ALLREDUCE", raising=False)
    nccl, log, grads = FakeNccl(), [], {}
    states = run_ranks(2, lambda w: _train(w, grads), cuda=_cuda_for(nccl, log))
    assert dc.max_diff(states[0], one_device) < 1e-12 and dc.max_diff(states[1], states[0]) == 0

    inits = [c for c in nccl.calls if c[0] == "init"]
    assert len(inits) == 2 and inits[0][3] == inits[1][3] and {c[1] for c in inits} == {0, 1}
    sums = [c for c in nccl.calls if c[0] == "allReduce"]
    assert len(sums) == 2 * STEPS                                    # one all-reduce per step per rank
    P = grads[0].size
    for _, rank, send, recv, count, dtype, op, stream in sums:
        assert send == recv == grads[rank].data.ptr                  # in place, on the flat gradient
        assert (count, dtype, op, stream) == (P, FakeNccl.NCCL_FLOAT64, FakeNccl.NCCL_SUM, 0x1000 + rank)
    assert log.count(("record", 0)) == STEPS and ("synchronize", 0) not in log   # the event, not a stream sync
    assert not any(c[0] == "abort" for c in nccl.calls)


@pytest.mark.parametrize("mode", ["mpi", "host"])
def test_cuda_aware_mpi_and_host_fallbacks(device_pointers, one_device, monkeypatch, mode):
    monkeypatch.setenv("MINIDIFF_GPU_ALLREDUCE", mode)
    log, grads = [], {}
    states = run_ranks(2, lambda w: _train(w, grads), cuda=_cuda_for(None, log))
    assert dc.max_diff(states[0], one_device) < 1e-12 and dc.max_diff(states[1], states[0]) == 0
    assert log.count(("synchronize", 0)) == (STEPS if mode == "mpi" else 0)   # MPI does not know the stream
    sums = [c for c in run_ranks.last_hub.calls[0] if c.startswith("Iallreduce")]
    on_device = sums.count("Iallreduce(DeviceArray)")
    assert on_device == (STEPS if mode == "mpi" else 0)   # a CUDA-aware MPI is handed the device array itself


def test_no_nccl_and_no_cuda_aware_mpi_warns_and_goes_through_the_host(device_pointers, monkeypatch):
    from minidiff.distributed.device import HostSum, choose_mode
    monkeypatch.delenv("MINIDIFF_GPU_ALLREDUCE", raising=False)
    monkeypatch.delenv("MINIDIFF_CUDA_AWARE_MPI", raising=False)
    with pytest.warns(RuntimeWarning, match="goes through host memory"):
        assert choose_mode(types.SimpleNamespace(nccl=None)) == HostSum.mode
    monkeypatch.setenv("MINIDIFF_CUDA_AWARE_MPI", "1")
    assert choose_mode(types.SimpleNamespace(nccl=None)) == "mpi"
    monkeypatch.setenv("MINIDIFF_GPU_ALLREDUCE", "nccl")
    with pytest.raises(RuntimeError, match="CuPy has no NCCL"):
        choose_mode(types.SimpleNamespace(nccl=None))
    monkeypatch.setenv("MINIDIFF_GPU_ALLREDUCE", "gloo")
    with pytest.raises(ValueError, match="MINIDIFF_GPU_ALLREDUCE: expected one of"):
        choose_mode(types.SimpleNamespace(nccl=None))


def test_a_stuck_nccl_allreduce_times_out_and_aborts_the_communicator(device_pointers, monkeypatch):
    from minidiff.distributed import CollectiveTimeout
    from minidiff.distributed.device import NcclSum
    nccl, log = FakeNccl(), []

    class Stuck(FakeStream):
        def record(self):
            return types.SimpleNamespace(done=False)          # the peer never joins

    def body(world):
        world.cuda = types.SimpleNamespace(nccl=nccl, get_current_stream=lambda: Stuck(world.rank, log))
        nccl_sum = NcclSum(world, world.cuda)
        nccl_sum.comm.allReduce = lambda *args: None
        with pytest.raises(CollectiveTimeout, match=f"rank {world.rank} of 2 waited 0.2 s in allreduce"):
            nccl_sum(xp.zeros(4), "allreduce(gradient)")
    run_ranks(2, body, timeout=0.2)
    assert sorted(c[1] for c in nccl.calls if c[0] == "abort") == [0, 1]
    assert any(c[0] == "check_async_error" for c in nccl.calls)
