"""The in-place sum over ranks of a CuPy array (the flat gradient): NCCL, a CUDA-aware MPI, or the host.

    nccl   CuPy's cupy.cuda.nccl (ChainerMN's recipe). Rank 0's ncclUniqueId is
           broadcast over MPI and every rank builds NcclCommunicator(size, id, rank)
           once, on the first sum. A sum is ncclAllReduce(ptr, ptr, count, dtype,
           ncclSum) on the current CuPy stream: in place, after the kernels that
           wrote the gradient and before the ones that read it, with no host copy.
           An event recorded after it is polled against the deadline (with
           ncclCommGetAsyncError); on timeout the communicator is aborted.
    mpi    a CUDA-aware MPI reads device memory itself: the current stream is
           synchronised, then Iallreduce(IN_PLACE) on the CuPy array (mpi4py passes
           it by __cuda_array_interface__).
    host   explicit copies: to_host, Iallreduce, copy back. Any MPI; two PCIe copies per step.

MINIDIFF_GPU_ALLREDUCE=nccl|mpi|host picks one. By default: nccl when
cupy.cuda.nccl is available, else mpi when MINIDIFF_CUDA_AWARE_MPI=1 says the
MPI is CUDA-aware (a device pointer given to one that is not crashes it), else
host, with a warning.
"""
import os
import warnings

import numpy as np

from ..backend import get_xp, to_host
from . import faults

MODES = ("nccl", "mpi", "host")


def cupy_cuda():
    """cupy.cuda, with .nccl set to the NCCL bindings or None when CuPy has none."""
    import cupy.cuda
    try:
        from cupy.cuda import nccl
    except ImportError:  # pragma: no cover - depends on the CuPy build
        nccl = None
    if nccl is not None and not getattr(nccl, "available", True):
        nccl = None
    cupy.cuda.nccl = nccl
    return cupy.cuda


def choose_mode(cuda):
    mode = os.environ.get("MINIDIFF_GPU_ALLREDUCE", "auto").strip().lower()
    if mode not in MODES + ("auto",):
        raise ValueError(f"MINIDIFF_GPU_ALLREDUCE: expected one of {list(MODES)} or 'auto', got {mode!r}")
    if mode == "nccl" and getattr(cuda, "nccl", None) is None:
        raise RuntimeError("MINIDIFF_GPU_ALLREDUCE=nccl: CuPy has no NCCL (pip install nvidia-nccl-cu12)")
    if mode != "auto":
        return mode
    if getattr(cuda, "nccl", None) is not None:
        return "nccl"
    if os.environ.get("MINIDIFF_CUDA_AWARE_MPI") == "1":
        return "mpi"
    warnings.warn("minidiff.distributed: no NCCL in CuPy and MINIDIFF_CUDA_AWARE_MPI is not 1: the gradient "
                  "all-reduce goes through host memory (two copies per step); see docs/distributed.md",
                  RuntimeWarning, stacklevel=3)
    return "host"


def device_sum(world):
    """The sum function for device arrays of `world` (an MPIWorld): f(a, what), in place."""
    cuda = world.cuda if world.cuda is not None else cupy_cuda()
    return {"nccl": NcclSum, "mpi": CudaAwareMpiSum, "host": HostSum}[choose_mode(cuda)](world, cuda)


def _check(a):
    if not a.flags.c_contiguous:
        raise ValueError("allreduce: expected a contiguous device array (the flat gradient)")


class NcclSum:
    """a <- sum over ranks through ncclAllReduce on the current stream."""
    mode = "nccl"

    def __init__(self, world, cuda):
        self.world, self.cuda, self.nccl = world, cuda, cuda.nccl
        uid = world.bcast_json(list(self.nccl.get_unique_id()) if world.is_root else None,
                               "broadcast(NCCL unique id)")
        self.comm = self.nccl.NcclCommunicator(world.size, tuple(uid), world.rank)
        self.dtypes = {np.dtype(np.float32): self.nccl.NCCL_FLOAT32, np.dtype(np.float64): self.nccl.NCCL_FLOAT64}

    def __call__(self, a, what):
        _check(a)
        code = self.dtypes.get(np.dtype(a.dtype))
        if code is None:
            raise TypeError(f"allreduce: NCCL path takes float32 or float64, got {a.dtype}")
        stream = self.cuda.get_current_stream()
        ptr = a.data.ptr
        self.comm.allReduce(ptr, ptr, a.size, code, self.nccl.NCCL_SUM, stream.ptr)   # in place, enqueued
        event = stream.record()

        def done():
            self.comm.check_async_error()           # raises NcclError if NCCL saw a peer fail
            return event.done

        try:
            faults.wait(done, what, self.world.rank, self.world.size, self.world.timeout)
        except BaseException:
            self.comm.abort()                       # ncclCommAbort: frees the kernels waiting for the peer
            raise


class CudaAwareMpiSum:
    """a <- sum over ranks by an MPI that reads device memory."""
    mode = "mpi"

    def __init__(self, world, cuda):
        self.world, self.cuda = world, cuda

    def __call__(self, a, what):
        _check(a)
        self.cuda.get_current_stream().synchronize()    # MPI does not know CuPy's stream
        w = self.world
        w.wait(w.comm.Iallreduce(w.MPI.IN_PLACE, a, op=w.MPI.SUM), what)


class HostSum:
    """a <- sum over ranks through host memory (explicit copies)."""
    mode = "host"

    def __init__(self, world, cuda):
        self.world = world

    def __call__(self, a, what):
        _check(a)
        host = np.ascontiguousarray(to_host(a))          # explicit device -> host copy
        self.world.allreduce_sum_(host, what)
        a[...] = get_xp(a).asarray(host)                 # explicit host -> device copy
