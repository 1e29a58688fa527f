"""Every CUDA kernel at the anchor U-Net's sizes (batch 64, 28x28), on real CuPy arrays, through
minidiff.kernels' face, against the NumPy references (the same face under reference_mode).

The simulator suite (tests/kernels/*/*_cuda_check.py) checks the same kernels on
tiny shapes with NumPy arrays standing in for device memory; here they run on a
GPU, zero-copy through __cuda_array_interface__, in float32 and float64, with
the shapes the U-Net gives them: every distinct conv of its forward (3x3, 4x4
stride 2, 1x1, the shared-input and upsample convs), its GroupNorms, its
attention, the sampling steps and Adam on its 326,609 parameters.
"""
import numpy as np
import pytest

from cuda_gate import assert_close, require_cuda, to_gpu

cp = require_cuda()
pytestmark = pytest.mark.gpu

from minidiff import kernels  # noqa: E402
from minidiff.bench import ANCHOR, conv_spec_arrays, describe_conv_spec, unet_conv_calls  # noqa: E402
from minidiff.kernels.check import ddim_case, ddpm_case  # noqa: E402
from minidiff.kernels.conv import cuda as conv_cuda  # noqa: E402
from minidiff.models import UNet  # noqa: E402

B = 64
DTYPES = [np.float32, np.float64]
with kernels.reference_mode():          # a batch-1 host forward records the shapes; no CPU kernel compiles
    CONV_SPECS = sorted(unet_conv_calls(UNet(**ANCHOR), (1, 28, 28)), key=lambda k: describe_conv_spec(k[1]))
BACKWARD = {"conv2d_forward": "conv2d_backward", "conv3x3_shared_forward": "conv3x3_shared_backward",
            "upsample_conv3x3_forward": "upsample_conv3x3_backward"}


def _cast(a, dtype):
    if isinstance(a, np.ndarray):
        return a.astype(dtype)
    if isinstance(a, (list, tuple)):
        return type(a)(_cast(v, dtype) for v in a)
    return a


def _copy(a):
    if isinstance(a, np.ndarray):
        return a.copy()
    if isinstance(a, (list, tuple)):
        return type(a)(_copy(v) for v in a)
    return a


def run_both(op, args, kwargs=None):
    """(GPU result, NumPy reference result) of minidiff.kernels.<op>(*args, **kwargs)."""
    kwargs = kwargs or {}
    face = getattr(kernels, op)
    with kernels.reference_mode():
        want = face(*_copy(args), **{k: _copy(v) for k, v in kwargs.items()})
    got = face(*to_gpu(cp, args), **{k: to_gpu(cp, v) for k, v in kwargs.items()})
    return got, want


def test_cupy_arrays_take_the_numba_cuda_kernels():
    assert kernels.backend_name(cp.zeros(3, cp.float32)) == "numba-cuda"
    assert kernels.backend_name(cp.zeros(3, cp.float64)) == "numba-cuda"
    assert not kernels.reference_forced()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(16, 144, B * 784), (48, 432, B * 49), (96, 128, 256), (7, 5, 3)])
def test_gemm_and_row_sum(shape, dtype):
    """C = A @ B on the tiled kernel (a dimension < CUBLAS_MIN_DIM, as every U-Net conv's) or cuBLAS."""
    M, K, N = shape
    rng = np.random.default_rng(M)
    A, Bm = rng.standard_normal((M, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)
    exact = A.astype(np.float64) @ Bm.astype(np.float64)                # (M, N), rounded once below
    assert_close(conv_cuda.matmul_cuda(cp.asarray(A), cp.asarray(Bm)), exact.astype(dtype), "C")
    assert_close(conv_cuda.row_sum_cuda(cp.asarray(Bm)), Bm.astype(np.float64).sum(axis=1).astype(dtype), "row sums")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op,spec", CONV_SPECS, ids=[describe_conv_spec(s) for _, s in CONV_SPECS])
def test_conv_forward_and_backward_at_unet_shapes(op, spec, dtype):
    rng = np.random.default_rng(len(describe_conv_spec(spec)))
    args = _cast(conv_spec_arrays(op, spec, B, rng), dtype)
    got, want = run_both(op, args)
    assert_close(got, want, op)
    ys = want if isinstance(want, list) else [want]
    dys = [rng.standard_normal(y.shape).astype(dtype) for y in ys]
    if op == "conv2d_forward":
        x, w, _, stride, padding = args
        bargs = (dys[0], x, w, stride, padding)
    elif op == "conv3x3_shared_forward":
        bargs = (dys, args[0], args[1])
    else:
        bargs = (dys[0], args[0], args[1])
    got, want = run_both(BACKWARD[op], bargs)
    for name, g, w in zip(("dx", "dw", "db"), got, want):
        assert_close(g, w, f"{BACKWARD[op]} {name}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C,H,silu,residual", [(16, 28, True, True), (32, 14, True, False), (48, 7, True, True),
                                               (48, 7, False, False)])
def test_groupnorm_silu_at_unet_shapes(C, H, silu, residual, dtype):
    rng = np.random.default_rng(C + H)
    x = (2 * rng.standard_normal((B, C, H, H)) + 0.5).astype(dtype)
    weight, bias = rng.uniform(0.5, 1.5, C).astype(dtype), rng.standard_normal(C).astype(dtype)
    shift = rng.standard_normal((B, C)).astype(dtype)
    res = rng.standard_normal(x.shape).astype(dtype) if residual else None
    got, want = run_both("groupnorm_silu_forward", (x, weight, bias, shift, 8, 1e-5),
                         {"silu": silu, "residual": res})
    assert_close(got, want, "groupnorm_silu_forward")
    _, mean, rstd = want
    dy = rng.standard_normal(x.shape).astype(dtype)
    got, want = run_both("groupnorm_silu_backward", (dy, x, mean, rstd, weight, bias, shift, 8), {"silu": silu})
    assert_close(got, want, "groupnorm_silu_backward")


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_at_unet_shape(dtype):
    """The middle attention: 7x7 = 49 tokens, 48 channels, 4 heads of 12."""
    rng = np.random.default_rng(49)
    qkv, heads, scale = (2 * rng.standard_normal((B, 49, 3 * 48))).astype(dtype), 4, float(1 / np.sqrt(12))
    got, want = run_both("attention_forward", (qkv, heads, scale))
    assert_close(got, want, "attention_forward")
    d_out = rng.standard_normal((B, 49, 48)).astype(dtype)
    got, want = run_both("attention_backward", (d_out, qkv, want[1], heads, scale))
    assert_close(got, want, "attention_backward")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("clip", [True, False])
def test_sampling_steps_at_batch_64(clip, dtype):
    rng = np.random.default_rng(7)
    got, want = run_both("ddpm_step", ddpm_case(rng, (B, 1, 28, 28), dtype), {"clip": clip})
    assert_close(got, want, "ddpm_step")
    got, want = run_both("ddim_step", ddim_case(rng, (B, 1, 28, 28), dtype, eta=0.5), {"clip": clip})
    assert_close(got, want, "ddim_step")


@pytest.mark.parametrize("dtype", DTYPES)
def test_sampling_step_in_place(dtype):
    """out=x_t: the kernel overwrites its own input element by element, as the samplers use it."""
    case = ddpm_case(np.random.default_rng(8), (B, 1, 28, 28), dtype)
    with kernels.reference_mode():
        want, _ = kernels.ddpm_step(*_copy(case))
    x_t = cp.asarray(case[0])
    got, _ = kernels.ddpm_step(x_t, *to_gpu(cp, case[1:]), out=x_t)
    assert got is x_t
    assert_close(x_t, want, "x_prev in place")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight_decay,decoupled", [(0.0, False), (0.05, False), (0.05, True)])
def test_adam_on_the_unet_parameter_count(weight_decay, decoupled, dtype):
    P = UNet(**ANCHOR).num_params()                                     # 326,609
    rng = np.random.default_rng(P)
    host = [rng.standard_normal(P), rng.standard_normal(P), 0.1 * rng.standard_normal(P), 0.01 * rng.random(P)]
    host = [a.astype(dtype) for a in host]
    dev = [cp.asarray(a) for a in host]
    with kernels.reference_mode():
        for t in (1, 2):
            kernels.adam_step(*host, 2e-3, 0.9, 0.999, 1e-8, t, weight_decay, decoupled)
    for t in (1, 2):
        kernels.adam_step(*dev, 2e-3, 0.9, 0.999, 1e-8, t, weight_decay, decoupled)
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    for name, g, w in zip(("theta", "g", "m", "v"), dev, host):
        assert_close(g, w, name, rtol=rtol, atol=rtol * 1e-2)
