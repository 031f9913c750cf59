"""Spaces from anywhere: ``package.module:Class`` and entry points, in the library and on the command line."""
import json

import pytest

from nastk.cli import main
from nastk.errors import UnknownNameError
from nastk.registry import SPACES, Registry
from nastk.space import get_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SPEC = "plugin_space:PluginSpace"  # tests/ is on sys.path under pytest


def test_module_class_spec_loads_and_registers_the_spaces_own_name():
    space = get_space(SPEC)
    assert space.name == "plugin" and "plugin" in SPACES and type(get_space("plugin")) is type(space)
    arch = space.from_str("width=8,act=tanh")
    assert arch.to_str() == "width=8,act=tanh" and SPEC not in SPACES.names()


@pytest.mark.parametrize("name, message", [("nowhere.at_all:Space", "cannot load search space"),
                                           ("plugin_space:Missing", "cannot load search space"),
                                           ("no-such-space", "known search spaces: "), ("../x:y", "unknown search space")])
def test_bad_space_names_are_one_clear_error(name, message):
    with pytest.raises(UnknownNameError, match=message):
        get_space(name)


def test_entry_points_are_found(monkeypatch):
    class Point:
        name, value = "from-a-package", SPEC

    registry = Registry("search space", group="nastk.spaces")
    monkeypatch.setattr(registry, "_entry_points", lambda: [Point()])
    assert registry.get("from-a-package").__name__ == "PluginSpace" and "from-a-package" in registry.names()


def test_cli_search_on_a_module_class_space(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["search", "--space", SPEC, "--strategy", "re", "--evaluator", "proxy:synflow", "--dataset", "digits",
                 "--budget", "4", "--run-dir", str(run), "--no-progress", "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert get_space("plugin").from_str(summary["best_arch"])
    assert json.loads((run / "config.json").read_text())["space"] == SPEC
    assert main(["search", "--space", SPEC, "--strategy", "re", "--evaluator", "proxy:synflow", "--dataset", "digits",
                 "--budget", "4", "--run-dir", str(run), "--resume", "--no-progress", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["best_arch"] == summary["best_arch"]  # resumed by replay


def journal(run):
    return [(r["arch"], r["result"]["metrics"]) for r in map(json.loads, (run / "journal.jsonl").read_text().splitlines())]


def test_resume_reads_the_runs_own_config_and_a_larger_budget_extends_it(tmp_path, capsys):
    run = tmp_path / "run"
    search = ["search", "--space", "nb201", "--strategy", "re", "--evaluator", "proxy:synflow", "--dataset", "digits",
              "--C", "4", "--N", "1", "--seed", "2", "--no-progress", "--format", "json"]
    assert main(search + ["--budget", "3", "--run-dir", str(run)]) == 0
    three = json.loads(capsys.readouterr().out)
    assert main(["search", "--run-dir", str(run), "--resume", "--no-progress", "--format", "json"]) == 0  # no flags
    again = json.loads(capsys.readouterr().out)
    assert again["replayed"] == 3 and again["evaluated_now"] == 0 and again["best_arch"] == three["best_arch"]
    assert main(["search", "--run-dir", str(run), "--resume", "--budget", "5", "--no-progress", "--format", "json"]) == 0
    five = json.loads(capsys.readouterr().out)
    assert five["replayed"] == 3 and five["evaluated_now"] == 2
    assert json.loads((run / "config.json").read_text())["budget"] == 5
    straight = tmp_path / "straight"
    assert main(search + ["--budget", "5", "--run-dir", str(straight)]) == 0
    capsys.readouterr()
    assert journal(straight) == journal(run)  # an extended run = the longer run
    assert main(["search", "--run-dir", str(run), "--resume", "--budget", "4", "--no-progress"]) == 2
    assert "a larger budget extends it" in capsys.readouterr().err
    assert main(["search", "--run-dir", str(run), "--resume", "--seed", "3", "--no-progress"]) == 2
    assert "differs in seed" in capsys.readouterr().err
    copy = tmp_path / "copy"  # a run's config.json works as --config
    assert main(["search", "--config", str(run / "config.json"), "--run-dir", str(copy), "--no-progress",
                 "--format", "json"]) == 0
    assert journal(copy) == journal(run)
