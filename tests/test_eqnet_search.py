"""EQ-Net's predictor-guided search through nastk (methods.md 11B): the one-network quant space, the average-bit
costs, the accuracy predictor (fit, file, evaluator) and ``nastk search`` under an average-bit constraint."""
import json

import numpy as np
import pytest
import torch

from cli_run import run_cli
from nastk.errors import ConfigError, CorruptDataError, DataError, MissingDataError
from nastk.evaluators import make_evaluator
from nastk.evaluators.accuracy_predictor import AccuracyPredictor, features_of, fit_labelled, fit_predictor, refit
from nastk.metrics import kendall_tau
from nastk.registry import get_space

SPACE = "quant:mobilenet@largest"


@pytest.fixture(scope="module")
def space():
    return get_space(SPACE)


def synthetic_accuracy(space, arch) -> float:
    """A smooth, known function of the bits (log bits, units weighted unevenly): something an MLP can learn."""
    bits = np.log(np.array(space.bit_values(arch), dtype=float))
    weights = np.linspace(0.2, 1.8, len(bits))
    return float(30 + 10 * bits @ weights / weights.sum())


@pytest.fixture(scope="module")
def predictor_file(space, tmp_path_factory):
    rng = np.random.default_rng(0)
    labelled = [(arch, synthetic_accuracy(space, arch)) for arch in (space.sample_spread(rng) for _ in range(80))]
    predictor = fit_labelled(space, labelled[:60], labelled[60:], features="ordinal", hidden=(32,), seed=0)
    return predictor.save(tmp_path_factory.mktemp("predictor") / "accuracy_predictor.json")


def test_one_network_space_varies_the_bits_alone(space):
    free = get_space("quant:mobilenet")
    assert space.name == SPACE and space.get_choice_model().names == free.get_choice_model().names
    rng = np.random.default_rng(0)
    largest_base = free.base.largest()
    for arch in [space.sample(rng) for _ in range(5)] + [space.sample_spread(rng)]:
        assert space.base_arch(arch) == largest_base
        assert space.base_arch(space.mutate(arch, rng)) == largest_base
        assert space.from_str(space.to_str(arch)) == arch
    net = space.supernet(num_classes=10)
    base_path = net.base.path_of_arch(largest_base)
    assert all(net.allowed[d].sum() == 1 and net.allowed[d, o] for d, o in enumerate(base_path))
    assert net.allowed[net.base_count:].sum() == 2 * 28 * len(space.bits)  # the bits stay free
    for bad in ("quant:mobilenet@smallest", "quant:mobilenet@"):
        with pytest.raises(ConfigError, match="largest"):
            get_space(bad)


def test_average_bits_costs_are_the_supernets_measure(space):
    for bits in (2, 5, 8):
        cost = space.cost(space.uniform(space.fixed_base_arch(), bits))
        assert cost["avg_bits"] == cost["avg_wbits"] == cost["avg_abits"] == bits
    arch = space.sample(np.random.default_rng(3))
    cost = space.cost(arch)
    assert cost["avg_bits"] == pytest.approx((cost["avg_wbits"] + cost["avg_abits"]) / 2)
    net = space.supernet(num_classes=10)  # the costs' arithmetic = counting a forward at the path's bits
    net.set_active(arch)
    measured = net.measure(torch.zeros(1, 3, 32, 32))
    assert {key: cost[key] for key in measured} == pytest.approx(measured)


def test_spread_sampling_covers_the_average_bit_range(space):
    rng = np.random.default_rng(0)
    averages = [space.cost(space.sample_spread(rng))["avg_bits"] for _ in range(150)]
    plain = [space.cost(space.sample(rng))["avg_bits"] for _ in range(150)]
    assert min(averages) < 3 and max(averages) > 7  # EQ-Net's configurations span about 2.4 .. 7.6
    assert min(plain) > 3.5 and max(plain) < 6.5  # what uniform sampling would give the predictor


def test_predictor_learns_ranks_and_round_trips(space, predictor_file, tmp_path):
    rng = np.random.default_rng(1)
    archs = [space.sample_spread(rng) for _ in range(30)]
    truth = [synthetic_accuracy(space, a) for a in archs]
    loaded = AccuracyPredictor.load(predictor_file)
    assert kendall_tau(loaded.predict(archs), truth) > 0.6
    assert loaded.space == SPACE and loaded.fit["train_size"] == 60
    again = AccuracyPredictor.load(loaded.save(tmp_path / "copy.json"))
    assert np.array_equal(again.predict(archs), loaded.predict(archs))  # float64 written exactly
    assert loaded.fit["kendall_tau"] > 0.6 and len(loaded.fit["test"]) == 20  # on its own test configurations
    other = refit(loaded, features="onehot", hidden=(16,))  # the recorded labels, other inputs: no scoring
    assert other.features == "onehot" and other.fit["train"] == loaded.fit["train"] and other.fit["hidden"] == [16]
    assert refit(loaded).fit["kendall_tau"] == loaded.fit["kendall_tau"]  # same settings, same seed: same fit
    with pytest.raises(ConfigError, match="not epochs"):
        refit(loaded, epochs=3)
    onehot = features_of(space, archs[:2], "onehot")
    assert onehot.shape == (2, 2 * 28 * len(space.bits)) and (onehot.sum(axis=1) == 2 * 28).all()
    with pytest.raises(ConfigError, match="features"):
        features_of(space, archs, "binary")
    with pytest.raises(ConfigError, match="scores architectures of"):
        loaded.predict([get_space("quant:mobilenet").sample(rng)])


def test_damaged_or_foreign_predictor_files_are_one_error(tmp_path, predictor_file):
    with pytest.raises(MissingDataError):
        AccuracyPredictor.load(tmp_path / "none.json")
    (tmp_path / "cut.json").write_text(predictor_file.read_text()[:1000])
    with pytest.raises(CorruptDataError):
        AccuracyPredictor.load(tmp_path / "cut.json")
    (tmp_path / "other.json").write_text(json.dumps({"nastk": "something-else"}))
    with pytest.raises(DataError, match="not a nastk accuracy predictor"):
        AccuracyPredictor.load(tmp_path / "other.json")
    content = json.loads(predictor_file.read_text())
    content["biases"][0] = content["biases"][0][:-1]
    (tmp_path / "shapes.json").write_text(json.dumps(content))
    with pytest.raises(CorruptDataError, match="inconsistent"):
        AccuracyPredictor.load(tmp_path / "shapes.json")


def test_evaluator_refuses_a_predictor_of_another_space(predictor_file):
    config = {"kind": "accuracy-predictor", "path": str(predictor_file)}
    evaluator = make_evaluator(get_space(SPACE), config, device="cpu")
    result = evaluator.evaluate(get_space(SPACE).largest())
    assert result.objective == "predicted_accuracy" and np.isfinite(result.value)
    with pytest.raises(ConfigError, match="not the searched space quant:mobilenet"):
        make_evaluator(get_space("quant:mobilenet"), config, device="cpu")


def test_search_under_an_average_bit_budget(capsys, predictor_file, tmp_path, space):
    run_dir = tmp_path / "search"
    code, out, err = run_cli(capsys, "search", "--space", SPACE, "--strategy", "nsga2", "--population-size", "10",
                             "--evaluator", f"accuracy-predictor:{predictor_file}", "--constraint",
                             "avg_bits<=4.5", "--budget", "40", "--seed", "0", "--run-dir", str(run_dir),
                             "--no-progress", "--format", "json")
    assert code == 0, err
    summary = json.loads((run_dir / "summary.json").read_text())
    best = space.from_str(summary["best_arch"])
    assert space.cost(best)["avg_bits"] <= 4.5
    assert summary["constraints"]["feasible"] >= 1
    journal = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    feasible = [r for r in journal if r["result"]["metrics"]["feasible"] == 1]
    assert all(r["result"]["metrics"]["avg_bits"] <= 4.5 for r in feasible)
    assert summary["best_objective"] == max(r["result"]["metrics"]["predicted_accuracy"] for r in feasible)


def test_bad_constraint_or_missing_predictor_is_one_line(capsys, predictor_file, tmp_path):
    common = ["search", "--space", SPACE, "--strategy", "nsga2", "--budget", "3", "--no-progress"]
    cases = [(["--evaluator", f"accuracy-predictor:{predictor_file}", "--constraint", "avg_bitz<=4"], "avg_bitz"),
             (["--evaluator", f"accuracy-predictor:{tmp_path / 'missing.json'}"], "no accuracy predictor"),
             (["--evaluator", "accuracy-predictor"], "PATH")]
    for i, (extra, named) in enumerate(cases):
        run_dir = tmp_path / f"run{i}"
        code, _, err = run_cli(capsys, common + extra + ["--run-dir", str(run_dir)])
        assert code == 2 and named in err and len(err.strip().splitlines()) == 1, err
        assert not run_dir.exists()  # refused before anything is written


@pytest.mark.slow
def test_fit_from_a_supernet_run_writes_the_predictor_into_it(tmp_path):
    from nastk.evaluators.accuracy_predictor import FILE_NAME, fit_from_supernet
    from nastk.oneshot.trainer import OneShotConfig, train

    config = OneShotConfig.for_step("eqnet", space=SPACE, dataset="digits", train_size=200, held_out_fraction=0.25,
                                    batch_size=50, valid_size=0, epochs=1, augment=False,
                                    step_options={"precision": "float"})
    train(config, tmp_path / "run", device="cpu", progress=False)
    with pytest.raises(ConfigError, match="features"):
        fit_from_supernet(tmp_path / "run", features="binary", device="cpu")
    predictor = fit_from_supernet(tmp_path / "run", train_size=6, test_size=4, seed=0, device="cpu", eval_size=30,
                                  bn_calibration=1, hidden=(8,))
    saved = AccuracyPredictor.load(tmp_path / "run" / FILE_NAME)
    assert saved.space == SPACE and len(saved.fit["train"]) == 6 and len(saved.fit["test"]) == 4
    assert saved.fit["source"]["split"] == "held_out" and saved.fit["source"]["images"] == 30
    assert all(0 <= accuracy <= 100 for _, accuracy in saved.fit["train"])
    tau = saved.fit["kendall_tau"]  # None when one epoch leaves every configuration at the same accuracy
    assert tau is None or -1 <= tau <= 1
    test = [space_arch for space_arch, _, _ in saved.fit["test"]]
    assert np.allclose(predictor.predict([get_space(SPACE).from_str(a) for a in test]),
                       [p for _, _, p in saved.fit["test"]])


def test_the_numpy_forward_pass_is_scikit_learns_prediction(space, monkeypatch):
    import sklearn.neural_network

    fitted = []

    class Recorded(sklearn.neural_network.MLPRegressor):
        def fit(self, *args, **kwargs):
            fitted.append(self)
            return super().fit(*args, **kwargs)

    monkeypatch.setattr(sklearn.neural_network, "MLPRegressor", Recorded)
    rng = np.random.default_rng(0)
    archs = [space.sample_spread(rng) for _ in range(30)]
    predictor = fit_predictor(space, archs, rng.random(30) * 5 + 40, features="onehot", hidden=(16, 8))
    (model,) = fitted
    expected = model.predict(features_of(space, archs, "onehot")) * predictor.target_std + predictor.target_mean
    assert np.allclose(predictor.predict(archs), expected, rtol=0, atol=1e-9)
