"""Local search: best improvement over the space's neighbours, random restarts, exact resume."""
import json

import pytest

from nastk.cli import main
from nastk.errors import ConfigError
from nastk.evaluator import Evaluator, Result
from nastk.run_folder import run_search
from nastk.space import get_space
from nastk.strategy import make_strategy


class CountOfConvolutions(Evaluator):
    """A smooth objective: the number of 3x3 convolutions in an NB201 cell (its optimum has 6)."""

    def evaluate(self, arch):
        return Result({"accuracy": float(arch.to_str().count("nor_conv_3x3"))})


def test_every_move_is_to_the_best_neighbour_and_no_architecture_is_queried_twice():
    space = get_space("nb201")
    strategy = make_strategy("ls", space, seed=0, initial_size=3)
    outcome = run_search(strategy, CountOfConvolutions(), 3 + 6 * 24)
    archs = [t.arch for t in outcome.trials]
    assert len(set(archs)) == len(archs)
    # On this objective each neighbourhood holds a one-step improvement until the optimum, so the
    # search climbs one convolution per neighbourhood (24 neighbours in NB201) and reaches 6 within 6 neighbourhoods.
    assert outcome.best_result.value == 6.0 and strategy.restarts <= 1


def test_a_local_optimum_restarts_from_a_random_architecture():
    class Flat(Evaluator):
        def evaluate(self, arch):
            return Result({"accuracy": 1.0})

    strategy = make_strategy("ls", get_space("nb201"), seed=1, initial_size=2)
    run_search(strategy, Flat(), 2 + 24 + 1 + 24 + 1)  # init, a neighbourhood, a restart, its neighbourhood, a restart
    assert strategy.restarts >= 2  # (fewer than 24 new neighbours if some were evaluated already)


def test_cli_local_search_resumes_exactly(nastk_data, tmp_path, capsys):
    search = ["search", "--strategy", "ls", "--benchmark", "nb201", "--dataset", "cifar10", "--seed", "4",
              "--initial-size", "5", "--no-progress", "--format", "json"]
    assert main(search + ["--budget", "40", "--run-dir", str(tmp_path / "full")]) == 0
    full = json.loads(capsys.readouterr().out)
    assert main(search + ["--budget", "15", "--run-dir", str(tmp_path / "cut")]) == 0
    assert main(["search", "--run-dir", str(tmp_path / "cut"), "--resume", "--budget", "40", "--format", "json",
                 "--no-progress"]) == 0
    extended = json.loads(capsys.readouterr().out.split("\n}\n")[-2] + "\n}")
    assert extended["replayed"] == 15 and extended["best_arch"] == full["best_arch"]
    lines = lambda run: (tmp_path / run / "journal.jsonl").read_text().splitlines()  # noqa: E731
    assert [json.loads(a)["arch"] for a in lines("cut")] == [json.loads(a)["arch"] for a in lines("full")]


def test_bad_initial_size_is_a_config_error():
    with pytest.raises(ConfigError, match="initial_size"):
        make_strategy("ls", get_space("nb201"), initial_size=0)
