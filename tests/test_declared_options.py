"""Options come from what strategies, evaluators and spaces declare: flags, config checks and run configs."""
import json

import pytest

from nastk.cli import build_parser, main
from nastk.errors import ConfigError
from nastk.evaluators import EVALUATORS, evaluator_options
from nastk.options import declared
from nastk.search_config import GENERAL_BY_NAME, options_of_run_config, resolve, run_config, search_config
from nastk.space import SPACES
from nastk.strategy import STRATEGIES

BENCH = ["search", "--benchmark", "nb201", "--dataset", "cifar10", "--no-progress", "--format", "json"]


def test_every_plugin_declaration_resolves_against_its_constructor():
    for name in STRATEGIES.names():
        cls = STRATEGIES.get(name)
        assert all(option.default is not None or option.value.nullable for option in declared(cls)), name
        assert set(cls.RUN_OPTIONS) <= set(GENERAL_BY_NAME), name
    for name in EVALUATORS.names():
        declared(EVALUATORS.get(name))
    for name in SPACES.names():
        SPACES.get(name).build_options()
        SPACES.get(name).build_options(full_size=True)


def test_each_declared_option_is_a_search_flag():
    parser = build_parser()
    search = next(a for a in parser._actions if a.dest == "command").choices["search"].populate()
    flags = {flag for action in search._actions for flag in action.option_strings}
    expected = {"--population-size", "--sample-size", "--initial-size", "--n-startup-trials", "--deterministic",
                "--no-deterministic", "--selection", "--sampler", "--pool-size", "--proxy-table", "--proxies",
                "--epochs", "--final-epochs", "--lr", "--batch-size", "--eval-size", "--mc-samples", "--objective",
                "--table", "--trust-pickle", "--C", "--N", "--layers"}
    assert expected <= flags


def test_run_config_records_exactly_the_chosen_plugins_options():
    config = search_config(strategy="bo-gp", evaluator="benchmark", dataset="cifar10", n_startup_trials=4,
                           deterministic=False)
    assert config["strategy_options"] == {"objectives": None, "n_startup_trials": 4, "deterministic": False}
    assert config["evaluator"] == {"kind": "benchmark", "benchmark": "nb201", "dataset": "cifar10",
                                   "objective": "valid12", "table": None, "trust_pickle": False}
    train = search_config(space="darts", evaluator="train", C=8)
    assert train["evaluator"]["build"] == {"C": 8, "layers": 8}  # the space's build options, not NB201's
    proxy = search_config(evaluator="proxy:synflow")
    assert proxy["evaluator"]["build"] == {"C": 16, "N": 5}  # proxies score the space's own network


@pytest.mark.parametrize("options", [
    dict(strategy="re", evaluator="benchmark", dataset="cifar100", population_size=7, objective="valid200"),
    dict(strategy="ls", evaluator="train", dataset="digits", epochs=1, C=4, N=2, initial_size=3),
    dict(strategy="nsga2", evaluator="proxy:synflow", dataset="digits", objectives="acc,params", selection="eagan"),
    dict(strategy="bo-tpe", evaluator="supernet:/some/run", eval_size=200, max_cost=10.0),
    dict(strategy="random", evaluator="parzc:/some/model.pt", mc_samples=5, budget=7, seed=3),
])
def test_a_run_config_reads_back_to_the_same_config(options):
    config = search_config(**options)
    assert run_config(resolve(options_of_run_config(json.loads(json.dumps(config))))) == config


def test_an_option_no_chosen_plugin_takes_is_refused_by_name(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(BENCH + ["--strategy", "ls", "--population-size", "4", "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert "population_size does not apply" in err and "strategy re" in err and not run.exists()
    config = tmp_path / "c.yaml"
    config.write_text("strategy: random\nepochs: 4\n")
    assert main(BENCH + ["--config", str(config), "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"epochs (from config file {config})" in err and "evaluator train" in err and not run.exists()
    with pytest.raises(ConfigError, match="C does not apply"):
        search_config(evaluator="supernet:/x", C=8)


def test_a_wrong_value_names_the_option_and_its_source(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("strategy: nsga2\npopulation_size: 1\n")
    assert main(BENCH + ["--config", str(config), "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "population_size in config file" in err and ">= 2" in err  # nsga2's range, not re's


def test_a_module_class_strategy_gets_flags_from_its_declaration(nastk_data, tmp_path, capsys):
    run = tmp_path / "walk"
    argv = BENCH + ["--strategy", "plugin_strategy:GreedyWalk", "--explore", "0.5", "--budget", "12",
                    "--run-dir", str(run)]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["evaluations"] == 12 and summary["strategy"]["explore"] == 0.5
    assert json.loads((run / "config.json").read_text())["strategy_options"] == {"explore": 0.5}
    assert main(["search", "--run-dir", str(run), "--resume", "--budget", "15", "--no-progress", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["replayed"] == 12
    with pytest.raises(SystemExit) as refused:  # argparse checks the flag against the declared range
        main(BENCH + ["--strategy", "plugin_strategy:GreedyWalk", "--explore", "2", "--run-dir", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and "--explore: must be a finite number >= 0 and <= 1" in err
    assert err.count("\n") == 1 and not (tmp_path / "bad").exists()


def test_an_evaluator_from_a_package_plugs_in(nastk_data, monkeypatch, tmp_path, capsys):
    from nastk.evaluator import Evaluator, Result
    from nastk.options import Int, Option

    class ParamsEvaluator(Evaluator):
        """Minus the parameter count (a toy training-free objective)."""

        objective = "minus_params"
        builds_networks = True
        OPTIONS = (Option("classes", Int(minimum=2), "output classes"),)

        def __init__(self, space, seed=0, device="cpu", classes=10, build_options=None):
            self.space, self.classes, self.build_options = space, classes, build_options or {}

        def evaluate(self, arch):
            model = self.space.build(arch, self.classes, **self.build_options)
            return Result({"minus_params": -sum(p.numel() for p in model.parameters())}, objective="minus_params")

    monkeypatch.setitem(EVALUATORS._entries, "params", ParamsEvaluator)
    run = tmp_path / "p"
    assert main(["search", "--evaluator", "params", "--classes", "3", "--C", "4", "--budget", "5", "--run-dir",
                 str(run), "--no-progress", "--format", "json"]) == 0
    config = json.loads((run / "config.json").read_text())["evaluator"]
    assert config == {"kind": "params", "classes": 3, "build": {"C": 4, "N": 1}}
    assert evaluator_options(config) == {"evaluator": "params", "classes": 3, "C": 4, "N": 1}
    assert json.loads(capsys.readouterr().out)["best_objective"] < 0


def test_listings_show_declared_options(capsys):
    assert main(["strategies", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["re"]["options"] == {"population_size": 10, "sample_size": 3}
    assert main(["evaluators", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows["parzc"]["form"] == "parzc:PATH" and rows["train"]["options"]["epochs"] == 3


def test_a_run_made_before_an_option_existed_resumes_with_its_default(nastk_data, tmp_path, capsys):
    """A config.json without an option declared since (here bo-tpe's n_startup_trials and the benchmark
    evaluator's trust_pickle) resumes as the run it was; changing an option it did record is refused."""
    run = tmp_path / "old"
    argv = ["search", "--strategy", "bo-tpe", "--benchmark", "nb201", "--dataset", "cifar10", "--budget", "12",
            "--run-dir", str(run), "--no-progress", "--format", "json"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    config = json.loads((run / "config.json").read_text())
    del config["strategy_options"]["n_startup_trials"], config["evaluator"]["trust_pickle"]
    (run / "config.json").write_text(json.dumps(config))
    assert main(["search", "--run-dir", str(run), "--resume", "--budget", "14", "--no-progress", "--format", "json"]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["replayed"] == 12 and resumed["evaluated_now"] == 2 and resumed["best_objective"] >= first["best_objective"]
    upgraded = json.loads((run / "config.json").read_text())
    assert upgraded["strategy_options"]["n_startup_trials"] == 10 and upgraded["budget"] == 14
    del upgraded["strategy_options"]["n_startup_trials"]
    (run / "config.json").write_text(json.dumps(upgraded))
    assert main(["search", "--run-dir", str(run), "--resume", "--n-startup-trials", "3", "--no-progress"]) == 2
    assert "differs in strategy_options" in capsys.readouterr().err
