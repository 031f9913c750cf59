"""Every kind of run is first-class: ``nastk runs`` lists, shows and compares it, ``nastk export``
exports it, and its optuna view holds exactly what its own store holds."""
import json
from pathlib import Path

import optuna
import pytest
import torch

from cli_run import run_cli
from nastk.cli import main
from nastk.optuna_view import add_run, view_storage
from nastk.run_views import find_runs, read_any, run_kind

NB201_OPS = {"none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"}
TINY = {"space": "nb201", "dataset": "digits", "epochs": 2, "train_size": 64, "batch_size": 32, "valid_size": 4,
        "supernet": {"C": 4, "N": 1}, "augment": False}


def train_tiny(run_dir, **options):
    from nastk.oneshot.trainer import OneShotConfig, train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(OneShotConfig.from_dict({**TINY, **options}), run_dir, progress=False)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def kinds(nastk_data, tmp_path_factory):
    """A sequential search and a DARTS supernet, each in its own folder under one root."""
    root = tmp_path_factory.mktemp("kinds")
    assert main(["search", "--benchmark", "nb201", "--dataset", "cifar10", "--strategy", "re", "--budget", "8",
                 "--seed", "0", "--run-dir", str(root / "re0"), "--no-progress", "--format", "json"]) == 0
    train_tiny(root / "darts", step="darts")
    return root


@pytest.fixture(scope="module")
def pada(kinds):
    """A PA&DA supernet beside them (slow tests only)."""
    train_tiny(kinds / "pada", step="single_path", sampler="pada")
    return kinds / "pada"


def cli_json(capsys, *argv):
    code, out, err = run_cli(capsys, [*argv, "--format", "json"])
    assert code == 0, err
    return json.loads(out)


def test_every_kind_is_listed_with_its_kind(kinds, capsys):
    rows = cli_json(capsys, "runs", "list", str(kinds))
    assert [(r["run"].rsplit("/", 1)[-1], r["kind"], r["strategy"]) for r in rows if "pada" not in r["run"]] == [
        ("darts", "supernet", "darts"), ("re0", "search", "re")]
    darts = rows[0]
    assert darts["evaluations"] == darts["budget"] == 2 and darts["status"] == "finished"
    summary = json.loads((kinds / "darts" / "summary.json").read_text())
    assert darts["best_arch"] == summary["arch"] and darts["test_accuracy"] == summary["final_test_acc"]


def test_show_a_supernet_run_names_its_ops(kinds, capsys):
    shown = cli_json(capsys, "runs", "show", "--run-dir", str(kinds / "darts"))
    metrics = [json.loads(line) for line in (kinds / "darts" / "metrics.jsonl").read_text().splitlines()]
    assert shown["epochs"] == metrics and shown["kind"] == "supernet"
    assert len(shown["alphas"]) == 6  # one row per NB201 edge, every op named, a distribution
    for row in shown["alphas"]:
        assert set(row["weights"]) == NB201_OPS and sum(row["weights"].values()) == pytest.approx(1, abs=1e-4)
        assert row["weights"][row["strongest"]] == max(row["weights"].values())
    assert shown["selected_arch"] == metrics[-1]["arch"]


@pytest.mark.slow
def test_show_a_pada_run_names_its_op_probabilities(pada, capsys):
    shown = cli_json(capsys, "runs", "show", "--run-dir", str(pada))
    probs = shown["sampler_state"]["op_probs"]  # PA&DA's op probabilities by op name
    assert set(probs) == NB201_OPS and list(probs.values()) == metrics_of(pada)[-1]["op_probs"]
    assert shown["alphas"] is None and shown["selected_arch"] is None and shown["strategy"] == "single_path/pada"


def metrics_of(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_show_takes_run_dir_and_the_old_positional_spelling_with_a_warning(kinds, capsys):
    code, out, err = run_cli(capsys, "runs", "show", str(kinds / "re0"), "--format", "json")
    assert code == 0 and err.count("\n") == 1 and "deprecated" in err and "--run-dir" in err
    assert json.loads(out) == cli_json(capsys, "runs", "show", "--run-dir", str(kinds / "re0"))
    code, _, err = run_cli(capsys, "runs", "show")
    assert code == 2 and "--run-dir" in err and err.count("\n") == 1


def test_select_json_names_every_weight(kinds, capsys):
    out = cli_json(capsys, "supernet", "select", "--run-dir", str(kinds / "darts"))
    assert [list(row["weights"].values()) for row in out["named_weights"]] == out["weights"]
    assert all(set(row["weights"]) == NB201_OPS for row in out["named_weights"])


@pytest.mark.slow
def test_export_a_supernet_run_exports_its_selected_child(kinds, pada, capsys, tmp_path):
    darts = read_any(kinds / "darts")
    written = cli_json(capsys, "export", "--run-dir", str(kinds / "darts"), "--out", str(tmp_path / "d.pt"))
    assert written["arch"] == darts.selected_arch and "inherited from the supernet" in written["weights"]
    assert written["check_max_abs_difference"] < 1e-5 and torch.jit.load(str(tmp_path / "d.pt")) is not None
    code, _, err = run_cli(capsys, "export", "--run-dir", str(pada), "--out", str(tmp_path / "p.pt"))
    assert code == 2 and "name the child to export with --arch" in err and not (tmp_path / "p.pt").exists()


def test_export_top_k_is_refused_where_one_architecture_was_selected(kinds, capsys, tmp_path):
    code, _, err = run_cli(capsys, "export", "--run-dir", str(kinds / "darts"), "--top", "2", "--out", str(tmp_path))
    assert code == 2 and "selected one architecture" in err


def test_export_top_k_of_a_search_best_first(kinds, capsys, tmp_path):
    written = cli_json(capsys, "export", "--run-dir", str(kinds / "re0"), "--top", "2", "--out", str(tmp_path / "top"),
                       "--out-format", "state-dict")
    run = read_any(kinds / "re0")
    assert [w["arch"] for w in written] == [t.arch for t in run.top(2)] and written[0]["arch"] == run.best_arch
    assert [w["objective"] for w in written] == sorted((w["objective"] for w in written), reverse=True)
    assert len({w["file"] for w in written}) == 2 and all(torch.load(w["file"], weights_only=True)["state_dict"]
                                                          for w in written)


def test_the_old_export_format_spelling_still_works_with_one_warning(kinds, capsys, tmp_path):
    code, out, err = run_cli(capsys, "export", "--run-dir", str(kinds / "re0"), "--out", str(tmp_path / "m.pt"),
                             "--format", "state-dict")
    assert code == 0 and err.count("\n") == 1 and "--out-format state-dict" in err and "as state-dict" in out
    code, _, err = run_cli(capsys, "export", "--run-dir", str(kinds / "re0"), "--out", str(tmp_path / "n.pt"),
                           "--format", "state-dict", "--out-format", "torchscript")
    assert code == 2 and "disagree" in err and not (tmp_path / "n.pt").exists()


def test_optuna_view_of_a_sequential_run_holds_every_trial_with_its_values(kinds):
    run = read_any(kinds / "re0")
    study = add_run(run, optuna.storages.InMemoryStorage())
    trials = study.get_trials()
    assert len(trials) == len(run.trials) == 8
    assert [t.values for t in trials] == [[trial.result.value] for trial in run.trials]
    assert [t.user_attrs["arch"] for t in trials] == [trial.arch for trial in run.trials]
    assert study.best_trial.user_attrs["arch"] == run.best_arch
    space_choices = {"1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2"}  # NB201's six edges, each an op name
    assert all(set(t.params) == space_choices and set(t.params.values()) <= NB201_OPS for t in trials)


def test_a_run_study_file_opens_with_optuna(kinds, capsys, tmp_path):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    out = cli_json(capsys, "runs", "study", "--run-dir", str(kinds / "darts"), "--out", str(tmp_path / "view.log"))
    study = optuna.load_study(study_name=out["study"],
                              storage=JournalStorage(JournalFileBackend(str(tmp_path / "view.log"))))
    metrics = metrics_of(kinds / "darts")
    assert [t.values for t in study.trials] == [[m["train_acc"]] for m in metrics]
    assert [t.user_attrs["train_loss"] for t in study.trials] == [m["train_loss"] for m in metrics]
    assert study.metric_names == ["train_acc"] and study.trials[0].params == {"epoch": 1}
    code, _, err = run_cli(capsys, "runs", "study", "--run-dir", str(kinds / "darts"), "--out", str(tmp_path / "view.log"))
    assert code == 2 and "exists" in err


def test_a_folder_of_every_kind_becomes_one_storage(kinds):
    storage, names, problems = view_storage(kinds)
    assert [n for n in names if "pada" not in n] == ["supernet: darts", "search: re0"] and problems == []
    counts = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    assert counts["supernet: darts"] == 2 and counts["search: re0"] == 8


def test_a_folder_that_is_no_run_is_one_line(kinds, capsys, tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"something": 1}')
    assert run_kind(tmp_path / "other") is None and find_runs(tmp_path) == ([], [])
    code, _, err = run_cli(capsys, "runs", "show", "--run-dir", str(tmp_path / "other"))
    assert code == 2 and "not a run folder" in err and err.count("\n") == 1
    code, _, err = run_cli(capsys, "runs", "compare", str(tmp_path))
    assert code == 2 and "no run (" in err


@pytest.mark.slow
def test_a_parallel_run_is_read_from_its_optuna_study(nastk_data, capsys, tmp_path):
    from nastk.parallel import study_name
    from nastk.run_views import load_study_journal

    run_dir = tmp_path / "tpe"
    assert main(["search", "--space", "nb201", "--strategy", "bo-tpe", "--benchmark", "nb201", "--dataset", "cifar10",
                 "--budget", "6", "--seed", "0", "--workers", "2", "--run-dir", str(run_dir), "--no-progress",
                 "--format", "json"]) == 0
    capsys.readouterr()
    shown = cli_json(capsys, "runs", "show", "--run-dir", str(run_dir))
    study = load_study_journal(run_dir, json.loads((run_dir / "config.json").read_text()))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert shown["kind"] == "parallel search" and shown["source"] == "optuna journal"
    assert len(shown["trajectory"]) == len(complete) == 6
    assert sorted(r["objective"] for r in shown["trajectory"]) == sorted(t.values[0] for t in complete)
    view = add_run(read_any(run_dir), optuna.storages.InMemoryStorage())
    assert study.study_name == study_name(json.loads((run_dir / "config.json").read_text()))
    assert [t.values for t in view.trials if t.state.is_finished()] == [t.values for t in study.trials
                                                                          if t.state.is_finished()]


def test_tensorboard_event_files_only_when_tensorboard_is_installed(kinds, tmp_path):
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ModuleNotFoundError:  # the optional extra is absent: nothing beside metrics.jsonl
        assert not (kinds / "darts" / "tensorboard").exists()
        pytest.skip("tensorboard is not installed (optional): the event files are not written, as checked")
    train_tiny(tmp_path / "run", step="single_path", sampler="pada")
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    metrics = metrics_of(tmp_path / "run")
    assert [(e.step, e.value) for e in events.Scalars("train_loss")] == [
        (m["epoch"] + 1, pytest.approx(m["train_loss"], rel=1e-6)) for m in metrics]
    assert [e.value for e in events.Scalars("op_probs/2")] == pytest.approx([m["op_probs"][2] for m in metrics])


@pytest.mark.slow
def test_staged_few_shot_and_darts_pt_folders_are_listed_shown_and_exported(kinds, capsys, tmp_path):
    from nastk.oneshot.perturbation import select_pt

    root = tmp_path / "more"
    stages = [{"name": "first", "epochs": 1}, {"name": "second", "epochs": 1, "overrides": {"lr": 0.01}}]
    train_tiny(root / "staged", step="darts", stages=stages)
    code, _, err = run_cli(capsys, "supernet", "train", "--fewshot", "exhaustive", "--splits", "1", "--epochs", "2",
                           "--dataset", "digits", "--C", "4", "--N", "1", "--train-size", "64", "--batch-size", "32",
                           "--select-archs", "2", "--no-progress", "--run-dir", str(root / "fewshot"))
    assert code == 0, err
    select_pt(kinds / "darts", root / "pt", interval=1, progress=False)
    rows = {Path(r["run"]).name: r for r in cli_json(capsys, "runs", "list", str(root))}
    assert {name: r["kind"] for name, r in rows.items()} == {"staged": "staged supernet", "fewshot": "few-shot",
                                                             "pt": "darts-pt"}
    staged = cli_json(capsys, "runs", "show", "--run-dir", str(root / "staged"))
    assert [e["stage"] for e in staged["epochs"]] == ["first", "second"] and staged["budget"] == 2
    fewshot = cli_json(capsys, "runs", "show", "--run-dir", str(root / "fewshot"))
    selection = json.loads((root / "fewshot" / "selection.json").read_text())
    assert fewshot["selected_arch"] == selection["arch"] and {e["node"] for e in fewshot["epochs"]} >= {"root"}
    pt = json.loads((root / "pt" / "selection.json").read_text())
    assert rows["pt"]["best_arch"] == pt["arch"] and rows["pt"]["status"] == "finished"
    for name, expected in (("fewshot", selection["arch"]), ("pt", pt["arch"]), ("staged", None)):
        written = cli_json(capsys, "export", "--run-dir", str(root / name), "--out", str(tmp_path / f"{name}.pt"))
        assert written["arch"] == (expected or read_any(root / name).selected_arch)
        assert "inherited from the supernet" in written["weights"] and written["selected"]
    top = cli_json(capsys, "export", "--run-dir", str(root / "fewshot"), "--top", "2", "--out", str(tmp_path / "top"))
    assert [t["arch"] for t in top] == [e["arch"] for e in sorted(selection["leaves"],
                                                                  key=lambda e: -e["held_out_acc"])][:2]
