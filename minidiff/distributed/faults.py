"""When a rank dies, the others stop within a bounded time instead of waiting in a collective.

Two guards, installed by `get_world()` when MPI runs several ranks:

- every collective is non-blocking (Iallreduce, Ibcast, Igatherv, ...) and
  polled by `wait`: after `timeout` seconds without completion it raises
  CollectiveTimeout, naming the rank, the collective and the bound;
- `abort_on_uncaught_exception` makes an uncaught exception on any rank (that
  CollectiveTimeout, a MemoryError, a bug) print its traceback and call
  MPI.COMM_WORLD.Abort(1), which ends every rank of the job at once.

A rank killed by a signal is usually cleaned up by the launcher itself (MPICH's
hydra and Open MPI's mpirun end the job); when it is not, or when a rank hangs,
the others reach the timeout. Checkpoints are written atomically by rank 0
(checkpoint.py), so whatever ends the run, the last one stays intact.

The bound: MINIDIFF_DIST_TIMEOUT seconds (default 300), or get_world(timeout=...).
It must exceed the longest legitimate wait of one rank for another, e.g. rank 0
writing a checkpoint or the first step's kernel compilation on a slow rank.
"""
import os
import sys
import time

DEFAULT_TIMEOUT = 300.0
_SPIN = 1e-3          # seconds of busy polling before sleeping between polls
_MAX_PAUSE = 2e-3     # the longest sleep between two polls (the added latency when a peer is late)


class CollectiveTimeout(RuntimeError):
    """A collective did not complete within the bound: a peer died, hung or raised."""


def check_timeout(timeout, name="timeout"):
    try:
        value = float(timeout)
    except (TypeError, ValueError):
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name}: expected a number of seconds > 0, got {timeout!r}")
    return value


def default_timeout():
    """MINIDIFF_DIST_TIMEOUT (seconds) or DEFAULT_TIMEOUT."""
    value = os.environ.get("MINIDIFF_DIST_TIMEOUT")
    return DEFAULT_TIMEOUT if value is None else check_timeout(value, "MINIDIFF_DIST_TIMEOUT")


def timeout_message(rank, size, what, timeout):
    return (f"minidiff.distributed: rank {rank} of {size} waited {timeout:g} s in {what} and no peer "
            f"arrived: another rank has died, hung or raised. Stopping this run (the last checkpoint "
            f"is intact). MINIDIFF_DIST_TIMEOUT sets the bound.")


def wait(done, what, rank, size, timeout):
    """Poll done() (e.g. request.Test) until True; CollectiveTimeout after `timeout` seconds.

    Busy for the first millisecond, then sleeping 50 us, 100 us, ... up to 2 ms between polls.
    """
    if done():
        return
    start = time.monotonic()
    pause = 5e-5
    while not done():
        waited = time.monotonic() - start
        if waited > timeout:
            raise CollectiveTimeout(timeout_message(rank, size, what, timeout))
        if waited > _SPIN:
            time.sleep(pause)
            pause = min(2 * pause, _MAX_PAUSE)


ABORT_GRACE = 0.5          # seconds for mpiexec to relay the last output before the abort


def abort_on_uncaught_exception(abort, rank, size):
    """sys.excepthook: print the traceback, say why, then abort(1) every rank of the job.

    The launcher (mpiexec) relays each rank's output through a pipe and drops what it has not
    relayed when the job aborts, so the hook pauses ABORT_GRACE seconds after flushing: without
    the pause the tail of the traceback and the reason were now and then lost (2026-12-07).
    """
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        sys.stderr.write(f"minidiff.distributed: rank {rank} of {size} stopped on an uncaught "
                         f"{kind.__name__}; aborting all {size} ranks (MPI Abort) so that none waits "
                         f"for it in a collective\n")
        sys.stderr.flush()
        time.sleep(ABORT_GRACE)
        abort(1)

    sys.excepthook = hook
    return hook
