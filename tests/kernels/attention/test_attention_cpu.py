"""The Numba CPU attention kernels (kernels/attention/cpu.py) against kernels/attention/reference.py."""
import numpy as np
import pytest

pytest.importorskip("numba")

from minidiff import kernels
from minidiff.kernels.attention import cpu as attention_cpu
from minidiff.kernels.attention.reference import attention_backward_reference, attention_forward_reference
from minidiff.kernels.check import check_attention_errors, check_kernel

# (B, N, C, heads): batch 1, one token, one head, odd N and d, the U-Net's 7x7 tokens
SHAPES = [(1, 1, 1, 1), (2, 5, 6, 2), (1, 7, 9, 3), (3, 49, 48, 4), (2, 13, 8, 8)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_and_backward_match_reference(shape, dtype):
    B, N, C, heads = shape
    rng = np.random.default_rng(sum(shape))
    qkv = rng.standard_normal((B, N, 3 * C)).astype(dtype)
    d_out = rng.standard_normal((B, N, C)).astype(dtype)
    scale = 1.0 / np.sqrt(C // heads).item()
    out, P = check_kernel(attention_cpu.attention_forward_cpu, attention_forward_reference, (qkv, heads, scale))
    d_qkv = check_kernel(attention_cpu.attention_backward_cpu, attention_backward_reference,
                         (d_out, qkv, P, heads, scale))
    assert out.dtype == P.dtype == d_qkv.dtype == dtype
    np.testing.assert_allclose(P.sum(axis=-1), 1.0, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_softmax_is_stable_for_large_scores():
    """Scores of +-1000 would overflow exp without the max subtraction."""
    qkv = np.zeros((1, 3, 3))
    qkv[0, :, 0] = [10.0, 10.0, 10.0]          # q
    qkv[0, :, 1] = [100.0, 100.0, -100.0]      # k: scores 1000, 1000, -1000
    qkv[0, :, 2] = [1.0, 3.0, 5.0]             # v
    out, P = attention_cpu.attention_forward_cpu(qkv, 1, 1.0)
    np.testing.assert_allclose(P[0, 0], [[0.5, 0.5, 0.0]] * 3, atol=1e-15)
    np.testing.assert_allclose(out[0, :, 0], 2.0)


def test_dispatch_sends_numpy_to_the_kernel_and_reference_mode_to_the_reference(monkeypatch):
    used = []
    real = attention_cpu.attention_forward_cpu
    monkeypatch.setattr(attention_cpu, "attention_forward_cpu", lambda *a: used.append(1) or real(*a))
    qkv = np.random.default_rng(0).standard_normal((2, 4, 6))
    fast = kernels.attention_forward(qkv, 2, 0.5)
    with kernels.reference_mode():
        ref = kernels.attention_forward(qkv, 2, 0.5)
    assert used == [1]
    for a, b in zip(fast, ref):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_bad_shapes_raise():
    check_attention_errors(attention_cpu.attention_forward_cpu, attention_cpu.attention_backward_cpu)
