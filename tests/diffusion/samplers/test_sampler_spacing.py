"""Which timesteps the samplers visit (minidiff/diffusion/samplers/spacing.py), and DPM-Solver++'s orders."""
import numpy as np
import pytest

from exact_models import uniform_logsnr_betas
from minidiff.diffusion import make_betas, sampling_timesteps_spacing
from minidiff.diffusion.samplers import (SPACINGS, karras_sigmas, log_snr_table, nearest_timesteps,
                                         sampler_timesteps, step_orders)


def abar_of(schedule, T):
    return np.cumprod(1 - make_betas(schedule, T))


def test_logsnr_spacing_lands_on_a_uniform_grid_exactly():
    abar = np.cumprod(1 - uniform_logsnr_betas(961, 5.0, -5.0))
    for S in (11, 41, 161):
        ts = sampler_timesteps(abar, S, "logsnr")
        np.testing.assert_array_equal(ts, np.arange(S)[::-1] * (960 // (S - 1)))


def test_karras_sigmas_by_hand():
    s = karras_sigmas(0.002, 80.0, 3, rho=7.0)
    mid = ((80.0 ** (1 / 7) + 0.002 ** (1 / 7)) / 2) ** 7
    np.testing.assert_allclose(s, [80.0, mid, 0.002], rtol=1e-13)
    np.testing.assert_allclose(karras_sigmas(0.1, 10.0, 1), [10.0])


def test_karras_spacing_maps_each_sigma_to_the_nearest_timestep():
    """On a fine grid nothing collides: each visited timestep's log s is the nearest to its target's."""
    abar = np.cumprod(1 - uniform_logsnr_betas(961, 5.0, -5.0))
    lam = log_snr_table(abar)
    s = np.exp(-lam)
    ts = sampler_timesteps(abar, 12, "karras")
    targets = np.log(karras_sigmas(s[0], s[-1], 12))
    assert ts[0] == 960 and ts[-1] == 0
    for t, target in zip(ts, targets):
        assert abs(np.log(s[t]) - target) == np.min(np.abs(np.log(s) - target))


def test_collisions_are_pushed_apart():
    lambdas = np.array([3.0, 2.0, 1.0, 0.0, -1.0, -2.0])                 # t = 0..5
    assert nearest_timesteps(np.array([-2.0, -1.9, -1.8, 2.9, 3.0]), lambdas).tolist() == [5, 4, 3, 1, 0]
    assert nearest_timesteps(np.array([-2.0, 3.0, 3.0, 3.0]), lambdas).tolist() == [5, 2, 1, 0]
    assert nearest_timesteps(np.array([-2.0, -2.0, -2.0]), lambdas).tolist() == [5, 4, 3]


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("schedule, T", [("cosine", 100), ("linear", 40), ("cosine", 7), ("linear", 1000)])
def test_every_spacing_gives_distinct_descending_timesteps(spacing, schedule, T):
    abar = abar_of(schedule, T)
    for S in sorted({1, 2, 3, T // 3 or 1, T // 2 or 1, T - 1 or 1, T}):
        ts = sampler_timesteps(abar, S, spacing)
        assert ts.dtype == np.int64 and len(ts) == S
        assert np.all(np.diff(ts) < 0) and 0 <= ts.min() and ts.max() <= T - 1, (S, ts)
        if spacing in ("logsnr", "karras"):
            assert ts[0] == T - 1 and (S == 1 or ts[-1] == 0)
        else:
            np.testing.assert_array_equal(ts, sampling_timesteps_spacing(T, S, spacing))


def test_bad_steps_or_spacing_are_clear_errors():
    abar = abar_of("cosine", 10)
    for S in (0, 11, 2.5, True):
        with pytest.raises(ValueError, match="steps"):
            sampler_timesteps(abar, S, "logsnr")
    with pytest.raises(ValueError, match="spacing"):
        sampler_timesteps(abar, 5, "uniform")


def test_dpm_solver_orders():
    """Warm-up, the last step first order, and with fewer than 15 steps the one before it at most second."""
    assert step_orders(1, 2) == [1]
    assert step_orders(5, 2) == [1, 2, 2, 2, 1]
    assert step_orders(10, 3) == [1, 2, 3, 3, 3, 3, 3, 3, 2, 1]
    assert step_orders(16, 3) == [1, 2] + [3] * 13 + [1]
    assert step_orders(2, 3) == [1, 1]
