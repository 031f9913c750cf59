"""FID, IS and KID of generated images, named after their feature network and sample count (methods.md 5.7).

* FID = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2) in float64, the square root by
  ``scipy.linalg.sqrtm`` (a negligible imaginary part dropped, else eps I added and retried), or for
  wide features (Inception's 2048) from the eigenvalues of S1^1/2 S2 S1^1/2.
* IS = exp(E_x KL(p(y|x) || p(y))), p(y) the mean over a split; mean and std over 10 splits (5 below
  1,000 samples).
* KID = unbiased MMD^2 with the cubic polynomial kernel (x.y / d + 1)^3, mean over subsets.

A metric's name says what it is: ``fid[digits-cnn,n=600]`` is the FID of 600 generated images in the
64-d features of the digits classifier, not comparable with an Inception FID. The reference features
(the training split's) are cached as an integrity-checked ``.npz`` whose source is the feature net's
sha256, so statistics of another net are never reused.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch
from scipy import linalg

from nastk.errors import ConfigError, CorruptDataError
from nastk.integrity import write_npz, read_npz
from nastk.paths import cache_root, write_cache


def statistics(features: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64) of an n x d feature matrix."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ConfigError(f"FID needs at least 2 feature vectors (n x d), got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


#: feature widths above this use the eigenvalue route (scipy's sqrtm takes minutes at Inception's 2048)
SQRTM_MAX_DIM = 256


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((S1 S2)^1/2) from eigenvalues: S1 S2 is similar to the symmetric PSD S1^1/2 S2 S1^1/2, whose
    eigenvalues' square roots sum to the trace (two symmetric eigendecompositions, no Schur sqrtm)."""
    values, vectors = np.linalg.eigh(sigma1)
    root = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    inner = np.linalg.eigvalsh(root @ sigma2 @ root)
    return float(np.sqrt(np.clip(inner, 0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6, method: str = "auto") -> float:
    """The Frechet distance of two Gaussians (FID on feature statistics). ``method``: ``sqrtm``
    (``scipy.linalg.sqrtm``; eps I added when the result is not finite or clearly complex), ``eigen``
    (:func:`trace_sqrt_product`), or ``auto`` (sqrtm up to :data:`SQRTM_MAX_DIM` features)."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ConfigError(f"FID of features of different sizes: {mu1.shape} vs {mu2.shape}")
    if method not in ("auto", "sqrtm", "eigen"):
        raise ConfigError(f"unknown FID method {method!r}; known: auto, sqrtm, eigen")
    diff = mu1 - mu2
    if method == "eigen" or (method == "auto" and len(mu1) > SQRTM_MAX_DIM):
        trace = trace_sqrt_product(sigma1, sigma2)
    else:
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all() or (np.iscomplexobj(covmean) and np.abs(covmean.imag).max() > 1e-3):
            offset = np.eye(len(sigma1)) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
        trace = float(np.trace(np.real(covmean)))
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace)


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    return frechet_distance(*statistics(features_a), *statistics(features_b))


def inception_score(probabilities: np.ndarray, splits: Optional[int] = None) -> Tuple[float, float]:
    """(mean, std) of exp(E KL(p(y|x) || p(y))) over ``splits`` (default 10, 5 below 1,000 samples)."""
    p = np.asarray(probabilities, dtype=np.float64)
    splits = splits or (10 if len(p) >= 1000 else 5)
    if len(p) < splits:
        raise ConfigError(f"IS needs at least {splits} samples, got {len(p)}")
    scores = []
    for part in np.array_split(p, splits):
        marginal = part.mean(axis=0, keepdims=True)
        kl = (part * (np.log(np.clip(part, 1e-12, None)) - np.log(np.clip(marginal, 1e-12, None)))).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def kid(features_a: np.ndarray, features_b: np.ndarray, subsets: int = 20, subset_size: int = 200,
        seed: int = 0) -> Tuple[float, float]:
    """(mean, std) of the unbiased MMD^2 with kernel (x.y / d + 1)^3 over random subsets."""
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise ConfigError(f"KID needs at least 2 samples per set, got {len(a)} and {len(b)}")
    d, rng, values = a.shape[1], np.random.default_rng(seed), []
    for _ in range(subsets):
        x, y = a[rng.choice(len(a), size, replace=False)], b[rng.choice(len(b), size, replace=False)]
        kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
        m = size
        values.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                      - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


def metric_name(metric: str, extractor_name: str, n: int) -> str:
    """``fid[digits-cnn,n=600]``: the metric, its feature network and its sample count."""
    return f"{metric}[{extractor_name},n={n}]"


class GenerativeMetrics:
    """FID / IS / KID of sample sets against a data set's reference features (cached with checksums)."""

    def __init__(self, extractor, reference: torch.Tensor, reference_name: str = "train",
                 cache: Optional[Path] = None):
        self.extractor = extractor
        self.reference_name = reference_name
        self.reference_features = self._reference_features(reference, cache)
        self.reference_stats = statistics(self.reference_features)

    def _reference_features(self, reference: torch.Tensor, cache: Optional[Path]) -> np.ndarray:
        folder = Path(cache) if cache is not None else cache_root() / "gan_features"
        path = folder / f"reference-{self.extractor.name}-{self.reference_name}-{len(reference)}.npz"
        if path.is_file():
            try:
                arrays, _ = read_npz(path, "reference features", rows=len(reference),
                                     source_sha256=self.extractor.sha256)
                return arrays["features"]
            except CorruptDataError:
                pass  # another feature net, or damaged: recomputed below
        features = self.extractor.features(reference)
        write_cache(lambda: write_npz(path, {"features": features}, {"extractor": self.extractor.name,
                                                                    "reference": self.reference_name},
                                      rows=len(features), source_sha256=self.extractor.sha256),
                    "reference features", "they are recomputed next time")
        return features

    def evaluate(self, images: torch.Tensor, kid_metric: bool = True) -> Dict[str, float]:
        """``{fid[...]: .., is[...]: .., is_std[...]: .., kid[...]: ..}`` of ``images`` (n x C x H x W in [-1, 1])."""
        n, name = len(images), self.extractor.name
        features = self.extractor.features(images)
        is_mean, is_std = inception_score(self.extractor.probabilities(images))
        out = {metric_name("fid", name, n): frechet_distance(*statistics(features), *self.reference_stats),
               metric_name("is", name, n): is_mean, metric_name("is_std", name, n): is_std}
        if kid_metric:
            out[metric_name("kid", name, n)] = kid(features, self.reference_features)[0]
        return out


def sample_images(generator: Callable[[torch.Tensor], torch.Tensor], n: int, latent_dim: int, seed: int,
                  device=None, batch_size: int = 500) -> torch.Tensor:
    """``n`` images of a generator (eval mode, no gradients) from seeded standard-normal latents, on the CPU;
    the generator runs on ``device`` (None: where it is, when it is a module; else torch's default device).
    The latents are drawn on the host, so they are the same on every device."""
    from nastk.devices import HOST, resolve_device

    device = resolve_device(device, generator if isinstance(generator, torch.nn.Module) else None)
    torch_generator = torch.Generator(HOST).manual_seed(seed)
    z = torch.randn(n, latent_dim, generator=torch_generator, device=HOST)
    out = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            out.append(generator(z[start:start + batch_size].to(device)).float().cpu())
    return torch.cat(out)
