"""ParZC: losses, Bayesian layers, the model, layer-wise features and the fit command."""
import json

import numpy as np
import pytest
import torch
from scipy import stats

from nastk.errors import ConfigError
from nastk.predictors import layerwise_features as lw
from nastk.predictors.experiment import PredictorData, fit_and_evaluate
from nastk.predictors.losses import diffkendall, make_loss, mse_loss, pairwise_loss
from nastk.predictors.parzc import RHO_INIT, BayesianLinear, ParZC, config
from nastk.predictors.fitting import TrainConfig, predict

TINY = dict(d_model=32, heads=2, layers=1, ffn=64, mixer_dim=32, mixer_blocks=1)


def test_diffkendall_tends_to_kendall_tau_and_scales_relate():
    generator = torch.Generator().manual_seed(0)
    s = torch.randn(15, generator=generator, dtype=torch.float64)
    y = s + 0.7 * torch.randn(15, generator=generator, dtype=torch.float64)
    tau = stats.kendalltau(s.numpy(), y.numpy()).statistic
    assert float(diffkendall(s, y, alpha=1e6, scale="paper")) == pytest.approx(tau, abs=1e-9)
    assert abs(float(diffkendall(s, y, alpha=0.5, scale="paper")) - tau) > 0.05  # smooth at small alpha
    for alpha in (0.5, 3.0):
        assert float(diffkendall(s, y, alpha, "picoNAS")) == pytest.approx(2 * float(diffkendall(s, y, alpha / 2, "paper")))
    s.requires_grad_(True)
    (-diffkendall(s, y)).backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    with pytest.raises(ConfigError):
        diffkendall(s, y, scale="nope")


def test_loss_sums_and_pairwise():
    s, y = torch.tensor([0.1, 0.5, -0.3]), torch.tensor([1.0, 2.0, 0.0])
    combined = make_loss("mse+dk")(s, y)
    assert float(combined) == pytest.approx(float(mse_loss(s, y) - diffkendall(s, y)))
    s_, y_ = s.numpy(), y.numpy()
    manual = np.mean([np.log1p(np.exp(-(s_[i] - s_[j]) * np.sign(y_[i] - y_[j]))) for i in range(3) for j in range(3) if i != j])
    assert float(pairwise_loss(s, y)) == pytest.approx(float(manual), rel=1e-6)
    with pytest.raises(ConfigError, match="unknown loss"):
        make_loss("mse+hinge")


def test_bayesian_linear_is_stochastic_and_starts_near_deterministic():
    torch.manual_seed(0)
    layer = BayesianLinear(8, 4)
    assert torch.all(layer.rho == RHO_INIT) and RHO_INIT == -5
    x = torch.randn(3, 8)
    first, second = layer(x), layer(x)
    assert not torch.equal(first, second)
    mean = x @ layer.mu.T
    assert (first - mean).abs().max() < 0.1  # softplus(-5) ~ 0.0067: a near-deterministic start


def test_parzc_mc_prediction_has_uncertainty_only_when_bayesian():
    torch.manual_seed(0)
    x, ops = np.random.default_rng(0).normal(size=(6, 30)).astype(np.float32), np.random.default_rng(1).integers(0, 5, (6, 6))
    _, std = predict(ParZC(30, config("small", **TINY)), x, ops, samples=5)
    _, det_std = predict(ParZC(30, config("small", bayesian=False, **TINY)), x, ops, samples=5)
    assert std.min() > 0 and det_std.max() < 1e-6


def synthetic_data(n=160, features=20, seed=0):
    """Accuracy = a noisy function of a few x_zc features and of the number of 3x3 convolutions."""
    rng = np.random.default_rng(seed)
    x = np.exp(rng.normal(size=(n, features)) * 2)  # positive, heavy-tailed like proxy values
    ops = rng.integers(0, 5, size=(n, 6))
    y = np.log(x[:, :3]).sum(1) + 0.8 * (ops == 3).sum(1) + 0.3 * rng.normal(size=n)
    return PredictorData(list(range(n)), x, ops, y, y, {"first": x[:, 0]}, {"train": "synthetic", "eval": "synthetic"})


def test_parzc_learns_a_synthetic_ranking():
    torch.set_num_threads(1)
    result = fit_and_evaluate(synthetic_data(), train_size=60, seed=0, variant="parzc", mc_samples=4,
                              train_config=TrainConfig(epochs=40, lr=2e-3, batch_size=10), **TINY)
    assert result["kendall"] > 0.5 and result["held_out"] == 100
    assert result["mean_predictive_std"] > 0
    with pytest.raises(ConfigError, match="variant"):
        fit_and_evaluate(synthetic_data(), 60, variant="nope")
    with pytest.raises(ConfigError, match="train-size"):
        fit_and_evaluate(synthetic_data(), 160)


def test_train_config_caps_steps():
    assert TrainConfig(epochs=300, batch_size=10, max_steps=3000).epochs_for(78) == 300
    assert TrainConfig(epochs=300, batch_size=10, max_steps=3000).epochs_for(781) == 38
    assert TrainConfig(epochs=300).epochs_for(781) == 300


def test_layerwise_slots_and_resumable_cache(tmp_path):
    torch.set_num_threads(1)
    path = tmp_path / "pool.npz"
    first = lw.extend_pool(1, path, C=8, N=1, chunk=1)
    extended = lw.extend_pool(2, path, C=8, N=1, chunk=1)
    assert list(extended.codes[:1]) == list(first.codes)
    np.testing.assert_array_equal(extended.values["snip"][:1], first.values["snip"])
    from nastk.space import get_space

    space = get_space("nb201")
    for row, code in enumerate(extended.codes):
        convs = sum(op in ("nor_conv_1x1", "nor_conv_3x3") for op in space.from_code(int(code)).choices)
        present = np.isfinite(extended.values["grad_norm"][row])
        assert present.sum() == 1 + 3 * convs + 6 + 1  # stem, N=1 cell per stage, 2 reductions, classifier
    features = extended.features()
    assert features.shape == (2, 3 * len(extended.values["snip"][0])) and np.isfinite(features).all()
    assert (lw.compact(extended.values["synflow"])[:, -1] == 0).all()  # zero padding at the end


def test_fit_command_on_a_cached_pool(nastk_data, tmp_path, monkeypatch, capsys):
    from nastk.cli import main

    monkeypatch.setenv("NASTK_CACHE", str(tmp_path))
    rng = np.random.default_rng(0)
    codes = lw.pool_order()[:40]
    values = {name: np.exp(rng.normal(size=(40, 98))) for name in lw.STATISTICS}
    lw.save_pool(lw.LayerwisePool(codes, values, np.zeros(40), {}), lw.cache_path())
    assert main(["proxies", "fit", "parzc", "--train-size", "20", "--epochs", "2", "--mc-samples", "2",
                 "--seed", "1", "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["held_out"] == 20 and -1 <= result["kendall"] <= 1 and -1 <= result["spearman"] <= 1
    assert result["protocols"]["eval"].startswith("cifar10/test/200") and "params" in result["proxies"]
