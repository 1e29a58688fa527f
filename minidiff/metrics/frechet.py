"""Frechet LeNet Distance (FLD) and guided accuracy, judged by a trained LeNet-5.

FLD is FID with the 84-dim penultimate LeNet-5 activations in place of
Inception features: fit a Gaussian to the features of each image set and take

    d^2 = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}).

Everything here runs on the host in float64 with NumPy only.
"""
import numpy as np

from ..backend import get_xp, to_host


def sqrtm_psd(S):
    """S^{1/2} of a symmetric positive semi-definite S via eigh; tiny negative eigenvalues -> 0."""
    w, V = np.linalg.eigh(S)                                 # (D,), (D, D)
    return (V * np.sqrt(np.clip(w, 0.0, None))) @ V.T        # (D, D)


def frechet_distance(mu1, S1, mu2, S2):
    """d^2 between N(mu1, S1) and N(mu2, S2): |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}).

    Tr((S1 S2)^{1/2}) = sum_i sqrt(lambda_i) with lambda the eigenvalues of the
    symmetric PSD matrix S1^{1/2} S2 S1^{1/2} (similar to S1 S2). Returns a float >= 0.
    """
    mu1, mu2 = (np.atleast_1d(np.asarray(to_host(m), np.float64)) for m in (mu1, mu2))
    S1, S2 = (np.atleast_2d(np.asarray(to_host(S), np.float64)) for S in (S1, S2))
    D = mu1.shape[0]
    if mu1.ndim != 1 or mu2.shape != (D,):
        raise ValueError(f"frechet_distance: mu1, mu2 must be vectors of one length, got {mu1.shape}, {mu2.shape}")
    if S1.shape != (D, D) or S2.shape != (D, D):
        raise ValueError(f"frechet_distance: S1, S2 must be ({D}, {D}), got {S1.shape}, {S2.shape}")
    for name, S in (("S1", S1), ("S2", S2)):
        if not np.all(np.isfinite(S)):
            raise ValueError(f"frechet_distance: {name} has non-finite entries")
    S1, S2 = 0.5 * (S1 + S1.T), 0.5 * (S2 + S2.T)
    r1 = sqrtm_psd(S1)                                       # (D, D)
    M = r1 @ S2 @ r1                                         # (D, D) symmetric PSD
    lam = np.linalg.eigvalsh(0.5 * (M + M.T))                # (D,)
    tr_covmean = np.sqrt(np.clip(lam, 0.0, None)).sum()
    diff = mu1 - mu2                                         # (D,)
    d2 = diff @ diff + np.trace(S1) + np.trace(S2) - 2.0 * tr_covmean
    return float(max(d2, 0.0))


def gaussian_fit(features):
    """features (N, D) -> (mu (D,), Sigma (D, D)): the mean and unbiased covariance, float64."""
    f = np.asarray(to_host(features), np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"gaussian_fit: features must be (N, D) with N >= 2, got {f.shape}")
    mu = f.mean(axis=0)                                      # (D,)
    fc = f - mu                                              # (N, D)
    return mu, fc.T @ fc / (f.shape[0] - 1)                  # (D,), (D, D)


def _as_judge_input(judge, images):
    """uint8 (N, 28, 28) pixels or (N, 1, 28, 28) floats in [-1, 1] -> judge dtype (N, 1, 28, 28)."""
    if getattr(images, "dtype", None) == np.uint8:
        from ..data.mnist import to_model_range
        images = to_model_range(to_host(images))
    xp = get_xp(images)
    x = xp.asarray(images, dtype=judge.dtype)
    if x.ndim == 3:
        x = x[:, None]                                       # (N, 1, 28, 28)
    return x


def judge_outputs(judge, images, batch_size=500, features=True):
    """The judge's 84-dim features (features=True) or logits, (N, 84|10), on the host, batched."""
    if int(batch_size) < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    x = _as_judge_input(judge, images)
    run = judge.features if features else judge.forward
    out = [to_host(run(x[i:i + batch_size])) for i in range(0, x.shape[0], int(batch_size))]
    return np.concatenate(out, axis=0)                       # (N, 84) or (N, 10)


def fld(judge, images_a, images_b, batch_size=500):
    """FLD(a, b) = frechet_distance of Gaussians fitted to the judge's features of a and b."""
    fa = judge_outputs(judge, images_a, batch_size)          # (Na, 84)
    fb = judge_outputs(judge, images_b, batch_size)          # (Nb, 84)
    return frechet_distance(*gaussian_fit(fa), *gaussian_fit(fb))


def guided_accuracy(judge, images, labels, batch_size=500):
    """The share of images the judge classifies as the requested label: mean[argmax logits == y]."""
    logits = judge_outputs(judge, images, batch_size, features=False)   # (N, 10)
    labels = np.asarray(to_host(labels)).reshape(-1)
    if labels.shape[0] != logits.shape[0]:
        raise ValueError(f"guided_accuracy: {logits.shape[0]} images but {labels.shape[0]} labels")
    return float(np.mean(logits.argmax(axis=1) == labels))
