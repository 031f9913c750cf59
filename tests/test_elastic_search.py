"""The elastic MobileNet space end to end: a sandwich-trained supernet (BN momentum 0, so every child's
BatchNorm statistics are recalibrated), ranked without a benchmark, searched under FLOPs budgets through
``--evaluator supernet:RUN_DIR``, and its children and search winners exported with inherited weights that
reproduce the accuracy the ranking and the search report, without nastk."""
import json
import subprocess
import sys

import pytest
import torch

from nastk.cli import main
from nastk.oneshot.splits import unseen_training_images
from nastk.oneshot.trainer import load_trained

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAIN, HELD_OUT = 600, 200  # --train-size 800 --held-out-fraction 0.25


def constraint_available() -> bool:
    from nastk.search_config import GENERAL_BY_NAME

    return "constraints" in GENERAL_BY_NAME


@pytest.fixture(scope="module")
def supernet_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("elastic") / "supernet"
    assert main(["supernet", "train", "--space", "mobilenet", "--step", "sandwich", "--dataset", "digits", "--epochs", "2",
                 "--train-size", "800", "--held-out-fraction", "0.25", "--bn-momentum", "0", "--valid-size", "0",
                 "--run-dir", str(run), "--no-progress", "--format", "json"]) == 0
    return run


@pytest.fixture(scope="module")
def held_out(supernet_run):
    """The images the supernet evaluator and ``supernet rank --split held_out`` score on."""
    _, config, _ = load_trained(supernet_run)
    x, y = unseen_training_images(config)
    assert len(x) == HELD_OUT
    return x, y


def accuracy_of(model, images) -> float:
    x, y = images
    with torch.no_grad():
        return 100.0 * float((model(x).argmax(1) == y).float().mean())


def rank_json(capsys, run, *flags):
    capsys.readouterr()
    assert main(["supernet", "rank", "--run-dir", str(run), "--split", "held_out", *flags, "--no-progress",
                 "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def export_json(capsys, run, out, *flags):
    capsys.readouterr()
    assert main(["export", "--run-dir", str(run), "--out", str(out), *flags, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def loads_without_nastk(path, cwd) -> None:
    script = ("import sys, torch; model = torch.jit.load(sys.argv[1]); y = model(torch.zeros(2, 3, 16, 16)); "
              "assert not [m for m in sys.modules if m.startswith('nastk')]; print(tuple(y.shape))")
    done = subprocess.run([sys.executable, "-I", "-c", script, str(path)], capture_output=True, text=True, cwd=cwd)
    assert done.returncode == 0 and done.stdout.strip() == "(2, 10)", done.stderr


def test_rank_without_a_benchmark_ranks_by_the_supernets_own_score(supernet_run, capsys):
    out = rank_json(capsys, supernet_run, "--sample", "4")
    assert out["truth"] is None and "no benchmark" in out["note"] and out["n"] == 4
    assert not {"kendall", "spearman", "precision_at"} & set(out)
    assert all(set(row) == {"rank", "arch", "supernet_accuracy"} for row in out["ranking"])
    scores = [row["supernet_accuracy"] for row in out["ranking"]]
    assert scores == sorted(scores, reverse=True)
    # BN momentum 0 tracks statistics: recalibrated by default, on every training image up to 2000
    assert out["bn_calibration_images"] == TRAIN and out["bn_recipe"] == "cumulative"
    capsys.readouterr()
    assert main(["supernet", "rank", "--run-dir", str(supernet_run), "--sample", "2", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "ranked by the supernet's own accuracy" in text and "has no benchmark" in text
    assert f"BN recalibrated on {TRAIN} training images" in text
    assert main(["supernet", "rank", "--run-dir", str(supernet_run), "--sample", "2", "--truth-dataset", "cifar10"]) == 2
    err = capsys.readouterr().err
    assert "has no benchmark" in err and err.count("\n") == 1


def test_an_exported_child_reproduces_its_ranked_accuracy_without_nastk(supernet_run, held_out, capsys, tmp_path):
    from nastk.space import get_space

    ranked = rank_json(capsys, supernet_run, "--sample", "3", "--seed", "1")
    row = ranked["ranking"][0]
    out = tmp_path / "child.pt"
    written = export_json(capsys, supernet_run, out, "--arch", row["arch"])
    assert written["arch"] == row["arch"] and written["check_max_abs_difference"] < 1e-5
    assert written["bn_calibration"] == {"batches": 5, "images": TRAIN, "recipe": "cumulative"}
    assert f"recalibrated on {TRAIN}" in written["weights"] and "not retrained" in written["weights"]
    assert accuracy_of(torch.jit.load(str(out)), held_out) == pytest.approx(row["supernet_accuracy"], abs=0.01)
    loads_without_nastk(out, tmp_path)
    # the state dict rebuilds through the space's build() with the supernet's options
    state = tmp_path / "child-state.pt"
    export_json(capsys, supernet_run, state, "--arch", row["arch"], "--out-format", "state-dict")
    held = torch.load(state, weights_only=True)
    space = get_space(held["space"])
    model = space.build(space.from_str(held["arch"]), held["num_classes"], **held["build"])
    model.load_state_dict(held["state_dict"])
    assert accuracy_of(model.eval(), held_out) == pytest.approx(row["supernet_accuracy"], abs=0.01)


def test_bad_child_exports_are_one_line_and_write_nothing(supernet_run, capsys, tmp_path):
    before = sorted(p.name for p in supernet_run.iterdir())
    nb201_arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    for flags, message in ((["--arch", nb201_arch], "not an architecture of the supernet's space mobilenet"),
                           ([], "is a supernet run folder: name the child to export with --arch")):
        capsys.readouterr()
        assert main(["export", "--run-dir", str(supernet_run), *flags]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert sorted(p.name for p in supernet_run.iterdir()) == before


def search_json(capsys, run, folder, *flags):
    capsys.readouterr()
    assert main(["search", "--space", "mobilenet", "--strategy", "re", "--evaluator", f"supernet:{run}", *flags,
                 "--run-dir", str(folder), "--no-progress", "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    records = [json.loads(line) for line in (folder / "journal.jsonl").read_text().splitlines()]
    return summary, records


def test_a_search_recalibrates_every_child_by_default_and_exports_its_winner(supernet_run, held_out, capsys, tmp_path):
    folder = tmp_path / "search"
    summary, records = search_json(capsys, supernet_run, folder, "--budget", "3", "--objectives", "acc,flops")
    config = json.loads((folder / "config.json").read_text())
    assert config["evaluator"]["bn_calibration"] == 16  # 2000 images in batches of 128, recorded in the config
    # ... of which the run has 600 training images: 5 batches, in every result's protocol
    assert all(r["result"]["protocol"]["bn_calibration"] == {"recipe": "cumulative", "batches": 5, "images": TRAIN}
               for r in records)
    written = export_json(capsys, folder, tmp_path / "winner.pt")
    assert written["arch"] == summary["best_arch"] and f"inherited from the supernet {supernet_run}" in written["weights"]
    assert accuracy_of(torch.jit.load(written["file"]), held_out) == pytest.approx(summary["best_objective"], abs=0.01)


@pytest.mark.skipif(not constraint_available(), reason="nastk search has no --constraint yet")
def test_constrained_searches_stay_within_their_flops_budgets_and_their_winners_export(supernet_run, held_out, capsys,
                                                                                       tmp_path):
    for budget in (2.5, 3.5):
        folder = tmp_path / f"flops{budget}"
        summary, records = search_json(capsys, supernet_run, folder, "--budget", "20", "--objectives", "acc,flops",
                                       "--constraint", f"flops<={budget}", "--bn-calibration", "2")
        feasible = [r for r in records if r["result"]["metrics"].get("feasible") == 1]
        assert feasible and all(r["result"]["metrics"]["flops_m"] <= budget for r in feasible)
        winner = next(r for r in feasible if r["arch"] == summary["best_arch"])
        assert winner["result"]["metrics"]["flops_m"] <= budget
        assert summary["best_objective"] == max(r["result"]["metrics"]["accuracy"] for r in feasible)
        written = export_json(capsys, folder, tmp_path / f"winner{budget}.pt")
        assert written["bn_calibration"]["batches"] == 2  # the evaluator's setting, so the accuracy is the search's
        model = torch.jit.load(written["file"])
        assert accuracy_of(model, held_out) == pytest.approx(summary["best_objective"], abs=0.01)
