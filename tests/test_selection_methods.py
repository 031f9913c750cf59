"""DARTS-PT (perturbation.py), GM-NAS' criterion (gradient_matching.py) and the split schedule (splitting.py)."""
import json

import numpy as np
import pytest
import torch

from nastk.cli import main
from nastk.errors import ConfigError
from nastk.oneshot.gradient_matching import best_partition, gradient_distances
from nastk.oneshot.perturbation import PerturbationSelection, PTOptions, select_pt
from nastk.oneshot.fewshot import FewShotRun, SplitSchedule, train_fewshot
from nastk.oneshot.trainer import OneShotConfig, OneShotTrainer, train


def tiny(step="darts", **changes):
    options = dict(space="nb201", step=step, dataset="digits", supernet={"C": 4, "N": 1}, epochs=2, batch_size=64,
                   lr=0.025, lr_min=0.001, weight_decay=3e-4, valid_size=0, train_size=400, held_out_fraction=0.5)
    options.update(changes)
    return OneShotConfig(**options)


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def darts_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("darts") / "run"
    train(tiny(), folder, progress=False)
    return folder


def test_pt_decides_every_edge_once_and_records_evidence(darts_run, tmp_path):
    out = select_pt(darts_run, tmp_path / "pt", interval=1, progress=False)
    ops = [r for r in out["decisions"] if r["kind"] == "op"]
    assert sorted(r["decision"] for r in ops) == list(range(6))
    assert out["tuning_epochs"] == 5 and out["validation_passes"] == 30
    for record in ops:  # the kept op is the one whose removal hurts the held-out accuracy most
        accs = {name: s["acc"] for name, s in record["scores"].items()}
        assert accs[record["chosen_name"]] == min(accs.values())
        assert out["choices"][record["decision"]] == record["chosen"]
    journal = (tmp_path / "pt" / "journal.jsonl").read_text().splitlines()
    assert len(journal) == 6


@pytest.mark.slow  # moved out of the default run to keep it under 5 minutes on 2 cores
def test_pt_resumes_exactly_after_a_kill(darts_run, tmp_path):
    whole = select_pt(darts_run, tmp_path / "whole", interval=1, progress=False)
    selection = PerturbationSelection(darts_run, tmp_path / "killed", PTOptions(interval=1), progress=False)

    def kill(trainer, record):
        if trainer.epoch == 3:
            raise Killed

    selection.trainer.callbacks.append(kill)
    with pytest.raises(Killed):
        selection.select()
    resumed = select_pt(darts_run, tmp_path / "killed", resume=True, interval=1, progress=False)
    assert resumed["arch"] == whole["arch"]
    strip = lambda records: [{k: v for k, v in r.items() if k != "seconds"} for r in records]
    assert strip(resumed["decisions"]) == strip(whole["decisions"])


def test_pt_refuses_a_single_path_supernet_before_writing(tmp_path):
    train(tiny("single_path", held_out_fraction=None), tmp_path / "sp", progress=False)
    with pytest.raises(Exception, match="architecture parameters"):
        select_pt(tmp_path / "sp", tmp_path / "pt", progress=False)
    assert not (tmp_path / "pt").exists()
    with pytest.raises(ConfigError, match="criterion"):
        PTOptions(crit="speed")


def test_best_partition_finds_the_planted_groups():
    d = np.full((5, 5), 0.9)
    for group in ((1, 3), (0, 2, 4)):
        for a in group:
            for b in group:
                d[a, b] = 0.1
    np.fill_diagonal(d, 0)
    cut = best_partition(d, "cut")
    assert set(map(frozenset, cut.groups)) == {frozenset({1, 3}), frozenset({0, 2, 4})}
    assert cut.across == pytest.approx(6 * 0.9) and cut.within == pytest.approx(4 * 0.1)
    d8 = np.full((8, 8), 0.8)
    d8[np.ix_([0, 5, 6], [0, 5, 6])] = 0.05
    d8[np.ix_([1, 2, 3, 4, 7], [1, 2, 3, 4, 7])] = 0.05
    np.fill_diagonal(d8, 0)
    assert set(map(frozenset, best_partition(d8, "darts").groups)) == {frozenset({0, 5, 6}), frozenset({1, 2, 3, 4, 7})}
    with pytest.raises(ConfigError):
        best_partition(d, "median")


def test_gradient_distances_are_cosine_distances_and_leave_the_supernet_alone():
    trainer = OneShotTrainer(tiny(), None, progress=False)
    before = {k: v.clone() for k, v in trainer.supernet.state_dict().items()}
    options, d = gradient_distances(trainer, 0, batches=2)
    assert options == [0, 1, 2, 3, 4]
    assert np.allclose(d, d.T) and np.all(np.diag(d) == 0) and np.all((d >= -1e-9) & (d <= 2 + 1e-9))
    assert all(torch.equal(before[k], v) for k, v in trainer.supernet.state_dict().items())
    assert options == gradient_distances(trainer, 0, batches=2)[0]
    assert np.allclose(d, gradient_distances(trainer, 0, batches=2)[1])  # seeded: the same batches
    with pytest.raises(ConfigError, match="soft"):
        gradient_distances(OneShotTrainer(tiny("single_path"), None, progress=False), 0, mode="soft")


@pytest.mark.parametrize("step", [pytest.param("darts", marks=pytest.mark.slow), "single_path"])  # darts: 46 s
def test_gm_run_resumes_to_the_uninterrupted_result(step, tmp_path):
    schedule = SplitSchedule("gm", [1, 2], 1, batches=2, select_archs=5)
    whole = train_fewshot(tiny(step), schedule, tmp_path / "whole", progress=False)
    assert len(whole["leaves"]) == 4
    run = FewShotRun(tiny(step), schedule, tmp_path / "killed", progress=False)
    original = run._trainer

    def killing(node, folder, leaf=False):  # die inside the second leaf's training
        trainer = original(node, folder, leaf)
        if leaf and node.id == "root.0.1":
            trainer.callbacks.append(lambda t, r: (_ for _ in ()).throw(Killed()))
        return trainer

    run._trainer = killing
    with pytest.raises(Killed):
        run.run()
    resumed = train_fewshot(tiny(step), schedule, tmp_path / "killed", resume=True, progress=False)
    assert resumed["arch"] == whole["arch"] and resumed["leaf"] == whole["leaf"]
    assert [e["held_out_acc"] for e in resumed["leaves"]] == [e["held_out_acc"] for e in whole["leaves"]]
    tree = json.loads((tmp_path / "killed" / "tree.json").read_text())
    assert json.dumps(tree, sort_keys=True).count('"distances"') >= 3  # the evidence of every split is kept


def test_split_schedule_validation():
    for bad in ({"split_epochs": [3, 3]}, {"split_epochs": []}, {"epochs_after": 0}, {"method": "random"},
                {"batches": 0}, {"split_epochs": [2.5]}):
        with pytest.raises(ConfigError):
            SplitSchedule(**bad)


def test_cli_fewshot_and_pt_flags(tmp_path, capsys):
    common = ["--dataset", "digits", "--C", "4", "--N", "1", "--train-size", "300", "--no-progress"]
    assert main(["supernet", "train", "--gm-batches", "2", "--run-dir", str(tmp_path / "a")] + common) == 2
    assert "only with --fewshot" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    assert main(["supernet", "train", "--fewshot", "exhaustive", "--epochs", "2", "--select-archs", "3",
                 "--run-dir", str(tmp_path / "ex")] + common) == 0
    assert "5 sub-supernets" in capsys.readouterr().out
    assert main(["supernet", "train", "--fewshot", "exhaustive", "--epochs", "2", "--select-archs", "3", "--resume",
                 "--run-dir", str(tmp_path / "ex")] + common) == 0
    assert main(["supernet", "train", "--fewshot", "exhaustive", "--epochs", "2", "--select-archs", "4", "--resume",
                 "--run-dir", str(tmp_path / "ex")] + common) == 2
    assert "select_archs" in capsys.readouterr().err
    assert main(["supernet", "train", "--fewshot", "gm", "--epochs", "2", "--split-epochs", "1,2",
                 "--run-dir", str(tmp_path / "gm")] + common) == 2
    assert "leaves no epoch" in capsys.readouterr().err
    assert main(["supernet", "select", "--run-dir", str(tmp_path / "ex"), "--crit", "loss"]) == 2
    assert "--crit applies only to --method pt" in capsys.readouterr().err
