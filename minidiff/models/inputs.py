"""Input checks shared by the models: the batch x and the integer (B,) arrays t and labels.

Each raises a ValueError / TypeError naming the model, the argument, the value and what was
expected, before the model does any work.
"""
import numpy as np

from ..nn.layer import index_out_of_range


def check_x(x, owner, sample_shape=None, sample_desc=None):
    """x (B, *sample_shape): float32 / float64, B >= 1, and the sample shape when given
    (None entries match any size); sample_desc names it in the message."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{owner}: x must be an array, got {type(x).__name__}")
    shape = tuple(x.shape)
    if sample_shape is not None and (len(shape) != len(sample_shape) + 1 or any(
            want is not None and got != want for got, want in zip(shape[1:], sample_shape))):
        raise ValueError(f"{owner}: x must be (B, {sample_desc}), got {shape}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{owner}: x must be float32 or float64, got {x.dtype}")
    if not shape or shape[0] == 0:
        raise ValueError(f"{owner}: x must be a batch of B >= 1 samples, got an empty batch {shape}")
    return x


def index_array(a, owner, name, B, high, xp):
    """a as an integer (B,) array on x's device (module xp). The range [0, high] is checked
    when `a` is on the host (a device check would force a sync every step)."""
    on_host = not hasattr(a, "shape") or isinstance(a, np.ndarray)
    if on_host:
        a = np.asarray(a)
    if a.shape != (B,) or a.dtype.kind not in "iu":
        raise ValueError(f"{owner}: {name} must be an integer array of shape ({B},), "
                         f"got {a.dtype} {tuple(a.shape)}")
    if on_host:
        if index_out_of_range(a, high):
            raise ValueError(f"{owner}: {name} must be in [0, {high}], got values in [{a.min()}, {a.max()}]")
        a = a if xp is np else xp.asarray(a)                           # explicit host -> device copy
    return a


def check_seed(seed, owner, generator=False):
    """seed: an int >= 0 (or, when `generator`, also None or a numpy Generator), as given."""
    if generator and (seed is None or isinstance(seed, np.random.Generator)):
        return seed
    expected = f"{owner}: seed must be an integer >= 0" + (" or a numpy Generator" if generator else "")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{expected}, got {seed!r}")
    if seed < 0:
        raise ValueError(f"{expected}, got {seed!r}")
    return seed
