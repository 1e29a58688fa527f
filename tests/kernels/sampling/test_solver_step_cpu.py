"""The few-step samplers' shared fused step on the CPU (kernels/sampling/cpu.py, solver_step_cpu) against its
reference (kernels/sampling/reference.py), and the face's per-sampler ops on both paths."""
import numpy as np
import pytest

pytest.importorskip("numba")

from minidiff import kernels
from minidiff.kernels.check import check_kernel, solver_case
from minidiff.kernels.sampling import cpu as sampling_cpu
from minidiff.kernels.sampling import reference as sampling

DTYPES = [np.float32, np.float64]
SHAPES = [(1, 1, 5, 9), (3, 2, 7, 7), (4, 10)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("n_hist", [0, 1, 2])
@pytest.mark.parametrize("clip", [True, False])
def test_solver_step_matches_reference(shape, dtype, n_hist, clip):
    rng = np.random.default_rng(11)
    x_next, x0 = check_kernel(sampling_cpu.solver_step_cpu, sampling.solver_step_reference,
                              solver_case(rng, shape, dtype, n_hist), {"clip": clip})
    assert x_next.shape == x0.shape == shape and x_next.dtype == x0.dtype == dtype
    assert (np.abs(x0).max() <= 1) == clip                            # the inputs make some |x0_hat| > 1


def test_solver_step_by_hand():
    """x0_hat and x_next written out for one sample, scalar coefficients, with x_eval != x (Heun)."""
    x_eval, out, x = np.array([[0.5, -2.0, 3.0]]), np.array([[0.1, 0.2, -0.3]]), np.array([[1.0, 0.0, -1.0]])
    h1, h2, z = np.array([[0.3, 0.3, 0.3]]), np.array([[-1.0, 2.0, 0.5]]), np.array([[1.0, -1.0, 0.5]])
    for step in (sampling_cpu.solver_step_cpu, sampling.solver_step_reference):
        x_next, x0 = step(x_eval, out, x, (h1, h2), 0.8, -1.5, 0.9, 0.6, -0.2, 0.05, 0.1, z)
        x0_want = np.clip(0.8 * x_eval - 1.5 * out, -1, 1)
        np.testing.assert_allclose(x0, x0_want, rtol=1e-14)
        np.testing.assert_allclose(x_next, 0.9 * x + 0.6 * x0_want - 0.2 * h1 + 0.05 * h2 + 0.1 * z, rtol=1e-14)


@pytest.mark.parametrize("separate_eval", [False, True])
def test_solver_step_runs_in_place(separate_eval):
    rng = np.random.default_rng(12)
    case = solver_case(rng, (2, 3, 5, 5), np.float64, 2, separate_eval=separate_eval)
    want, x0_want = sampling.solver_step_reference(*case)
    for step in (sampling_cpu.solver_step_cpu, sampling.solver_step_reference):
        x_eval, x = case[0].copy(), case[2].copy()
        x = x_eval if not separate_eval else x
        target = x if not separate_eval else x_eval                   # overwrite x, or the predictor's point
        got, x0 = step(x_eval, case[1], x, case[3], *case[4:], out=target)
        assert got is target
        np.testing.assert_allclose(target, want, rtol=1e-13)
        np.testing.assert_allclose(x0, x0_want, rtol=1e-13)


def test_solver_step_rejects_bad_input():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="x0_prev"):
        sampling_cpu.solver_step_cpu(x, x, x, (np.zeros((2, 4)),), 1, 1, 1, 1, 1, 1, 0)
    with pytest.raises(ValueError, match="x0_prev"):
        sampling.solver_step_reference(x, x, x, (x, x, x), 1, 1, 1, 1, 1, 1, 0)
    with pytest.raises(ValueError, match="x0_out"):
        h = np.ones((2, 3))
        sampling_cpu.solver_step_cpu(x, x.copy(), x, (h,), 1, 1, 1, 1, 1, 1, 0, x0_out=h)
    with pytest.raises(ValueError, match="cx"):
        sampling.solver_step_reference(x, x, x, (), 1, 1, np.ones(3), 1, 1, 1, 0)
    with pytest.raises(ValueError, match="x:"):
        sampling.solver_step_reference(x, x, np.zeros((2, 3), np.float32), (), 1, 1, 1, 1, 1, 1, 0)


OPS = {
    "dpmpp_step": lambda c: kernels.dpmpp_step(c["x"], c["out"], 0.3, 0.6, c["objective"], (c["h1"], c["h2"]),
                                               (-0.9, -1.4), clip=c["clip"]),
    "dpmpp_step_sde": lambda c: kernels.dpmpp_step(c["x"], c["out"], 0.3, 0.6, c["objective"], (c["h1"],),
                                                   (-0.9,), eta=0.7, z=c["z"], clip=c["clip"]),
    "euler_step": lambda c: kernels.euler_step(c["x"], c["out"], 0.3, 0.6, c["objective"], clip=c["clip"]),
    "euler_ancestral_step": lambda c: kernels.euler_ancestral_step(c["x"], c["out"], 0.3, 0.6, c["z"],
                                                                   c["objective"], clip=c["clip"]),
    "heun_step": lambda c: kernels.heun_step(c["x"], c["h2"], c["out"], c["h1"], 0.3, 0.6, c["objective"],
                                             clip=c["clip"]),
}


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_face_ops_agree_on_cpu_and_reference(op, objective, dtype):
    rng = np.random.default_rng(13)
    case = {k: (1.3 * rng.standard_normal((3, 2, 4, 4))).astype(dtype) for k in ("x", "out", "h1", "h2", "z")}
    case.update(objective=objective, clip=True)
    assert kernels.backend_name(case["x"]) == "numba-cpu"
    got = OPS[op](case)
    with kernels.reference_mode():
        want = OPS[op](case)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for g, w in zip(got, want):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, w, **tol)


def test_face_ops_reject_bad_arguments():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="lambda_prev"):
        kernels.dpmpp_step(x, x, 0.3, 0.6, "eps", (x,), ())
    with pytest.raises(ValueError, match="z"):
        kernels.dpmpp_step(x, x, 0.3, 0.6, "eps", eta=1.0)
    with pytest.raises(ValueError, match="abar_next"):
        kernels.euler_step(x, x, 0.6, 0.3)                            # a step away from the data
    with pytest.raises(ValueError, match="objective"):
        kernels.euler_step(x, x, 0.3, 0.6, "score")
    with pytest.raises(ValueError, match="abar_next"):
        kernels.heun_step(x, x, x, x, 0.3, 1.0)                       # the last step is Euler's
    with pytest.raises(ValueError, match="lambda_prev"):
        kernels.dpmpp_step(x, x, 0.3, 1.0, "eps", (x,), (-2.0,))      # onto the data: first order only
