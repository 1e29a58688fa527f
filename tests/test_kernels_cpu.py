"""Numba CPU kernels vs their NumPy references, and the dispatcher's routing."""
import numpy as np
import pytest

pytest.importorskip("numba")

import minidiff.kernels as K
from minidiff.kernels import conv_cpu, conv_reference, sampling, sampling_cpu
from minidiff.kernels.check import (check_kernel, conv_backward_case, conv_case, ddim_case,
                                    ddpm_case)

DTYPES = [np.float32, np.float64]
# (B, Cin, Cout, H, W, k, stride, padding): the U-Net / LeNet shapes, odd sizes, batch 1
CONV_SHAPES = [
    (2, 3, 4, 7, 7, 3, 1, 1),
    (1, 4, 6, 5, 9, 3, 1, 1),
    (2, 3, 5, 8, 8, 4, 2, 1),
    (1, 2, 3, 7, 7, 4, 2, 1),
    (3, 5, 2, 6, 5, 1, 1, 0),
    (2, 1, 6, 12, 12, 5, 1, 2),
    (2, 6, 4, 9, 9, 5, 1, 0),
    (1, 3, 2, 9, 8, (3, 2), (2, 1), (0, 2)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", CONV_SHAPES)
def test_conv_forward_matches_reference(shape, dtype):
    rng = np.random.default_rng(0)
    y = check_kernel(conv_cpu.conv2d_forward_cpu, conv_reference.conv2d_forward_reference,
                     conv_case(rng, *shape, dtype=dtype))
    assert y.dtype == dtype and y.flags.c_contiguous


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", CONV_SHAPES)
def test_conv_backward_matches_reference(shape, dtype):
    rng = np.random.default_rng(1)
    dx, dw, db = check_kernel(conv_cpu.conv2d_backward_cpu, conv_reference.conv2d_backward_reference,
                              conv_backward_case(rng, *shape, dtype=dtype))
    assert dx.dtype == dw.dtype == db.dtype == dtype


def test_conv_without_bias_and_without_bias_grad():
    rng = np.random.default_rng(2)
    check_kernel(conv_cpu.conv2d_forward_cpu, conv_reference.conv2d_forward_reference,
                 conv_case(rng, 2, 3, 4, 6, 6, 3, 1, 1, bias=False))
    _, _, db = check_kernel(conv_cpu.conv2d_backward_cpu, conv_reference.conv2d_backward_reference,
                            conv_backward_case(rng, 2, 3, 4, 6, 6, 3, 1, 1), {"need_bias": False})
    assert db is None


@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_col2im_match_reference(dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 7, 5)).astype(dtype)
    cols = check_kernel(conv_cpu.im2col, conv_reference.im2col, (x, 3, 3, 2, 1))
    check_kernel(conv_cpu.col2im, conv_reference.col2im, (cols, x.shape, 3, 3, 2, 1))


@pytest.mark.parametrize("block_bytes", [1, 2 * 27 * 36 * 4])       # 1, then 2 samples per block (B = 5)
def test_conv_in_sample_blocks_matches_reference(monkeypatch, block_bytes):
    monkeypatch.setattr(conv_cpu, "BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(6)
    assert len(conv_cpu._blocks(5, 3 * 9, 36, 4)) > 1
    check_kernel(conv_cpu.conv2d_forward_cpu, conv_reference.conv2d_forward_reference,
                 conv_case(rng, 5, 3, 4, 6, 6, 3, 1, 1))
    check_kernel(conv_cpu.conv2d_backward_cpu, conv_reference.conv2d_backward_reference,
                 conv_backward_case(rng, 5, 3, 4, 6, 6, 3, 1, 1))
    check_kernel(conv_cpu.conv2d_backward_cpu, conv_reference.conv2d_backward_reference,
                 conv_backward_case(rng, 5, 3, 4, 7, 7, 4, 2, 1, dtype=np.float64))


def test_conv_accepts_non_contiguous_input():
    rng = np.random.default_rng(4)
    x, w, b, s, p = conv_case(rng, 2, 3, 4, 6, 6, 3, 1, 1)
    xt = np.swapaxes(np.swapaxes(x, 2, 3).copy(), 2, 3)               # same values, F-like strides
    assert not xt.flags.c_contiguous
    np.testing.assert_allclose(conv_cpu.conv2d_forward_cpu(xt, w, b, s, p),
                               conv_reference.conv2d_forward_reference(x, w, b, s, p), rtol=1e-5, atol=1e-5)


def test_outputs_do_not_alias_the_reused_work_arrays():
    rng = np.random.default_rng(12)
    args1 = conv_case(rng, 2, 3, 4, 6, 6, 3, 1, 1)
    y1 = conv_cpu.conv2d_forward_cpu(*args1)
    g1 = conv_cpu.conv2d_backward_cpu(rng.standard_normal(y1.shape).astype(np.float32), *args1[:2], 1, 1)
    kept = [a.copy() for a in (y1, *g1)]
    conv_cpu.conv2d_forward_cpu(*conv_case(rng, 3, 3, 4, 6, 6, 3, 1, 1))        # reuses the buffers
    conv_cpu.conv2d_backward_cpu(*conv_backward_case(rng, 3, 3, 4, 6, 6, 3, 1, 1))
    for a, b in zip((y1, *g1), kept):
        np.testing.assert_array_equal(a, b)
    conv_cpu.release_scratch()
    check_kernel(conv_cpu.conv2d_forward_cpu, conv_reference.conv2d_forward_reference, args1)


def test_conv_rejects_bad_input():
    x = np.zeros((1, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match="channels"):
        conv_cpu.conv2d_forward_cpu(x, np.zeros((2, 4, 3, 3), np.float32), None, 1, 1)
    with pytest.raises(TypeError, match="float32 or float64"):
        conv_cpu.conv2d_forward_cpu(x.astype(np.int32), np.zeros((2, 3, 3, 3), np.int32), None, 1, 1)
    with pytest.raises(ValueError, match="dy has shape"):
        conv_cpu.conv2d_backward_cpu(np.zeros((1, 2, 4, 4), np.float32), x,
                                     np.zeros((2, 3, 3, 3), np.float32), 1, 1)


# --- fused sampling steps ----------------------------------------------------------
STEP_SHAPES = [(1, 1, 5, 9), (3, 2, 7, 7), (4, 10)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", STEP_SHAPES)
@pytest.mark.parametrize("clip", [True, False])
def test_ddpm_step_matches_reference(shape, dtype, clip):
    rng = np.random.default_rng(5)
    x_prev, x0 = check_kernel(sampling_cpu.ddpm_step_cpu, sampling.ddpm_step_reference,
                              ddpm_case(rng, shape, dtype), {"clip": clip})
    assert x_prev.shape == x0.shape == shape and x_prev.dtype == dtype
    assert (np.abs(x0).max() <= 1) == clip                            # the inputs make some |x0_hat| > 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", STEP_SHAPES)
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_step_matches_reference(shape, dtype, eta):
    rng = np.random.default_rng(6)
    x_next, x0 = check_kernel(sampling_cpu.ddim_step_cpu, sampling.ddim_step_reference,
                              ddim_case(rng, shape, dtype, eta=eta))
    assert x_next.shape == x0.shape == shape and x_next.dtype == dtype
    assert np.abs(x0).max() <= 1


def test_ddim_unclipped_and_no_noise():
    rng = np.random.default_rng(7)
    case = ddim_case(rng, (2, 3, 4, 4), noise=False)
    check_kernel(sampling_cpu.ddim_step_cpu, sampling.ddim_step_reference, case, {"clip": False})
    check_kernel(sampling_cpu.ddpm_step_cpu, sampling.ddpm_step_reference,
                 ddpm_case(rng, (2, 3, 4, 4), noise=False))


def test_ddpm_step_equations_by_hand():
    """x0_hat and x_prev written out for one sample, scalar coefficients."""
    x_t = np.array([[0.5, -2.0, 3.0]])
    eps = np.array([[0.1, 0.2, -0.3]])
    z = np.array([[1.0, -1.0, 0.5]])
    x_prev, x0 = sampling_cpu.ddpm_step_cpu(x_t, eps, 2.0, 1.5, 0.3, 0.6, 0.1, z)
    x0_want = np.clip(2.0 * x_t - 1.5 * eps, -1, 1)
    np.testing.assert_allclose(x0, x0_want, rtol=1e-12)
    np.testing.assert_allclose(x_prev, 0.3 * x0_want + 0.6 * x_t + 0.1 * z, rtol=1e-12)


def test_steps_run_in_place():
    rng = np.random.default_rng(8)
    case = ddpm_case(rng, (2, 3, 5, 5))
    want, x0_want = sampling.ddpm_step_reference(*case)
    x_t = case[0].copy()
    got, _ = sampling_cpu.ddpm_step_cpu(x_t, *case[1:], out=x_t)
    assert got is x_t
    np.testing.assert_allclose(x_t, want, rtol=1e-5, atol=1e-6)
    case = ddim_case(rng, (2, 3, 5, 5))
    want, _ = sampling.ddim_step_reference(*case)
    x_t, x0 = case[0].copy(), np.empty_like(case[0])
    got, got_x0 = sampling_cpu.ddim_step_cpu(x_t, *case[1:], out=x_t, x0_out=x0)
    assert got is x_t and got_x0 is x0
    np.testing.assert_allclose(x_t, want, rtol=1e-5, atol=1e-6)


def test_step_rejects_bad_input():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="c1"):
        sampling_cpu.ddpm_step_cpu(x, x, 1.0, 1.0, np.ones(3, np.float32), 1.0, 0.0)
    with pytest.raises(ValueError, match="eps_hat"):
        sampling.ddim_step_reference(x, np.zeros((2, 4), np.float32), 0.5, 0.6, 0.0)
    with pytest.raises(ValueError, match="x0_out"):
        sampling_cpu.ddim_step_cpu(x, x.copy(), 0.5, 0.6, 0.0, x0_out=x)


# --- dispatcher -------------------------------------------------------------------------
def test_backend_name_routes_by_type_and_dtype():
    x = np.zeros((1, 2, 3, 3), np.float32)
    assert K.backend_name(x) == "numba-cpu"
    assert K.backend_name(x.astype(np.float64)) == "numba-cpu"
    assert K.backend_name(x.astype(np.float16)) == "reference"

    class Other(np.ndarray):                     # an array type with __minidiff_xp__: reference
        __minidiff_xp__ = np
    assert K.backend_name(x.view(Other)) == "reference"


def test_reference_switches(monkeypatch):
    x = np.zeros((1, 2, 3, 3), np.float32)
    K.use_reference(True)
    try:
        assert K.backend_name(x) == "reference"
    finally:
        K.use_reference(False)
    assert K.backend_name(x) == "numba-cpu"
    with K.reference_mode():
        assert K.reference_forced() and K.backend_name(x) == "reference"
    assert not K.reference_forced()
    monkeypatch.setenv("MINIDIFF_KERNELS", "reference")
    assert K.backend_name(x) == "reference"
    monkeypatch.setenv("MINIDIFF_KERNELS", "numbaa")
    with pytest.raises(ValueError, match="MINIDIFF_KERNELS"):
        K.backend_name(x)


def test_dispatch_calls_the_kernel_or_the_reference(monkeypatch):
    calls = []
    monkeypatch.setattr(conv_cpu, "conv2d_forward_cpu", lambda *a: calls.append("cpu") or "cpu")
    rng = np.random.default_rng(9)
    args = conv_case(rng, 1, 2, 3, 5, 5, 3, 1, 1)
    assert K.conv2d_forward(*args) == "cpu"
    with K.reference_mode():
        y = K.conv2d_forward(*args)
    np.testing.assert_array_equal(y, conv_reference.conv2d_forward_reference(*args))
    assert calls == ["cpu"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_dispatched_results_match_reference(dtype):
    rng = np.random.default_rng(10)
    check_kernel(K.conv2d_forward, conv_reference.conv2d_forward_reference,
                 conv_case(rng, 2, 3, 4, 7, 7, 3, 1, 1, dtype=dtype))
    check_kernel(K.conv2d_backward, conv_reference.conv2d_backward_reference,
                 conv_backward_case(rng, 2, 3, 4, 8, 8, 4, 2, 1, dtype=dtype))
    check_kernel(K.ddpm_step, sampling.ddpm_step_reference, ddpm_case(rng, (2, 1, 5, 5), dtype))
    check_kernel(K.ddim_step, sampling.ddim_step_reference, ddim_case(rng, (2, 1, 5, 5), dtype))


def test_mixed_dtypes_fall_back_to_reference():
    rng = np.random.default_rng(11)
    x, w, b, s, p = conv_case(rng, 1, 2, 3, 5, 5, 3, 1, 1)
    y = K.conv2d_forward(x, w.astype(np.float64), b, s, p)
    np.testing.assert_allclose(y, conv_reference.conv2d_forward_reference(x, w.astype(np.float64), b, s, p))
    assert y.dtype == np.float64


def test_test_backend_arrays_take_the_reference_path():
    fakecupy = pytest.importorskip("fakecupy")
    xp, rng = fakecupy.xp, np.random.default_rng(13)
    x, w, b, s, p = conv_case(rng, 2, 3, 4, 6, 6, 3, 1, 1)
    xd = xp.asarray(x)
    assert K.backend_name(xd) == "reference"
    y = K.conv2d_forward(xd, xp.asarray(w), xp.asarray(b), s, p)
    assert type(y) is type(xd)
    np.testing.assert_allclose(xp.asnumpy(y) if hasattr(xp, "asnumpy") else y.get(),
                               conv_reference.conv2d_forward_reference(x, w, b, s, p), rtol=1e-6)
    x_prev, x0 = K.ddpm_step(*[xp.asarray(a) for a in ddpm_case(rng, (2, 1, 4, 4))])
    assert type(x_prev) is type(xd) and type(x0) is type(xd)
