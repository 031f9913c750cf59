"""FID / IS / KID (nastk.generative.metrics) and their feature networks (nastk.generative.features)."""
import numpy as np
import pytest
import torch

from nastk.errors import ConfigError, MissingDataError
from nastk.generative.features import FeatureCNN, FeatureExtractor, ScriptedFeatures
from nastk.generative.metrics import (GenerativeMetrics, fid, frechet_distance, inception_score, kid, metric_name,
                                      statistics)


def test_frechet_distance_matches_the_closed_form_of_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([4.0, 1.0, 1.0])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, np.diag(var1), mu1, np.diag(var1)) == pytest.approx(0.0, abs=1e-9)


def test_the_eigenvalue_route_agrees_with_sqrtm():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(500, 32)), rng.normal(size=(500, 32)) @ rng.normal(size=(32, 32)) * 0.3
    stats_a, stats_b = statistics(a), statistics(b)
    assert frechet_distance(*stats_a, *stats_b, method="eigen") == pytest.approx(
        frechet_distance(*stats_a, *stats_b, method="sqrtm"), rel=1e-6)


def test_fid_of_two_samples_of_one_gaussian_shrinks_with_the_sample_count():
    rng = np.random.default_rng(0)
    values = [np.mean([fid(rng.normal(size=(n, 8)), rng.normal(size=(n, 8))) for _ in range(3)]) for n in (50, 200, 2000)]
    assert values[0] > values[1] > values[2] > 0
    shifted = fid(rng.normal(size=(2000, 8)), rng.normal(size=(2000, 8)) + 1.0)
    assert shifted == pytest.approx(8.0, rel=0.1)  # ||mu1 - mu2||^2 = 8 dominates


def test_singular_covariances_still_give_a_finite_real_fid():
    rng = np.random.default_rng(1)
    a = np.hstack([rng.normal(size=(30, 4)), np.zeros((30, 4))])  # rank-deficient covariance
    b = np.hstack([rng.normal(size=(30, 4)), np.zeros((30, 4))])
    value = fid(a, b)
    assert np.isfinite(value) and isinstance(value, float)
    with pytest.raises(ConfigError, match="at least 2 feature vectors"):
        statistics(np.zeros((1, 4)))


def test_inception_score_is_the_number_of_confidently_and_evenly_predicted_classes():
    confident = np.eye(10)[np.arange(1000) % 10]
    assert inception_score(confident)[0] == pytest.approx(10.0, rel=1e-6)
    one_class = np.eye(10)[np.zeros(1000, dtype=int)]
    assert inception_score(one_class)[0] == pytest.approx(1.0, rel=1e-6)  # a collapsed generator
    unsure = np.full((1000, 10), 0.1)
    assert inception_score(unsure)[0] == pytest.approx(1.0, rel=1e-6)
    assert len(np.array_split(np.zeros(999), 5)) == 5 and inception_score(confident[:999])[1] >= 0  # 5 splits below 1000


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(2)
    same = kid(rng.normal(size=(400, 6)), rng.normal(size=(400, 6)))[0]
    apart = kid(rng.normal(size=(400, 6)), rng.normal(size=(400, 6)) + 0.5)[0]
    assert abs(same) < 0.05 < apart


def test_metric_names_carry_the_feature_network_and_the_sample_count():
    assert metric_name("fid", "digits-cnn", 600) == "fid[digits-cnn,n=600]"


def _tiny_extractor(sha="tiny-untrained"):
    torch.manual_seed(0)
    return FeatureExtractor("tiny", FeatureCNN(1, 8, width=4, features=8), sha)


def test_reference_features_are_cached_with_the_feature_nets_checksum(tmp_path):
    images = torch.rand(40, 1, 8, 8) * 2 - 1
    metrics = GenerativeMetrics(_tiny_extractor(), images, "toy", cache=tmp_path)
    cached = list(tmp_path.glob("reference-*.npz"))
    assert len(cached) == 1
    again = GenerativeMetrics(_tiny_extractor(), images, "toy", cache=tmp_path)
    assert np.array_equal(again.reference_features, metrics.reference_features)
    # a cache written for another feature net (other checksum) is recomputed, never reused
    other = _tiny_extractor("another-net")
    torch.manual_seed(5)
    other.network = FeatureCNN(1, 8, width=4, features=8).eval()
    recomputed = GenerativeMetrics(other, images, "toy", cache=tmp_path)
    assert not np.array_equal(recomputed.reference_features, metrics.reference_features)
    # a damaged cache is recomputed too
    cached[0].write_bytes(cached[0].read_bytes()[:100])
    repaired = GenerativeMetrics(_tiny_extractor(), images, "toy", cache=tmp_path)
    assert np.allclose(repaired.reference_features, metrics.reference_features)
    scores = repaired.evaluate(images[:20])
    assert set(scores) == {"fid[tiny,n=20]", "is[tiny,n=20]", "is_std[tiny,n=20]", "kid[tiny,n=20]"}


class _Scripted(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3 * 16 * 16, 5)

    @torch.jit.export
    def features(self, x):
        return self.linear(x.flatten(1))

    def forward(self, x):
        return self.features(x)


def test_user_supplied_feature_weights_are_used_without_any_download(tmp_path):
    path = tmp_path / "inception.pt"
    torch.jit.script(_Scripted()).save(str(path))
    extractor = ScriptedFeatures(path, name="inception", input_size=16)
    features = extractor.features(torch.rand(7, 1, 8, 8))  # grey 8x8 -> 3 x 16 x 16
    assert features.shape == (7, 5) and extractor.name == "inception"
    with pytest.raises(MissingDataError, match="nothing is downloaded"):
        ScriptedFeatures(tmp_path / "absent.pt")


@pytest.mark.slow
def test_digits_feature_net_validation_real_noise_blur(tmp_path, one_torch_thread):
    """The acceptance checks of methods.md 5.7 on the real digits feature net (trained, ~5 s)."""
    from nastk.generative.features import feature_extractor, gan_images

    extractor = feature_extractor("digits", cache=tmp_path)
    assert extractor.test_accuracy > 95
    images = gan_images("digits")
    metrics = GenerativeMetrics(extractor, images.x_train, cache=tmp_path)
    name = extractor.name
    real = [metrics.evaluate(images.x_test[:n])[metric_name("fid", name, n)] for n in (100, 200, 449)]
    assert real[0] > real[1] > real[2]
    noise = metrics.evaluate(torch.rand(449, 1, 8, 8) * 2 - 1)
    assert noise[metric_name("fid", name, 449)] > 20 * real[2]
    assert noise[metric_name("is", name, 449)] < 0.5 * metrics.evaluate(images.x_test)[metric_name("is", name, 449)]
    blurred = []
    for sigma in (0.5, 1.0, 1.5):
        kernel = torch.exp(-torch.arange(-2, 3.0) ** 2 / (2 * sigma ** 2))
        kernel = (kernel[:, None] * kernel[None, :]) / kernel.sum() ** 2
        x = torch.nn.functional.conv2d(torch.nn.functional.pad(images.x_test, (2,) * 4, mode="replicate"), kernel[None, None])
        blurred.append(metrics.evaluate(x)[metric_name("fid", name, 449)])
    assert real[2] < blurred[0] < blurred[1] < blurred[2]
