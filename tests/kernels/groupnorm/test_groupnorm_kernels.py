"""Fused GroupNorm + shift + SiLU kernels: the reference (kernels/groupnorm/reference.py) vs
independent maths, the Numba CPU kernel (kernels/groupnorm/cpu.py) vs the reference, the face's
dispatch, errors. (The GroupNormSiLU layer: tests/nn/test_groupnorm_silu.py.)"""
import numpy as np
import pytest
from gradcheck import numerical_grad, rel_error

from minidiff import kernels
from minidiff.kernels import ops, route
from minidiff.kernels.check import check_kernel
from minidiff.kernels.groupnorm.reference import (groupnorm_silu_backward_reference,
                                                  groupnorm_silu_forward_reference)

cpu = pytest.importorskip("minidiff.kernels.groupnorm.cpu")

DTYPES = [np.float32, np.float64]
# (x shape, num_groups, affine, shift): batch 1, odd sizes, G = 1 and G = C,
# no spatial axes, 1-D and 3-D spatial
CASES = [((1, 4, 3, 5), 2, True, True), ((2, 6, 7, 7), 1, True, False), ((2, 6, 5, 3), 6, False, True),
         ((3, 8, 5, 5), 4, False, False), ((2, 6), 3, True, True), ((2, 4, 9), 2, True, True),
         ((2, 6, 3, 2, 3), 3, True, True), ((4, 16, 28, 28), 8, True, True)]


def groupnorm_case(rng, shape, G, affine=True, shift=True, dtype=np.float64, shift_scale=1.0):
    """(x, weight, bias, shift, G): x with a non-zero mean, random affine, shift (B, C) or None."""
    B, C = shape[:2]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)                          # (B, C, ...)
    w = rng.uniform(0.5, 1.5, C).astype(dtype) if affine else None                    # (C,)
    b = rng.standard_normal(C).astype(dtype) if affine else None                      # (C,)
    sh = (shift_scale * rng.standard_normal((B, C))).astype(dtype) if shift else None  # (B, C)
    return x, w, b, sh, G


def naive_forward(x, w, b, sh, G, eps, silu):
    """Loops over (b, g), float64, 1/(1 + exp(-h)): independent of the vectorised reference."""
    x = np.asarray(x, np.float64)
    B, C = x.shape[:2]
    Cg = C // G
    y, mean, rstd = np.empty_like(x), np.empty((B, G)), np.empty((B, G))
    for bi in range(B):
        for g in range(G):
            block = x[bi, g * Cg:(g + 1) * Cg]
            mean[bi, g] = block.sum() / block.size
            rstd[bi, g] = 1 / np.sqrt(((block - mean[bi, g]) ** 2).sum() / block.size + eps)
            for c in range(g * Cg, (g + 1) * Cg):
                h = (x[bi, c] - mean[bi, g]) * rstd[bi, g]
                h = h * (1 if w is None else w[c]) + (0 if b is None else b[c]) + (0 if sh is None else sh[bi, c])
                y[bi, c] = h / (1 + np.exp(-h)) if silu else h
    return y, mean, rstd


# --- the reference against independent computations ---------------------------------
@pytest.mark.parametrize("silu", [True, False])
@pytest.mark.parametrize("case", CASES[:7])
def test_reference_forward_matches_loops(case, silu):
    x, w, b, sh, G = groupnorm_case(np.random.default_rng(0), *case)
    got = groupnorm_silu_forward_reference(x, w, b, sh, G, 1e-5, silu=silu)
    for g, want in zip(got, naive_forward(x, w, b, sh, G, 1e-5, silu)):
        np.testing.assert_allclose(g, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("silu", [True, False])
@pytest.mark.parametrize("case", [((2, 4, 3, 3), 2, True, True), ((1, 6, 2, 3), 3, False, True),
                                  ((2, 4, 5), 1, True, False)])
def test_reference_backward_matches_central_differences(case, silu):
    rng = np.random.default_rng(1)
    x, w, b, sh, G = groupnorm_case(rng, *case)
    R = rng.standard_normal(x.shape)
    _, mean, rstd = groupnorm_silu_forward_reference(x, w, b, sh, G, 1e-5, silu=silu)
    grads = groupnorm_silu_backward_reference(R, x, mean, rstd, w, b, sh, G, silu=silu)

    def loss():
        return float(np.sum(groupnorm_silu_forward_reference(x, w, b, sh, G, 1e-5, silu=silu)[0] * R))

    for analytic, array in zip(grads, (x, w, b, sh)):
        assert (analytic is None) == (array is None)
        if array is not None:
            assert analytic.shape == array.shape
            assert rel_error(analytic, numerical_grad(loss, array)) <= 1e-6


def test_reference_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x, w, b, sh, G = groupnorm_case(rng, (2, 6, 4, 3), 3)
    dy = rng.standard_normal(x.shape)
    y, mean, rstd = groupnorm_silu_forward_reference(x, w, b, sh, G, 1e-5)
    grads = groupnorm_silu_backward_reference(dy, x, mean, rstd, w, b, sh, G)
    ts = [torch.tensor(a, requires_grad=True) for a in (x, w, b, sh)]
    h = torch.nn.functional.group_norm(ts[0], G, ts[1], ts[2], eps=1e-5) + ts[3][:, :, None, None]
    yt = torch.nn.functional.silu(h)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    for g, t in zip(grads, ts):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-9, atol=1e-11)


# --- the Numba CPU kernel against the reference ---------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("silu", [True, False])
@pytest.mark.parametrize("case", CASES)
def test_cpu_kernel_matches_reference(case, silu, dtype):
    rng = np.random.default_rng(3)
    x, w, b, sh, G = groupnorm_case(rng, *case, dtype=dtype)
    y, mean, rstd = check_kernel(cpu.groupnorm_silu_forward_cpu, groupnorm_silu_forward_reference,
                                 (x, w, b, sh, G, 1e-5), {"silu": silu})
    assert y.dtype == mean.dtype == dtype and mean.shape == (x.shape[0], G)
    dy = rng.standard_normal(x.shape).astype(dtype)
    dx, dw, db, dsh = check_kernel(cpu.groupnorm_silu_backward_cpu, groupnorm_silu_backward_reference,
                                   (dy, x, mean, rstd, w, b, sh, G), {"silu": silu})
    assert dx.dtype == dtype and dx.shape == x.shape
    assert (dsh is None) == (sh is None) and (dw is None) == (w is None)


@pytest.mark.parametrize("silu", [True, False])
@pytest.mark.parametrize("case", CASES[:7])
def test_reference_residual_is_added_to_the_output(case, silu):
    rng = np.random.default_rng(15)
    x, w, b, sh, G = groupnorm_case(rng, *case)
    r = rng.standard_normal(x.shape)
    y, mean, rstd = groupnorm_silu_forward_reference(x, w, b, sh, G, 1e-5, silu=silu, residual=r)
    want = naive_forward(x, w, b, sh, G, 1e-5, silu)
    np.testing.assert_allclose(y, want[0] + r, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rstd, want[2], rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("parallel_min_size", [0, 1 << 40])
@pytest.mark.parametrize("silu", [True, False])
def test_cpu_kernel_with_residual_matches_reference(silu, parallel_min_size, dtype, monkeypatch):
    """y = SiLU(GroupNorm(x) + shift) + residual in one pass, parallel and serial, a
    non-contiguous residual too; the residual is read only, never written."""
    monkeypatch.setattr(cpu, "PARALLEL_MIN_SIZE", parallel_min_size)
    rng = np.random.default_rng(16)
    for case in (CASES[0], CASES[2], CASES[4], CASES[6], CASES[7]):
        x, w, b, sh, G = groupnorm_case(rng, *case, dtype=dtype)
        r = rng.standard_normal(x.shape).astype(dtype)
        r_before = r.copy()
        y, _, _ = check_kernel(cpu.groupnorm_silu_forward_cpu, groupnorm_silu_forward_reference,
                               (x, w, b, sh, G, 1e-5), {"silu": silu, "residual": r})
        np.testing.assert_array_equal(r, r_before)
        y0, _, _ = cpu.groupnorm_silu_forward_cpu(x, w, b, sh, G, 1e-5, silu=silu)
        np.testing.assert_allclose(y - y0, r, rtol=1e-5 if dtype == np.float32 else 1e-12,
                                   atol=1e-5 if dtype == np.float32 else 1e-12)
    x, w, b, sh, G = groupnorm_case(rng, (2, 4, 5, 3), 2, dtype=dtype)
    r = np.asfortranarray(rng.standard_normal(x.shape).astype(dtype))
    check_kernel(cpu.groupnorm_silu_forward_cpu, groupnorm_silu_forward_reference,
                 (x, w, b, sh, G, 1e-5), {"silu": silu, "residual": r})


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("parallel_min_size", [0, 1 << 40])
def test_cpu_parallel_and_serial_loops_match_reference(parallel_min_size, dtype, monkeypatch):
    monkeypatch.setattr(cpu, "PARALLEL_MIN_SIZE", parallel_min_size)
    rng = np.random.default_rng(14)
    for case in (CASES[0], CASES[2], CASES[4]):
        x, w, b, sh, G = groupnorm_case(rng, *case, dtype=dtype)
        _, mean, rstd = check_kernel(cpu.groupnorm_silu_forward_cpu, groupnorm_silu_forward_reference,
                                     (x, w, b, sh, G, 1e-5))
        dy = rng.standard_normal(x.shape).astype(dtype)
        check_kernel(cpu.groupnorm_silu_backward_cpu, groupnorm_silu_backward_reference,
                     (dy, x, mean, rstd, w, b, sh, G))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_kernel_saturated_silu_and_strided_input(dtype):
    """|h| up to ~300 (sigmoid saturates; the kernel's exp clamps) and a non-contiguous x."""
    rng = np.random.default_rng(4)
    x, w, b, sh, G = groupnorm_case(rng, (3, 8, 6, 5), 4, dtype=dtype, shift_scale=100.0)
    x = np.asfortranarray(x)
    y, mean, rstd = check_kernel(cpu.groupnorm_silu_forward_cpu, groupnorm_silu_forward_reference,
                                 (x, w, b, sh, G, 1e-5))
    assert np.isfinite(y).all() and (y > -1).all()            # min of h sigmoid(h) is -0.278
    dy = rng.standard_normal(x.shape).astype(dtype)
    check_kernel(cpu.groupnorm_silu_backward_cpu, groupnorm_silu_backward_reference,
                 (dy, x, mean, rstd, w, b, sh, G))


def test_cpu_kernel_statistics_are_stable():
    """A large offset (mean 1e4, std 1) in float32: the two-pass float64 statistics stay exact."""
    x = (1e4 + np.random.default_rng(5).standard_normal((2, 4, 8, 8))).astype(np.float32)
    y, mean, rstd = cpu.groupnorm_silu_forward_cpu(x, None, None, None, 2, 1e-5, silu=False)
    xg = x.astype(np.float64).reshape(2, 2, -1)
    np.testing.assert_allclose(mean, xg.mean(axis=2), rtol=1e-7)
    np.testing.assert_allclose(rstd, 1 / np.sqrt(xg.var(axis=2) + 1e-5), rtol=1e-5)
    np.testing.assert_allclose(y.reshape(2, 2, -1).std(axis=2), 1, rtol=1e-4)


# --- dispatch -------------------------------------------------------------------------
def _spy(monkeypatch, module, name):
    calls, fn = [], getattr(module, name)

    def spy(*a, **k):
        calls.append(name)
        return fn(*a, **k)
    monkeypatch.setattr(module, name, spy)
    return calls


def test_dispatch_numpy_goes_to_numba_and_reference_mode_to_reference(monkeypatch):
    x, w, b, sh, G = groupnorm_case(np.random.default_rng(6), (2, 4, 3, 3), 2, dtype=np.float32)
    fwd_cpu = _spy(monkeypatch, cpu, "groupnorm_silu_forward_cpu")
    bwd_cpu = _spy(monkeypatch, cpu, "groupnorm_silu_backward_cpu")
    fwd_ref = _spy(monkeypatch, ops, "groupnorm_silu_forward_reference")
    bwd_ref = _spy(monkeypatch, ops, "groupnorm_silu_backward_reference")
    y, mean, rstd = kernels.groupnorm_silu_forward(x, w, b, sh, G, 1e-5)
    kernels.groupnorm_silu_backward(np.ones_like(y), x, mean, rstd, w, b, sh, G)
    assert (fwd_cpu, bwd_cpu, fwd_ref, bwd_ref) == ([fwd_cpu[0]], [bwd_cpu[0]], [], [])
    with kernels.reference_mode():
        y2, mean, rstd = kernels.groupnorm_silu_forward(x, w, b, sh, G, 1e-5)
        kernels.groupnorm_silu_backward(np.ones_like(y), x, mean, rstd, w, b, sh, G)
    assert len(fwd_ref) == len(bwd_ref) == 1 and len(fwd_cpu) == 1
    np.testing.assert_allclose(y, y2, rtol=1e-5, atol=1e-6)
    r = np.random.default_rng(8).standard_normal(x.shape).astype(np.float32)
    y3, _, _ = kernels.groupnorm_silu_forward(x, w, b, sh, G, 1e-5, residual=r)   # the kernel, with a residual
    assert len(fwd_cpu) == 2
    np.testing.assert_allclose(y3, y + r, rtol=1e-5, atol=1e-6)


def test_dispatch_mixed_dtypes_and_device_arrays_take_the_reference():
    from fakecupy import DeviceArray, xp
    rng = np.random.default_rng(7)
    x, w, b, sh, G = groupnorm_case(rng, (2, 4, 3, 3), 2)
    assert route.route(x, w, b, sh) == "cpu"
    assert route.route(x, w.astype(np.float32), b, sh) == "reference"
    y, mean, rstd = kernels.groupnorm_silu_forward(*(xp.asarray(a) for a in (x, w, b, sh)), G, 1e-5)
    assert isinstance(y, DeviceArray) and isinstance(rstd, DeviceArray)
    np.testing.assert_allclose(y.get(), groupnorm_silu_forward_reference(x, w, b, sh, G, 1e-5)[0], rtol=1e-12)


# --- errors ---------------------------------------------------------------------------
@pytest.mark.parametrize("fwd", [groupnorm_silu_forward_reference, cpu.groupnorm_silu_forward_cpu])
def test_forward_errors_name_the_argument(fwd):
    x = np.zeros((2, 6, 3, 3), np.float32)
    for G in (0, 4, 2.5, True):
        with pytest.raises(ValueError, match="num_groups"):
            fwd(x, None, None, None, G, 1e-5)
    with pytest.raises(ValueError, match="weight"):
        fwd(x, np.ones(4, np.float32), None, None, 3, 1e-5)
    with pytest.raises(ValueError, match="bias"):
        fwd(x, None, np.ones((6, 1), np.float32), None, 3, 1e-5)
    with pytest.raises(ValueError, match="shift"):
        fwd(x, None, None, np.ones((6, 2), np.float32), 3, 1e-5)
    with pytest.raises(ValueError, match="x: expected"):
        fwd(np.zeros(6, np.float32), None, None, None, 3, 1e-5)
    with pytest.raises(TypeError, match="x: expected a float"):
        fwd(np.zeros((2, 6), np.int64), None, None, None, 3, 1e-5)
    with pytest.raises(ValueError, match="residual: expected shape"):
        fwd(x, None, None, None, 3, 1e-5, residual=np.zeros((2, 6, 3, 2), np.float32))
    with pytest.raises(TypeError, match="residual: expected dtype float32"):
        fwd(x, None, None, None, 3, 1e-5, residual=np.zeros(x.shape, np.float64))


@pytest.mark.parametrize("bwd", [groupnorm_silu_backward_reference, cpu.groupnorm_silu_backward_cpu])
def test_backward_errors_name_the_argument(bwd):
    x = np.zeros((2, 6, 3, 3), np.float32)
    stats = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="dy"):
        bwd(np.zeros((2, 6, 3, 2), np.float32), x, stats, stats, None, None, None, 3)
    with pytest.raises(ValueError, match="mean"):
        bwd(x, x, np.ones((2, 2), np.float32), stats, None, None, None, 3)
