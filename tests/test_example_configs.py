"""Every YAML config in examples/configs resolves to a valid run config; the cheap ones run as written."""
import json
from pathlib import Path

import pytest

from nastk.cli import main

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "examples" / "configs").glob("*.yaml"))


@pytest.fixture(autouse=True)
def examples_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(CONFIGS[0].parents[1]))  # as PYTHONPATH=examples does


def test_there_are_example_configs():
    assert {p.stem for p in CONFIGS} >= {"custom_space", "nb201_re_benchmark", "synflow_proxy_search"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_each_config_is_valid(path):
    from nastk.cli import build_parser
    from nastk.commands.search import resolve_options
    from nastk.search_config import run_config

    args = build_parser().parse_args(["search", "--config", str(path)])
    config = run_config(resolve_options(args))
    assert config["budget"] >= 1 and config["strategy"]


@pytest.mark.parametrize("name, extra", [("nb201_re_benchmark", []), ("nb201_ls_time_budget", ["--seeds", "0-1"]),
                                         ("custom_space", ["--budget", "3"]), ("nb201_nsga2_latency", []),
                                         ("nb201_tpe_parallel", ["--budget", "12"]),
                                         ("synflow_proxy_search", ["--budget", "3"])])
def test_cheap_configs_run_as_written(nastk_data, tmp_path, capsys, name, extra):
    path = next(p for p in CONFIGS if p.stem == name)
    assert main(["search", "--config", str(path), "--run-dir", str(tmp_path / name), "--no-progress",
                 "--format", "json"] + extra) == 0
    out = json.loads(capsys.readouterr().out)
    for run in out.get("runs", [out]):  # what each example promises in its comment
        assert run["test_accuracy"] > 30, f"{name} reports {run['test_accuracy']} (chance: 10)"
        if name == "nb201_ls_time_budget":  # the 6,000 s cap ends it before its 100 queries
            assert run["evaluations"] < 100 and run["cost_s"] >= 6000 - 400
