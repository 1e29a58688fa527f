"""Data-parallel training and sampling over MPI ranks: mpi4py on CPUs, NCCL for CuPy arrays.

    mpiexec -n 2 python examples/spiral.py        # train() finds the two ranks itself

Every rank holds the whole model and data set; a step shares the rows of each
global batch between the ranks and all-reduces the flat gradient once
(data_parallel.py). A single process, or one started without an MPI launcher, gets
a LocalWorld whose collectives are the identity and runs exactly as before;
mpi4py is imported only when a launcher started several ranks. docs/distributed.md
tells how to run on several processes, GPUs and machines.

    world.py      share(n, rank, size): who takes which rows; LocalWorld
    launch.py     get_world() / init(): the world from the environment; threads per rank; select_gpu()
    comm.py       MPIWorld: the collectives (sum, broadcast, gather), each with a deadline
    device.py     the gradient sum of CuPy arrays: NCCL, a CUDA-aware MPI, or through the host
    faults.py     the deadline (CollectiveTimeout) and the abort of all ranks on an uncaught exception
    data_parallel.py   what train() does per step on several ranks; state broadcast; checkpoints
    sampling.py   per-rank random streams; samples split between ranks, gathered on rank 0

Random streams. Training uses one Generator from the seed, identical on every
rank (shuffles, label drops, t and noise of all B rows of each batch), so a run
is the same on any number of ranks. Sampling gives rank r its own stream:
default_rng(seed) on rank 0, default_rng(SeedSequence(seed, spawn_key=(r,))) on rank r >= 1.
"""
from .faults import CollectiveTimeout
from .launch import get_world, init, select_gpu
from .sampling import rank_rng, sample
from .world import LocalWorld, share

__all__ = ["get_world", "init", "select_gpu", "LocalWorld", "share", "rank_rng", "sample", "CollectiveTimeout",
           "quiet_unless_root"]


def quiet_unless_root(world=None):
    """Send this process's stdout to os.devnull unless it is rank 0 (the examples' prints, once)."""
    import os
    import sys
    if not get_world(world).is_root:
        sys.stdout = open(os.devnull, "w")
