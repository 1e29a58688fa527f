"""Frechet distance: closed forms, symmetry, a SciPy sqrtm cross-check; FLD plumbing."""
import numpy as np
import pytest

from minidiff.metrics.frechet import (fld, frechet_distance, gaussian_fit, guided_accuracy,
                                      judge_outputs)


def random_spd(rng, d):
    A = rng.standard_normal((d, d))
    return A @ A.T / d + 0.1 * np.eye(d)


def test_one_dimensional_closed_form():
    # d^2 = (m1 - m2)^2 + (s1 - s2)^2 for N(m1, s1^2), N(m2, s2^2)
    d2 = frechet_distance(np.array([1.5]), np.array([[4.0]]), np.array([-0.5]), np.array([[0.25]]))
    assert d2 == pytest.approx(2.0 ** 2 + (2.0 - 0.5) ** 2, rel=1e-12)


def test_diagonal_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    v1, v2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-10)


def test_identical_is_zero_and_symmetric():
    rng = np.random.default_rng(1)
    mu, S = rng.standard_normal(8), random_spd(rng, 8)
    assert frechet_distance(mu, S, mu, S) == pytest.approx(0.0, abs=1e-9)
    mu2, S2 = rng.standard_normal(8), random_spd(rng, 8)
    a, b = frechet_distance(mu, S, mu2, S2), frechet_distance(mu2, S2, mu, S)
    assert a > 0 and a == pytest.approx(b, rel=1e-10)


def test_matches_scipy_sqrtm():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(2)
    for d in (3, 20):
        mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
        S1, S2 = random_spd(rng, d), random_spd(rng, d)
        covmean = np.real(scipy_linalg.sqrtm(S1 @ S2))
        expected = np.sum((mu1 - mu2) ** 2) + np.trace(S1 + S2 - 2 * covmean)
        assert frechet_distance(mu1, S1, mu2, S2) == pytest.approx(expected, rel=1e-8)


def test_singular_covariances_do_not_fail():
    rng = np.random.default_rng(3)
    f = rng.standard_normal((5, 10))                     # N < D: a rank-deficient covariance
    mu, S = gaussian_fit(f)
    assert frechet_distance(mu, S, mu, S) == pytest.approx(0.0, abs=1e-7)


def test_bad_shapes():
    with pytest.raises(ValueError, match="S1, S2"):
        frechet_distance(np.zeros(3), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="features"):
        gaussian_fit(np.zeros((1, 4)))


def test_gaussian_fit_matches_numpy():
    rng = np.random.default_rng(4)
    f = rng.standard_normal((50, 4)).astype(np.float32)
    mu, S = gaussian_fit(f)
    assert mu.dtype == np.float64
    np.testing.assert_allclose(mu, f.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(S, np.cov(f.astype(np.float64), rowvar=False), rtol=1e-10)


class ToyJudge:
    """A stand-in judge: features = the flattened 2x2 average of the image, logits = a fixed map."""
    dtype = np.dtype(np.float32)

    def features(self, x):
        return x.reshape(x.shape[0], 1, 2, 14, 2, 14).mean(axis=(3, 5)).reshape(x.shape[0], 4)

    def forward(self, x):
        f = self.features(x)
        return np.concatenate([f, -f, np.zeros((x.shape[0], 2), x.dtype)], axis=1)   # (B, 10)


def test_fld_and_guided_accuracy_plumbing():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (64, 28, 28), dtype=np.uint8)
    b = rng.integers(0, 128, (64, 28, 28), dtype=np.uint8)
    judge = ToyJudge()
    assert fld(judge, a, a, batch_size=10) == pytest.approx(0.0, abs=1e-9)
    assert fld(judge, a, b, batch_size=10) > 0.1
    feats = judge_outputs(judge, a, batch_size=7)
    assert feats.shape == (64, 4)
    pred = judge_outputs(judge, a, features=False).argmax(1)
    assert guided_accuracy(judge, a, pred) == 1.0
    assert guided_accuracy(judge, a, (pred + 1) % 10) == 0.0
