"""MPIWorld: the collectives of minidiff over an mpi4py communicator, each with a deadline.

    allreduce_sum_(a)    a <- sum over ranks, in place: NumPy through MPI, CuPy through device.py (NCCL)
    sum_scalars(v)       a few host floats summed over ranks (the loss, the validation loss)
    bcast_(a)            a <- rank 0's a, in place (start-up; a CuPy array goes through the host)
    bcast_json(obj)      rank 0's JSON-able obj on every rank (rng state, history: no pickle)
    gather_rows(a)       rank 0 gets every rank's rows (n_r, ...) in rank order, the others None
    barrier()

Every call is the non-blocking MPI collective polled by faults.wait, so a dead
peer ends in CollectiveTimeout after `timeout` seconds instead of a hang.
mpi4py's lower-case methods pickle Python objects; minidiff only sends arrays
(and JSON as bytes).
"""
import json

import numpy as np

from ..backend import get_xp, to_host
from . import faults
from .world import share


class MPIWorld:
    """MPIWorld(comm, MPI, timeout=None, cuda=None): rank `comm.Get_rank()` of `comm.Get_size()`.

    MPI is the mpi4py.MPI module; cuda is CuPy's `cupy.cuda` (imported on the first
    device array when None); tests pass doubles of both.
    """

    def __init__(self, comm, MPI, timeout=None, cuda=None):
        self.comm, self.MPI = comm, MPI
        self.rank, self.size = int(comm.Get_rank()), int(comm.Get_size())
        self.is_root = self.rank == 0
        self.timeout = faults.default_timeout() if timeout is None else faults.check_timeout(timeout)
        node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)   # the ranks on this machine
        self.local_rank, self.local_size = int(node.Get_rank()), int(node.Get_size())
        self.cuda = cuda
        self._device_sum = None

    def __repr__(self):
        return f"MPIWorld(rank {self.rank} of {self.size}, local {self.local_rank} of {self.local_size})"

    def share(self, n):
        return share(n, self.rank, self.size)

    def wait(self, request, what):
        faults.wait(request.Test, what, self.rank, self.size, self.timeout)

    def abort(self, code=1):
        self.comm.Abort(code)

    # --- sums -----------------------------------------------------------------------
    def allreduce_sum_(self, a, what="allreduce"):
        """a <- sum_r a_r on every rank, in place; a is a contiguous NumPy or CuPy array."""
        if isinstance(a, np.ndarray):
            self.wait(self.comm.Iallreduce(self.MPI.IN_PLACE, a, op=self.MPI.SUM), what)
            return a
        if self._device_sum is None:
            from .device import device_sum
            self._device_sum = device_sum(self)
        self._device_sum(a, what)
        return a

    def sum_scalars(self, values, what="allreduce"):
        """(k,) host float64 sums over ranks of this rank's `values`."""
        a = np.array(values, dtype=np.float64).reshape(-1)
        self.wait(self.comm.Iallreduce(self.MPI.IN_PLACE, a, op=self.MPI.SUM), what)
        return a

    # --- from rank 0 ------------------------------------------------------------------
    def bcast_(self, a, what="broadcast"):
        """a <- rank 0's a, in place (same shape and dtype on every rank)."""
        if isinstance(a, np.ndarray):
            self.wait(self.comm.Ibcast(a, root=0), what)
            return a
        host = np.ascontiguousarray(to_host(a))                   # explicit copy: start-up only
        self.wait(self.comm.Ibcast(host, root=0), what)
        if not self.is_root:
            a[...] = get_xp(a).asarray(host)
        return a

    def bcast_json(self, obj, what="broadcast"):
        """Rank 0's obj (JSON-able) on every rank, as JSON decodes it (tuples become lists)."""
        data = json.dumps(obj).encode() if self.is_root else b""
        n = np.array([len(data)], dtype=np.int64)
        self.wait(self.comm.Ibcast(n, root=0), what)
        buf = np.frombuffer(data, dtype=np.uint8).copy() if self.is_root else np.empty(int(n[0]), np.uint8)
        self.wait(self.comm.Ibcast(buf, root=0), what)
        return json.loads(buf.tobytes().decode())

    # --- to rank 0 ----------------------------------------------------------------------
    def gather_rows(self, a, what="gather"):
        """Rank 0: the host arrays (n_r, ...) of every rank stacked in rank order; others: None.

        A rank with no rows passes None. Rows travel as bytes (one Igatherv), so every
        rank must hold the same dtype and row shape as rank 0, which checks it.
        """
        if a is not None:
            a = np.ascontiguousarray(a)
            if a.ndim < 1:
                raise ValueError(f"gather_rows: expected an array (n, ...), got shape {a.shape}")
        meta = np.array([-1, 0, 0] if a is None else [a.shape[0], a.nbytes, a.dtype.num], dtype=np.int64)
        metas = np.empty((self.size, 3), dtype=np.int64) if self.is_root else None
        self.wait(self.comm.Igather(meta, metas, root=0), what)
        send = np.empty(0, np.uint8) if a is None else a.reshape(-1).view(np.uint8)
        if not self.is_root:
            self.wait(self.comm.Igatherv(send, None, root=0), what)
            return None
        if a is None:
            raise ValueError("gather_rows: rank 0 must hold rows (it takes the first share)")
        counts = metas[:, 1]
        displs = np.concatenate([[0], np.cumsum(counts)[:-1]])
        recv = np.empty(int(counts.sum()), dtype=np.uint8)
        self.wait(self.comm.Igatherv(send, [recv, counts, displs, self.MPI.BYTE], root=0), what)
        row_bytes = a.dtype.itemsize * int(np.prod(a.shape[1:]))
        for r, (rows, nbytes, num) in enumerate(metas):
            if rows >= 0 and (num != a.dtype.num or nbytes != rows * row_bytes):
                raise ValueError(f"gather_rows: rank {r} sent {rows} rows of dtype number {num} in {nbytes} "
                                 f"bytes; rank 0 holds {a.dtype} rows of {row_bytes} bytes")
        return recv.view(a.dtype).reshape((-1,) + a.shape[1:])

    def barrier(self, what="barrier"):
        self.wait(self.comm.Ibarrier(), what)
