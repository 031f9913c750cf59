import csv
import gzip

import numpy as np
import pytest
from scipy import stats

from nastk.errors import ConfigError
from nastk.metrics import kendall_tau, precision_at_k, relative_improvement, spearman_rho


def test_rank_correlations_match_scipy_and_skip_nan():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=50), rng.normal(size=50)
    assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)
    assert spearman_rho(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    x_nan = x.copy()
    x_nan[3] = np.nan
    assert kendall_tau(x_nan, y) == pytest.approx(stats.kendalltau(np.delete(x, 3), np.delete(y, 3)).statistic)
    assert spearman_rho(x, -x) == pytest.approx(-1.0)
    with pytest.raises(ConfigError):
        kendall_tau([1, 2], [1, 2, 3])


def test_precision_at_k():
    truth = [5, 4, 3, 2, 1]
    assert precision_at_k([5, 4, 3, 2, 1], truth, 2) == 1.0
    assert precision_at_k([1, 2, 3, 4, 5], truth, 2) == 0.0
    assert precision_at_k([np.nan, 4, 3, 2, 1], truth, 2) == 0.5  # NaN ranks last
    with pytest.raises(ConfigError):
        precision_at_k(truth, truth, 0)


def test_relative_improvement_reproduces_nas_eval_is_frustratingly_hard(nastk_data):
    """RI of the 8-run means from the shipped CSV equals the published CIFAR-10 row (methods.md 14.2)."""
    with gzip.open(nastk_data / "nas_frustrating" / "nas_frustrating_performance.csv.gz", "rt") as handle:
        rows = [r for r in csv.DictReader(handle) if r["dataset"] == "CIFAR10"]
    published = {"DARTS": 0.32, "PDARTS": 0.52, "NSGANET": -0.48, "ENAS": 0.01, "CNAS": 0.74,
                 "MANAS": 0.18, "StacNAS": 0.43, "NAO": 0.44}
    for method, value in published.items():
        found = [float(r["accuracy"]) for r in rows if r["method"] == method and r["kind"] == "method"]
        random = [float(r["accuracy"]) for r in rows if r["method"] == method and r["kind"] == "random"]
        assert len(found) == len(random) == 8
        assert relative_improvement(found, random) == pytest.approx(value, abs=0.006), method
