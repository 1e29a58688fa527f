"""Set-up from the environment: the world this process belongs to.

    get_world()            LocalWorld, unless an MPI launcher started this process among
                           several: then MPIWorld(mpi4py's COMM_WORLD). Built once, cached.
    init(comm, timeout)    the same from an explicit communicator and deadline

mpi4py is imported only in the second case, so `import minidiff` and a single
process need nothing but NumPy. A launcher says it started several ranks through
its environment: OMPI_COMM_WORLD_SIZE (Open MPI), PMI_SIZE (MPICH's hydra,
Intel MPI, Slurm's PMI2), MV2_COMM_WORLD_SIZE (MVAPICH), PMIX_RANK (PMIx
launchers; the size is then asked of MPI).

An MPIWorld from here also
  - aborts every rank when one has an uncaught exception (faults.py);
  - shares this machine's cores between its ranks: Numba's and BLAS' threads per
    rank = cores // ranks on this machine (at least 1), unless NUMBA_NUM_THREADS or
    OMP_NUM_THREADS is set. Two ranks of two OpenMP threads on two cores would
    spin against each other.
"""
import os
import sys

from . import faults
from .world import LocalWorld

_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")
_state = {"world": None, "limits": None}


def launched_size():
    """(variable, ranks) as a launcher set them; ranks None if only PMIX_RANK says so; (None, 1) if none."""
    for name in _SIZE_VARIABLES:
        if name in os.environ:
            try:
                return name, int(os.environ[name])
            except ValueError:
                raise ValueError(f"{name}: expected an integer number of ranks, got {os.environ[name]!r}") from None
    if "PMIX_RANK" in os.environ:
        return "PMIX_RANK", None
    return None, 1


def get_world(world=None):
    """The world to train and sample in: `world` itself if given, else the cached one from the environment."""
    if world is not None:
        for name in ("rank", "size", "is_root", "share", "allreduce_sum_", "sum_scalars", "bcast_",
                     "bcast_json", "gather_rows"):
            if not hasattr(world, name):
                raise TypeError(f"world: expected a LocalWorld or MPIWorld, got {type(world).__name__} "
                                f"(no {name!r})")
        return world
    if _state["world"] is None:
        name, size = launched_size()
        if size is not None and size <= 1:
            _state["world"] = LocalWorld()
        else:
            try:
                from mpi4py import MPI  # noqa: F401
            except ImportError:
                raise ImportError(f"this process was started by an MPI launcher ({name}={os.environ[name]}) but "
                                  f"mpi4py is not installed: pip install -e '.[dist]' "
                                  f"(docs/distributed.md)") from None
            init()
    return _state["world"]


def init(comm=None, timeout=None):
    """The world of `comm` (default mpi4py's COMM_WORLD) with a deadline of `timeout` s per collective.

    Becomes the world get_world() returns. One rank: a LocalWorld.
    """
    from mpi4py import MPI

    from .comm import MPIWorld
    comm = MPI.COMM_WORLD if comm is None else comm
    if comm.Get_size() == 1:
        world = LocalWorld()
    else:
        world = MPIWorld(comm, MPI, timeout=timeout)
        faults.abort_on_uncaught_exception(world.abort, world.rank, world.size)
        share_cores(world.local_size)
    _state["world"] = world
    return world


def share_cores(ranks_here):
    """Threads per rank = this machine's cores // its ranks (>= 1); None when the environment sets them."""
    if "NUMBA_NUM_THREADS" in os.environ or "OMP_NUM_THREADS" in os.environ:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = max(1, cores // max(1, ranks_here))
    if "numba" in sys.modules:
        from minidiff.kernels.runtime import numba_threads  # noqa: F401  (the threading layer before threads start)
        import numba
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    else:
        os.environ["NUMBA_NUM_THREADS"] = str(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return n
    _state["limits"] = threadpool_limits(limits=n)      # BLAS / OpenMP pools already loaded (NumPy's BLAS)
    return n


def select_gpu(world=None):
    """One rank per GPU: GPU (local rank mod GPUs on this machine) becomes CuPy's current device -> its id.

    Call it before building the model. NCCL refuses two ranks on one GPU, so more ranks than
    GPUs on a machine is an error.
    """
    world = get_world(world)
    from ..backend import cupy_module
    cupy = cupy_module()
    count = int(cupy.cuda.runtime.getDeviceCount())
    if world.local_size > count:
        raise RuntimeError(f"select_gpu: {world.local_size} ranks on this machine but {count} GPU(s); "
                           f"start at most one rank per GPU (mpiexec -n {max(count, 1)} per machine)")
    device = world.local_rank % count
    cupy.cuda.Device(device).use()
    return device
