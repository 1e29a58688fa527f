"""Noise schedules against hand formulas recomputed independently (scalar math, float64)."""
import math

import numpy as np
import pytest

from minidiff.diffusion import (cosine_beta_schedule, linear_beta_schedule, make_betas,
                                sigmoid_beta_schedule)


@pytest.mark.parametrize("T", [1000, 100, 40, 2])
def test_linear_matches_hand_formula(T):
    betas = linear_beta_schedule(T)
    assert betas.dtype == np.float64 and betas.shape == (T,)
    s = 1000 / T
    for t in range(T):
        expected = (1e-4 + t * (0.02 - 1e-4) / (T - 1)) * s
        assert betas[t] == pytest.approx(expected, rel=1e-12)
    if T == 1000:   # the DDPM schedule itself
        assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)


def test_linear_custom_ends():
    betas = linear_beta_schedule(10, beta_start=1e-3, beta_end=1e-2)
    assert betas[0] == pytest.approx(1e-3 * 100) and betas[-1] == pytest.approx(1e-2 * 100)


def _cosine_abar(t, T, s=0.008):
    """abar_t = f(t+1)/f(0) from the scalar cos formula."""
    f = lambda u: math.cos(((u / T + s) / (1 + s)) * math.pi / 2) ** 2
    return f(t + 1) / f(0)


@pytest.mark.parametrize("T", [1000, 50])
def test_cosine_cumprod_matches_cos_formula(T):
    betas = cosine_beta_schedule(T)
    assert betas.dtype == np.float64 and betas.shape == (T,)
    assert np.all(betas > 0) and np.all(betas <= 0.999)
    abar_prev = 1.0
    for t in range(T):
        abar = _cosine_abar(t, T)
        raw = 1 - abar / abar_prev
        assert betas[t] == pytest.approx(min(raw, 0.999), rel=1e-9, abs=1e-15)
        abar_prev = abar
    # cumprod(1 - betas) reproduces abar wherever the cap was not hit
    capped = np.nonzero(betas >= 0.999)[0]
    first_cap = capped[0] if len(capped) else T
    cumprod = np.cumprod(1 - betas)
    for t in range(first_cap):
        assert cumprod[t] == pytest.approx(_cosine_abar(t, T), rel=1e-9)
    assert betas[-1] == 0.999   # abar_{T-1} = f(T)/f(0) ~ 0, so the last beta is capped


def test_cosine_s_changes_schedule():
    assert not np.allclose(cosine_beta_schedule(100, s=0.008), cosine_beta_schedule(100, s=0.1))


def test_sigmoid_in_range_increasing_and_formula():
    T = 200
    betas = sigmoid_beta_schedule(T)
    assert betas.dtype == np.float64 and betas.shape == (T,)
    assert np.all(betas > 0) and np.all(betas <= 0.999)
    assert np.all(np.diff(betas) > 0)
    sig = lambda z: 1 / (1 + math.exp(-z))
    abar = [(sig(3) - sig(6 * u / T - 3)) / (sig(3) - sig(-3)) for u in range(T + 1)]
    for t in range(T - 1):
        assert betas[t] == pytest.approx(1 - abar[t + 1] / abar[t], rel=1e-9)
    assert betas[-1] == 0.999   # abar reaches 0 at u = T


def test_sigmoid_tau_changes_schedule():
    assert not np.allclose(sigmoid_beta_schedule(50, tau=1), sigmoid_beta_schedule(50, tau=0.5))


def test_make_betas_dispatches_with_kwargs():
    np.testing.assert_array_equal(make_betas("linear", 30), linear_beta_schedule(30))
    np.testing.assert_array_equal(make_betas("cosine", 30, s=0.02), cosine_beta_schedule(30, s=0.02))
    np.testing.assert_array_equal(make_betas("sigmoid", 30, tau=0.7), sigmoid_beta_schedule(30, tau=0.7))


def test_unknown_schedule_lists_valid_names():
    with pytest.raises(ValueError, match=r"schedule.*cosine.*linear.*sigmoid.*'quadratic'"):
        make_betas("quadratic", 10)


@pytest.mark.parametrize("T", [0, -3, 2.5])
def test_bad_num_timesteps(T):
    with pytest.raises(ValueError, match="num_timesteps"):
        linear_beta_schedule(T)
