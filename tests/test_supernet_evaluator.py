"""``--evaluator supernet:RUN_DIR``: any query strategy searches a trained supernet's inherited weights.

Selection reads training images the supernet never trained on (split held_out, the default), never the
test split unless asked for (split test); the winner's test accuracy is reported, not optimised."""
import json

import pytest
import torch

from nastk.cli import main
from nastk.errors import ConfigError
from nastk.oneshot.splits import split_images, unseen_training_images
from nastk.datasets import load_dataset, mixed
from nastk.oneshot.trainer import OneShotConfig, load_trained

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def supernet_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("supernet") / "run"
    assert main(["supernet", "train", "--space", "nb201", "--dataset", "cifar10", "--epochs", "1", "--train-size", "64",
                 "--C", "4", "--N", "1", "--batch-size", "32", "--valid-size", "0", "--run-dir", str(run),
                 "--no-progress", "--format", "json"]) == 0
    return run


def ranked(capsys, run, archs_file, split, *flags):
    """supernet rank's accuracies on ``split`` by architecture string."""
    capsys.readouterr()
    assert main(["supernet", "rank", "--run-dir", str(run), "--archs", str(archs_file), "--split", split, *flags,
                 "--eval-size", "1000", "--no-progress", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["split"] == split and out["eval_images"] == 1000
    return {row["arch"]: row["supernet_accuracy"] for row in out["ranking"]}


def search(capsys, run, folder, *flags):
    capsys.readouterr()
    assert main(["search", "--strategy", "re", "--evaluator", f"supernet:{run}", "--budget", "4", *flags,
                 "--run-dir", str(folder), "--no-progress", "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    records = [json.loads(line) for line in (folder / "journal.jsonl").read_text().splitlines()]
    return summary, records


def test_search_selects_on_held_out_training_images_and_reports_test_accuracy(nastk_data, supernet_run, tmp_path, capsys):
    summary, records = search(capsys, supernet_run, tmp_path / "search")
    assert {r["result"]["protocol"]["split"] for r in records} == {"held_out"}
    # NB201's supernet BN uses batch statistics: the default recalibrates nothing, recorded as 0 batches
    assert json.loads((tmp_path / "search" / "config.json").read_text())["evaluator"]["bn_calibration"] == 0
    assert not any("bn_calibration" in r["result"]["protocol"] for r in records)
    assert "held-out" in summary["evaluator"]["objective"] and "test images" not in summary["evaluator"]["objective"]
    archs = tmp_path / "archs.txt"
    archs.write_text("\n".join(r["arch"] for r in records))
    held_out, test = ranked(capsys, supernet_run, archs, "held_out"), ranked(capsys, supernet_run, archs, "test")
    assert [r["result"]["metrics"]["accuracy"] for r in records] == pytest.approx([held_out[r["arch"]] for r in records])
    # the winner: benchmark truth as test_accuracy, and its inherited-weight test accuracy beside
    assert summary["test_accuracy"] is not None and summary["evaluator"]["evaluator"] == "supernet"
    assert summary["final_metrics"]["supernet_test_accuracy"] == pytest.approx(test[summary["best_arch"]])
    assert main(["search", "--run-dir", str(tmp_path / "search"), "--resume", "--no-progress", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["evaluated_now"] == 0  # its config names the supernet again


def test_split_test_scores_the_test_images_and_says_so(nastk_data, supernet_run, tmp_path, capsys):
    summary, records = search(capsys, supernet_run, tmp_path / "search", "--split", "test")
    assert {r["result"]["protocol"]["split"] for r in records} == {"test"}
    assert "the test split" in summary["evaluator"]["objective"]
    archs = tmp_path / "archs.txt"
    archs.write_text("\n".join(r["arch"] for r in records))
    test = ranked(capsys, supernet_run, archs, "test")
    assert [r["result"]["metrics"]["accuracy"] for r in records] == pytest.approx([test[r["arch"]] for r in records])
    # NB201's supernet BN uses batch statistics: recalibration has nothing to do and changes no score
    assert ranked(capsys, supernet_run, archs, "test", "--bn-calibration", "1", "--bn-recipe", "exact") == test


def test_a_run_config_from_before_the_split_option_resumes_on_the_test_split(nastk_data, supernet_run, tmp_path, capsys):
    folder = tmp_path / "search"
    search(capsys, supernet_run, folder, "--split", "test")
    config = json.loads((folder / "config.json").read_text())
    for name in ("split", "bn_calibration", "bn_recipe"):
        del config["evaluator"][name]
    (folder / "config.json").write_text(json.dumps(config))
    assert main(["search", "--run-dir", str(folder), "--resume", "--no-progress", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["evaluated_now"] == 0
    assert json.loads((folder / "config.json").read_text())["evaluator"]["split"] == "test"


def as_rows(x):
    return {row.numpy().tobytes() for row in x.flatten(1)}


def test_held_out_images_are_disjoint_from_the_trained_ones(nastk_data, supernet_run):
    _, config, _ = load_trained(supernet_run)
    data = load_dataset(config.dataset)
    (x_train, _), (x_held, _) = split_images(config, data)
    assert len(x_train) == 64 and len(x_held) == 0  # the run held none out ...
    x_unseen, y_unseen = unseen_training_images(config, data)
    assert len(x_unseen) == len(data.x_train) - 64  # ... so the images beyond its train_size are held out
    assert not as_rows(x_train) & as_rows(x_unseen)
    x_all, y_all = mixed(data.x_train, data.y_train)
    assert torch.equal(x_unseen, x_all[64:]) and torch.equal(y_unseen, y_all[64:])
    assert len(unseen_training_images(config, data, 1000)[0]) == 1000


def test_the_split_is_the_trainers_and_held_out_part_comes_first(nastk_data):
    from nastk.oneshot.trainer import OneShotTrainer

    data = load_dataset("digits")
    config = OneShotConfig(dataset="digits", train_size=200, held_out_fraction=0.25, supernet={"C": 4, "N": 1},
                           valid_size=0, epochs=1)
    trainer = OneShotTrainer(config, data=data, progress=False)
    (x_train, y_train), (x_held, y_held) = split_images(config, data)
    assert torch.equal(x_train, trainer.x) and torch.equal(y_train, trainer.y)
    assert torch.equal(x_held, trainer.x_held) and torch.equal(y_held, trainer.y_held) and len(x_held) == 50
    x_unseen, _ = unseen_training_images(config, data)
    assert torch.equal(x_unseen, x_held)  # the run's own held-out part (DARTS' alpha half, RSPS' validation)
    assert not as_rows(x_train) & as_rows(x_unseen)


def test_a_run_that_trained_on_every_image_has_no_held_out_split(nastk_data):
    data = load_dataset("digits")
    for config in (OneShotConfig(dataset="digits"), OneShotConfig(dataset="digits", train_size=len(data.x_train) + 10)):
        with pytest.raises(ConfigError, match="--held-out-fraction or a smaller --train-size") as error:
            unseen_training_images(config, data)
        assert "\n" not in str(error.value)


@pytest.mark.parametrize("evaluator, message", [("supernet:", "needs its RUN_DIR"),
                                                ("supernet:/nowhere", "no supernet checkpoint")])
def test_bad_supernet_evaluators_are_one_line(capsys, tmp_path, evaluator, message):
    assert main(["search", "--evaluator", evaluator, "--budget", "2", "--run-dir", str(tmp_path / "r"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "r").exists()
