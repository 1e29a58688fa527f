"""A stand-in for mpi4py in one process: N threads play N ranks (for the tests without mpiexec).

ThreadComm implements the part of mpi4py's Comm that minidiff.distributed.comm
uses (Get_rank, Get_size, Split_type, Iallreduce, Ibcast, Igather, Igatherv,
Ibarrier, Abort). Each collective is an all-to-all exchange of copies through a
shared Hub (a threading.Barrier), done inside the call; the request it returns
is already complete. Sums add the ranks' arrays in rank order, as MPI does for
two ranks. Arrays may be NumPy or the fake device's (tests/fakecupy.py): a
device array given to Iallreduce plays a CUDA-aware MPI.

    results = run_ranks(3, lambda world: train(..., world=world))
"""
import threading
import types

import numpy as np

from fakecupy import DeviceArray
from minidiff.distributed.comm import MPIWorld

IN_PLACE = object()
MPI = types.SimpleNamespace(IN_PLACE=IN_PLACE, SUM="sum", BYTE="byte", COMM_TYPE_SHARED="shared")


class Hub:
    def __init__(self, size):
        self.size = size
        self.barrier = threading.Barrier(size, timeout=60)
        self.slots = [None] * size
        self.calls = [[] for _ in range(size)]          # per rank: the collectives called, in order

    def exchange(self, rank, what, value):
        self.calls[rank].append(what)
        self.slots[rank] = value
        self.barrier.wait()
        out = list(self.slots)
        self.barrier.wait()                             # all have read before the next write
        return out


class Done:
    def Test(self):
        return True


def _host(a):
    return a._data if isinstance(a, DeviceArray) else a


class ThreadComm:
    def __init__(self, hub, rank):
        self.hub, self.rank = hub, rank

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.hub.size

    def Split_type(self, kind, key=0):
        assert kind == MPI.COMM_TYPE_SHARED
        return self

    def Iallreduce(self, sendbuf, recvbuf, op=None):
        assert sendbuf is IN_PLACE and op == MPI.SUM
        parts = self.hub.exchange(self.rank, f"Iallreduce({type(recvbuf).__name__})", _host(recvbuf).copy())
        total = parts[0]
        for p in parts[1:]:
            total = total + p
        _host(recvbuf)[...] = total
        return Done()

    def Ibcast(self, buf, root=0):
        parts = self.hub.exchange(self.rank, "Ibcast", buf.copy() if self.rank == root else None)
        buf[...] = parts[root]
        return Done()

    def Igather(self, sendbuf, recvbuf, root=0):
        parts = self.hub.exchange(self.rank, "Igather", sendbuf.copy())
        if self.rank == root:
            recvbuf[...] = np.stack(parts)
        return Done()

    def Igatherv(self, sendbuf, recvbuf, root=0):
        parts = self.hub.exchange(self.rank, "Igatherv", sendbuf.copy())
        if self.rank == root:
            recv, counts, displs, kind = recvbuf
            assert kind == MPI.BYTE and list(counts) == [p.size for p in parts]
            recv[...] = np.concatenate(parts)
        return Done()

    def Ibarrier(self):
        self.hub.exchange(self.rank, "Ibarrier", None)
        return Done()

    def Abort(self, code=1):
        raise RuntimeError(f"ThreadComm.Abort({code})")


def run_ranks(size, fn, cuda=None, timeout=60.0):
    """[fn(world_r) for each rank r], each in its own thread; the first exception is re-raised."""
    hub = Hub(size)
    results, errors = [None] * size, [None] * size

    def body(rank):
        try:
            cu = cuda(rank) if callable(cuda) else cuda
            results[rank] = fn(MPIWorld(ThreadComm(hub, rank), MPI, timeout=timeout, cuda=cu))
        except BaseException as e:          # noqa: BLE001 - handed to the caller
            errors[rank] = e
            hub.barrier.abort()             # the other ranks stop waiting for this one

    threads = [threading.Thread(target=body, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    first = next((e for e in errors if e is not None and not isinstance(e, threading.BrokenBarrierError)),
                 next((e for e in errors if e is not None), None))
    if first is not None:
        raise first
    run_ranks.last_hub = hub
    return results
