"""``--evaluator supernet:RUN_DIR``: any query strategy searches a trained supernet's inherited weights."""
import json

import pytest

from nastk.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def supernet_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("supernet") / "run"
    assert main(["supernet", "train", "--space", "nb201", "--dataset", "cifar10", "--epochs", "1", "--train-size", "64",
                 "--C", "4", "--N", "1", "--batch-size", "32", "--valid-size", "0", "--run-dir", str(run),
                 "--no-progress", "--format", "json"]) == 0
    return run


def test_search_scores_match_supernet_rank_and_the_winner_is_reported_on_nb201(nastk_data, supernet_run, tmp_path, capsys):
    capsys.readouterr()
    search = tmp_path / "search"
    assert main(["search", "--strategy", "re", "--evaluator", f"supernet:{supernet_run}", "--budget", "4",
                 "--run-dir", str(search), "--no-progress", "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    records = [json.loads(line) for line in (search / "journal.jsonl").read_text().splitlines()]
    (tmp_path / "archs.txt").write_text("\n".join(r["arch"] for r in records))
    assert main(["supernet", "rank", "--run-dir", str(supernet_run), "--archs", str(tmp_path / "archs.txt"),
                 "--eval-size", "1000", "--no-progress", "--format", "json"]) == 0
    ranked = {row["arch"]: row["supernet_accuracy"] for row in json.loads(capsys.readouterr().out)["ranking"]}
    assert [r["result"]["metrics"]["accuracy"] for r in records] == pytest.approx([ranked[r["arch"]] for r in records])
    assert summary["test_accuracy"] is not None and summary["evaluator"]["evaluator"] == "supernet"
    assert main(["search", "--run-dir", str(search), "--resume", "--no-progress", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["evaluated_now"] == 0  # its config names the supernet again


@pytest.mark.parametrize("evaluator, message", [("supernet:", "needs its RUN_DIR"),
                                                ("supernet:/nowhere", "no supernet checkpoint")])
def test_bad_supernet_evaluators_are_one_line(capsys, tmp_path, evaluator, message):
    assert main(["search", "--evaluator", evaluator, "--budget", "2", "--run-dir", str(tmp_path / "r"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "r").exists()
