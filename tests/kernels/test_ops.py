"""The face (kernels/ops.py): each operation calls the kernel its arrays route to, or the
reference, and gives the reference's numbers."""
import numpy as np
import pytest

pytest.importorskip("numba")

import minidiff.kernels as K
from minidiff.kernels.check import check_kernel, conv_backward_case, conv_case, ddim_case, ddpm_case
from minidiff.kernels.conv import cpu as conv_cpu
from minidiff.kernels.conv import cpu_3x3, cpu_4x4s2
from minidiff.kernels.conv import reference as conv_reference
from minidiff.kernels.conv.reference_3x3 import conv3x3_forward_reference
from minidiff.kernels.sampling import reference as sampling

DTYPES = [np.float32, np.float64]


def test_dispatch_calls_the_kernel_or_the_reference(monkeypatch):
    """A 3x3 s1 p1 conv on NumPy arrays goes to the direct 3x3 kernel (conv/cpu_3x3.py), on
    the reference path to its reference (conv/reference_3x3.py)."""
    calls = []
    for module, name in ((conv_cpu, "conv2d_forward_cpu"), (cpu_3x3, "conv3x3_forward_cpu"),
                         (cpu_4x4s2, "conv4x4s2_forward_cpu")):
        monkeypatch.setattr(module, name, lambda *a, _n=name: calls.append(_n) or _n)
    rng = np.random.default_rng(9)
    args = conv_case(rng, 1, 2, 3, 5, 5, 3, 1, 1)
    assert K.conv2d_forward(*args) == "conv3x3_forward_cpu"
    with K.reference_mode():
        y = K.conv2d_forward(*args)
    np.testing.assert_array_equal(y, conv3x3_forward_reference(*args[:3]))
    assert calls == ["conv3x3_forward_cpu"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_dispatched_results_match_reference(dtype):
    rng = np.random.default_rng(10)
    check_kernel(K.conv2d_forward, conv_reference.conv2d_forward_reference,
                 conv_case(rng, 2, 3, 4, 7, 7, 3, 1, 1, dtype=dtype))
    check_kernel(K.conv2d_backward, conv_reference.conv2d_backward_reference,
                 conv_backward_case(rng, 2, 3, 4, 8, 8, 4, 2, 1, dtype=dtype))
    check_kernel(K.ddpm_step, sampling.ddpm_step_reference, ddpm_case(rng, (2, 1, 5, 5), dtype))
    check_kernel(K.ddim_step, sampling.ddim_step_reference, ddim_case(rng, (2, 1, 5, 5), dtype))
