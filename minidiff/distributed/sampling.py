"""Sampling on several ranks: each rank draws its share of the samples from its own stream; rank 0 gathers.

    rank_rng(seed, world)                   rank 0: default_rng(seed), as one process;
                                            rank r >= 1: default_rng(SeedSequence(seed, spawn_key=(r,)))
    sample(loop, shape, labels=, seed=, world=, **kw)
                                            rank 0: all shape[0] samples (host), in order; others: None

Rank r's stream depends on (seed, r) only, not on the number of ranks, and is
independent of the others (SeedSequence's children). With one rank the samples
are exactly those of loop(shape, rng=seed). With N ranks, rank r samples rows
share(n, r, N) of the request (their labels, when given), so the gathered
samples keep the requested order (sample i has labels[i]); their noise differs
from a one-process run but has the same distribution.
"""
import numbers

import numpy as np

from ..backend import to_host
from .launch import get_world


def rank_rng(seed, world=None):
    """This rank's own Generator from an int seed (None: fresh entropy on every rank)."""
    world = get_world(world)
    if world.rank == 0:
        return np.random.default_rng(seed)
    if seed is None:
        return np.random.default_rng()
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise TypeError(f"seed: expected a non-negative int (or None) to derive each rank's stream, got {seed!r}")
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(world.rank,)))


def sample(loop, shape, *, labels=None, seed=None, world=None, **kwargs):
    """Split shape[0] samples between ranks, run loop(shape_r, labels=labels_r, rng=rank_rng(seed), **kwargs)
    on each, and gather the host arrays (n, ...) on rank 0 (the others get None).

    loop: diffusion.p_sample_loop or diffusion.ddim_sample_loop (or any with that signature).
    """
    world = get_world(world)
    shape = tuple(int(d) for d in shape)
    n = shape[0]
    if n < world.size:
        raise ValueError(f"shape: {n} samples cannot be split between {world.size} ranks (at least one each)")
    if labels is not None and len(labels) != n:
        raise ValueError(f"labels: expected {n} labels, one per sample, got {len(labels)}")
    lo, hi = world.share(n)
    rng = rank_rng(seed, world) if world.size > 1 else seed
    if labels is not None:
        kwargs["labels"] = labels[lo:hi]
    x = loop((hi - lo,) + shape[1:], rng=rng, **kwargs)
    return world.gather_rows(to_host(x), "gather(samples)")
