"""Argument checks shared by the DDPM (gaussian.py) and DDIM (ddim.py) methods: each returns the
value to use or raises a TypeError / ValueError naming the argument, the value and what was expected."""
import numbers

import numpy as np

from ..backend import as_rng


def check_clip_denoised(clip_denoised, allow_none=True):
    """True, False (or None: the diffusion's default, when allow_none) -> the value."""
    if clip_denoised is None and allow_none:
        return None
    if not isinstance(clip_denoised, (bool, np.bool_)):
        expected = "True, False or None (the diffusion's default)" if allow_none else "True or False"
        raise TypeError(f"clip_denoised: expected {expected}, got {clip_denoised!r}")
    return bool(clip_denoised)


def check_rng(rng):
    """None, a seed (an int >= 0), a SeedSequence / BitGenerator or a numpy Generator -> a Generator."""
    if isinstance(rng, (np.random.Generator, np.random.SeedSequence, np.random.BitGenerator)) or rng is None:
        return as_rng(rng)
    expected = "rng: expected None, a seed (an int >= 0) or a numpy.random.Generator"
    if isinstance(rng, bool) or not isinstance(rng, numbers.Integral):
        raise TypeError(f"{expected}, got {rng!r}")
    if rng < 0:
        raise ValueError(f"{expected}, got {rng!r}")
    return as_rng(int(rng))


def check_data_shape(data_shape):
    """The shape of one sample: a sequence of positive ints -> a tuple."""
    try:
        shape = tuple(data_shape)
        ok = all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 1 for d in shape)
    except TypeError:
        ok = False
    if not ok or isinstance(data_shape, str):
        raise ValueError(f"data_shape: expected positive ints, got {data_shape!r}")
    return tuple(int(d) for d in shape)
