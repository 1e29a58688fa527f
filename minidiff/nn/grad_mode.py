"""Whether a forward pass must keep what backward needs: `with no_grad(): ...` says it need not.

    with minidiff.nn.no_grad():
        eps_hat = model(x_t, t)          # sampling, evaluation: no backward follows

Layers then keep nothing for backward and may take shortcuts (nn.ResBlock runs
as one fused kernel call, kernels.resblock_forward); a layer whose last forward
kept nothing refuses a backward with a RuntimeError.
The sampling loops' model call (diffusion.guided_forward) runs under it.
"""
from contextlib import contextmanager

_grad_enabled = True


def grad_enabled():
    """False inside `with no_grad():`, True otherwise."""
    return _grad_enabled


@contextmanager
def no_grad():
    """Forward passes inside the block need not support a backward pass; restores on exit."""
    global _grad_enabled
    old = _grad_enabled
    _grad_enabled = False
    try:
        yield
    finally:
        _grad_enabled = old


def nothing_kept(layer):
    """The RuntimeError of a backward whose forward kept nothing: it ran under no_grad(),
    or a backward already used (and freed) what it kept."""
    return RuntimeError(f"{type(layer).__name__}.backward: nothing kept from the last forward (it ran "
                        "under no_grad(), or its backward already ran); run a forward with grad")
