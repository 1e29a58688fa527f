"""Who takes which rows: `share`, and the one-process world whose collectives are the identity.

    share(n, rank, size) -> (lo, hi)      rank's contiguous rows of n; the first n mod size ranks get one more

A world object (LocalWorld here, MPIWorld in comm.py) names the ranks and
carries the few collectives minidiff needs. Every collective takes `what`, a
short name used in the message when a peer never arrives (faults.py).
"""
import numpy as np


def share(n, rank, size):
    """(lo, hi): the rows [lo, hi) of n that rank takes.   share(32, 1, 2) == (16, 32); share(5, 2, 3) == (4, 5)"""
    base, extra = divmod(int(n), int(size))
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


class LocalWorld:
    """One process, rank 0 of 1: every collective returns its input, nothing is imported."""
    rank, size, local_rank, local_size = 0, 1, 0, 1
    is_root = True

    def share(self, n):
        return 0, int(n)

    def allreduce_sum_(self, a, what="allreduce"):
        return a

    def sum_scalars(self, values, what="allreduce"):
        return np.asarray(values, dtype=np.float64)

    def bcast_(self, a, what="broadcast"):
        return a

    def bcast_json(self, obj, what="broadcast"):
        return obj

    def gather_rows(self, a, what="gather"):
        return a

    def barrier(self, what="barrier"):
        pass

    def __repr__(self):
        return "LocalWorld(rank 0 of 1)"
