"""``nastk search --objectives psnr,bitops`` over the super-resolution space: the supernet evaluator scores a child of a
trained QuantNAS run by Y-PSNR on whole held-out images (never the test images, which the winner is reported on), the
train evaluator trains a child from scratch on image pairs and scores it the same way, BitOps constraints decide before
evaluating, and summaries, ``runs show`` and ``runs plot`` show PSNR in dB against BitOps."""
import json
import math

import numpy as np
import pytest

from nastk.cli import main
from nastk.datasets import load_dataset
from nastk.errors import ConfigError
from nastk.evaluators.multi_objective import parse_objectives
from nastk.oneshot.datamodules import make_data_module
from nastk.oneshot.ranking import activate
from nastk.oneshot.trainer import OneShotConfig, OneShotTrainer, load_trained
from nastk.quantization.sr_data import SPLITS, score_whole_images, whole_images
from nastk.space import get_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DATA_OPTIONS = {"scale": 2, "downscale": "bicubic", "psnr": "y", "border": 4}


@pytest.fixture(scope="module")
def sr_patches():
    return load_dataset("skimage-sr")


@pytest.fixture(scope="module")
def sr_run(tmp_path_factory, sr_patches):
    """A tiny QuantNAS run (C = 4, one epoch on 16 skimage-sr patches: half weights, half alpha)."""
    folder = tmp_path_factory.mktemp("sr") / "supernet"
    config = OneShotConfig.for_step(
        "quantnas", space="sr", dataset="skimage-sr", data="image_pairs", data_options=DATA_OPTIONS,
        supernet={"C": 4, "upscale": 2}, epochs=1, train_size=16, batch_size=8, valid_size=8, eval_batch_size=8,
        augment=False, step_options={"arch_warmup_epochs": 0, "arch_lr": 0.05, "bitops_penalty": 0.1})
    OneShotTrainer(config, folder, data=sr_patches, progress=False).fit()
    return folder


def search(capsys, run, folder, *flags):
    capsys.readouterr()
    assert main(["search", "--space", "sr", "--evaluator", f"supernet:{run}", *flags, "--run-dir", str(folder),
                 "--no-progress", "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    return summary, [json.loads(line) for line in (folder / "journal.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def direct_psnr(sr_run):
    """The child's mean Y-PSNR on the first ``count`` whole images of a split, computed here with score_whole_images."""
    supernet, config, _ = load_trained(sr_run)
    module = make_data_module("image_pairs", config.data_options)

    def psnr(arch: str, split: str, count: int = None) -> float:
        activate(supernet, supernet.space.from_str(arch))
        scores = score_whole_images(supernet, whole_images(split, 2)[:count], module)
        return sum(scores.values()) / len(scores)
    return psnr


def dominates(a, b) -> bool:
    """(psnr, bitops): higher PSNR and lower BitOps, better in one."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def test_psnr_bitops_search_on_a_quantnas_supernet(sr_run, direct_psnr, tmp_path, capsys):
    summary, records = search(capsys, sr_run, tmp_path / "search", "--strategy", "nsga2", "--objectives", "psnr,bitops",
                              "--budget", "4")
    space = get_space("sr")
    assert {r["result"]["objective"] for r in records} == {"psnr"}
    for record in records:
        result = record["result"]
        # selection reads the held-out select images, never a test image
        assert result["protocol"]["split"] == "held_out" and result["protocol"]["scored"] == list(SPLITS["select"])
        assert result["metrics"]["psnr"] == pytest.approx(direct_psnr(record["arch"], "select"), abs=1e-9)
        # BitOps of the network the run trained (C = 4, x2) on the 64 x 64 LR input the reports use
        cost = space.cost(space.from_str(record["arch"]), scale=2, C=4)
        assert result["metrics"]["bitops_m"] == pytest.approx(cost["bitops_m"])
    points = {r["arch"]: (r["result"]["metrics"]["psnr"], r["result"]["metrics"]["bitops_m"]) for r in records}
    front = {row["arch"]: (row["psnr"], row["bitops"]) for row in summary["pareto_front"]}
    assert front and all(points[arch] == pytest.approx(value) for arch, value in front.items())
    assert not any(dominates(p, f) for f in front.values() for p in points.values())  # non-dominated ...
    assert all(any(dominates(f, p) for f in front.values()) for a, p in points.items() if a not in front)  # ... and all
    # the winner's test-image PSNR is reported beside, not selected on
    best = summary["best_arch"]
    assert summary["best_objective"] == max(p[0] for p in points.values())
    assert summary["final_metrics"]["test_psnr"] == pytest.approx(direct_psnr(best, "test"), abs=1e-9)
    assert summary["evaluator"]["unit"] == "dB" and "select" not in summary["evaluator"]["report"]
    assert (tmp_path / "search" / "pareto.png").is_file()


def test_text_summary_runs_show_and_runs_plot_say_db_and_bitops(sr_run, direct_psnr, tmp_path, capsys):
    folder = tmp_path / "search"
    assert main(["search", "--space", "sr", "--strategy", "random", "--objectives", "psnr,bitops", "--evaluator",
                 f"supernet:{sr_run}", "--eval-size", "1", "--budget", "3", "--run-dir", str(folder),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert " dB  (inherited-weight Y-channel PSNR" in out and "test psnr" in out and "reported, never selected" in out
    assert "objectives        : psnr " in out and " M" in out and "Pareto front      :" in out
    assert main(["runs", "show", "--run-dir", str(folder)]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert " dB (psnr): " in shown[1] and shown[2].split()[:6] == ["step", "psnr", "(dB)", "best", "so", "far"]
    assert "BitOps (M)" in shown[2]
    assert main(["runs", "plot", str(folder), "--out", str(tmp_path / "fronts.png"), "--format", "json"]) == 0
    plotted = json.loads(capsys.readouterr().out)
    assert "PSNR (dB)\nBitOps (M)" in plotted["axes"] and (tmp_path / "fronts.png").is_file()
    front = [line for line in plotted["lines"] if line["panel"] == "PSNR (dB)\nBitOps (M)"][0]["front"]
    summary = json.loads((folder / "summary.json").read_text())
    assert sorted(map(tuple, front)) == sorted((row["bitops"], row["psnr"]) for row in summary["pareto_front"])
    # --eval-size 1: the first held-out image (china) selects, the first test image (astronaut) reports
    assert summary["best_objective"] == pytest.approx(direct_psnr(summary["best_arch"], "select", 1), abs=1e-9)
    assert summary["final_metrics"]["test_psnr"] == pytest.approx(direct_psnr(summary["best_arch"], "test", 1), abs=1e-9)


def test_a_bitops_constraint_on_sr_rules_children_out_before_scoring(sr_run, tmp_path, capsys):
    space = get_space("sr")
    rng = np.random.default_rng(0)
    bitops = sorted(space.cost(space.sample(rng), C=4)["bitops_m"] for _ in range(9))
    bound = round(bitops[len(bitops) // 2])  # about half the space is feasible
    summary, records = search(capsys, sr_run, tmp_path / "search", "--strategy", "random", "--objectives",
                              "psnr,bitops", "--constraint", f"bitops<={bound}", "--eval-size", "1", "--budget", "6")
    for record in records:
        metrics = record["result"]["metrics"]
        assert metrics["feasible"] == int(metrics["bitops_m"] <= bound)
        assert ("psnr" in metrics) == bool(metrics["feasible"])  # a violator is never evaluated
    assert summary["constraints"]["not_evaluated"] == summary["constraints"]["infeasible"]
    assert all(row["bitops"] <= bound for row in summary["pareto_front"])


@pytest.mark.parametrize("flags, message", [
    (["--objectives", "psnr,params"], "objective psnr names the evaluator's score only when it is a PSNR (dB); the "
                                      "benchmark evaluator on nb201 scores accuracy (use score)"),
    (["--objectives", "psnr"], "objective psnr names the evaluator's score only when it is a PSNR"),
    (["--constraint", "psnr>=30"], "constraint psnr>=30: psnr names the evaluator's score only when it is a PSNR"),
    (["--objectives", "bitops,psnr"], "--objectives must start with score"),
    (["--objectives", "score,psnr"], "name each objective once")])
def test_psnr_where_the_score_is_no_psnr_is_one_line(nastk_data, capsys, tmp_path, flags, message):
    assert main(["search", "--space", "nb201", "--benchmark", "nb201", "--dataset", "cifar10", "--strategy", "nsga2",
                 "--budget", "2", *flags, "--run-dir", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "r").exists()


def test_psnr_objective_is_the_evaluators_own_score():
    psnr, bitops = parse_objectives("psnr,bitops")
    assert (psnr.metric, psnr.direction, psnr.unit, psnr.score) == (None, "maximize", "dB", "psnr")
    assert (bitops.metric, bitops.direction) == ("bitops_m", "minimize")


def test_train_evaluator_trains_an_sr_child_on_pairs_and_scores_held_out_psnr(sr_patches):
    from nastk.evaluators.from_scratch import TrainingEvaluator
    from nastk.quantization.sr_data import mean_score

    space = get_space("sr")
    arch = space.sample(np.random.default_rng(1))
    evaluator = TrainingEvaluator(space, epochs=1, final_epochs=1, lr=0.05, build_options={"scale": 2, "C": 4, "adq": True})
    assert evaluator.objective == "psnr" and evaluator.data.name.startswith("skimage-sr")
    assert len(evaluator.x_fit) == len(sr_patches.x_train)  # the held-out images are whole ones: every patch trains
    evaluator.x_fit, evaluator.y_fit = evaluator.x_fit[:64], evaluator.y_fit[:64]  # (kept short here)
    result = evaluator.evaluate(arch)
    assert result.objective == "psnr" and result.protocol["scored"] == list(SPLITS["select"])
    assert math.isfinite(result.metrics["psnr"]) and result.metrics["train_loss"] < 0.5  # L1 on [0, 1] images
    model, _ = evaluator._trained(arch, evaluator.x_fit, evaluator.y_fit, evaluator.config)  # the seed is the arch's
    assert result.metrics["psnr"] == mean_score(model, whole_images("select", 2), evaluator.data_module)
    assert evaluator.network_options() == {"scale": 2, "C": 4}
    with pytest.raises(ConfigError, match="train on skimage-sr .image_pairs., not 'digits'"):
        TrainingEvaluator(space, dataset="digits", build_options={"scale": 2, "C": 4})
