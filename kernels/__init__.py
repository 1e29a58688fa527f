"""minidiff.kernels: the hot loops, each as a NumPy reference, a Numba CPU
kernel and a Numba CUDA kernel side by side (installed from the top-level
`kernels/` folder under the `minidiff` namespace).

Layers call the dispatching functions below; they pick the implementation
from the array type (see dispatch.py).
"""
from .dispatch import conv2d_backward, conv2d_forward

__all__ = ["conv2d_forward", "conv2d_backward"]
