"""The fused DDPM / DDIM steps (minidiff.kernels.ddpm_step / ddim_step) give the same numbers
whatever the memory layout of x_t, eps_hat and z (Fortran order, permuted or strided views),
on the reference and the Numba CPU path, and refuse an empty batch by name.

The fault this guards: the outputs were allocated with x_t's memory order, flattened to
(B, D) (a copy for a non-C order), filled, and the untouched original returned."""
import numpy as np
import pytest

from layouts import NON_C, as_layout
import minidiff.kernels as K
from minidiff.kernels.check import ddim_case, ddpm_case

FAMILIES = ["reference", "cpu"]


def _family(name):
    if name == "cpu":
        pytest.importorskip("numba")
    return K.reference_mode(name == "reference")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("layout", NON_C)
@pytest.mark.parametrize("arg", [0, 1, 7])                            # x_t, eps_hat, z
@pytest.mark.parametrize("shape", [(3, 2, 4, 5), (1, 3, 4)])
def test_ddpm_step_any_layout(family, layout, arg, shape):
    rng = np.random.default_rng(1)
    case = list(ddpm_case(rng, shape, np.float64))
    with _family(family):
        want = K.ddpm_step(*case[:7], z=case[7])
        case[arg] = as_layout(case[arg], layout)
        got = K.ddpm_step(*case[:7], z=case[7])
    for g, w in zip(got, want):
        assert g.shape == shape and g.flags.c_contiguous
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("layout", NON_C)
@pytest.mark.parametrize("arg", [0, 1, 5])                            # x_t, eps_hat, z
@pytest.mark.parametrize("shape", [(3, 2, 4, 5), (1, 3, 4)])
def test_ddim_step_any_layout(family, layout, arg, shape):
    rng = np.random.default_rng(2)
    case = list(ddim_case(rng, shape, np.float64, eta=0.5))
    with _family(family):
        want = K.ddim_step(*case[:5], z=case[5])
        case[arg] = as_layout(case[arg], layout)
        got = K.ddim_step(*case[:5], z=case[5])
    for g, w in zip(got, want):
        assert g.shape == shape and g.flags.c_contiguous
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("family", FAMILIES)
def test_per_sample_coefficients_any_layout(family):
    """(B,) coefficient arrays as strided views give the same step."""
    rng = np.random.default_rng(3)
    case = list(ddpm_case(rng, (4, 2, 3), np.float64))
    with _family(family):
        want = K.ddpm_step(*case[:7], z=case[7])
        got = K.ddpm_step(*case[:2], *(as_layout(c, "strided") for c in case[2:7]), z=case[7])
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("family", FAMILIES)
def test_empty_batch_is_refused(family):
    rng = np.random.default_rng(4)
    ddpm, ddim = ddpm_case(rng, (0, 2, 3), np.float64), ddim_case(rng, (0, 2, 3), np.float64)
    with _family(family):
        with pytest.raises(ValueError, match=r"x_t: .*empty batch.*\(0, 2, 3\)"):
            K.ddpm_step(*ddpm[:7], z=ddpm[7])
        with pytest.raises(ValueError, match=r"x_t: .*empty batch"):
            K.ddim_step(*ddim[:5], z=ddim[5])


@pytest.mark.parametrize("family", FAMILIES)
def test_non_contiguous_out_is_refused(family):
    """`out` is written in place: a non-C-contiguous one is refused, not silently left unwritten."""
    rng = np.random.default_rng(5)
    case = ddpm_case(rng, (2, 3, 4), np.float64)
    with _family(family):
        with pytest.raises(ValueError, match="out: expected a C-contiguous array"):
            K.ddpm_step(*case[:7], z=case[7], out=as_layout(np.zeros((2, 3, 4)), "F"))
