"""Whether a forward pass must keep what backward needs: `with no_grad(): ...` says it need not.

    with minidiff.nn.no_grad():
        eps_hat = model(x_t, t)          # sampling, evaluation: no backward follows

Layers may then take shortcuts that keep nothing for backward (nn.ResBlock runs
its middle GroupNorm+SiLU on the conv kernels' lines, kernels/conv_norm_conv_cpu.py;
the U-Net hands its layers activations on image lanes, kernels/on_lines.py),
and a layer whose last forward did so refuses a backward with a RuntimeError.
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
    """The RuntimeError of a backward whose forward kept nothing: it ran on OnLines
    (kernels/on_lines.py) under no_grad(), or its backward on lines already freed it."""
    return RuntimeError(f"{type(layer).__name__}.backward: nothing kept from the last forward (it ran "
                        "on OnLines under no_grad(), or its backward already ran); run a forward with grad")
