"""Stage schedules: masks and frozen weights per stage, weights handed from stage to stage, exact resume
inside and between stages, OFA's progressive-shrinking preset, bad schedules as one line."""
import json

import numpy as np
import pytest
import torch

from nastk.cli import main
from nastk.errors import ConfigError
from nastk.oneshot.stages import progressive_shrinking, restrict, stages_from
from nastk.oneshot.trainer import OneShotConfig, train
from nastk.space import get_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(space="mobilenet", dataset="digits", train_size=64, batch_size=32, valid_size=0, augment=False,
            supernet={"bn_momentum": 0.0})
STAGES = [{"name": "big", "epochs": 2, "allowed": {"*_kernel": ["5"], "*_depth": ["3"], "*_expand": ["6"]}},
          {"name": "kernels", "epochs": 2, "overrides": {"lr": 0.01}, "allowed": {"*_depth": ["3"], "*_expand": ["6"]},
           "trainable": ["layers.1.*"]}]


def config(**options):
    return OneShotConfig.for_step("sandwich", **{**TINY, "step_options": {"random_children": 1, "include_extremes": False,
                                                                          "inplace_distillation": False},
                                                 "stages": STAGES, **options})


def test_stages_restrict_options_freeze_weights_and_hand_weights_on(tmp_path):
    summary = train(config(), tmp_path / "run", progress=False)
    assert [s["stage"] for s in summary["stages"]] == ["big", "kernels"]
    first = torch.load(tmp_path / "run" / "stage0-big" / "checkpoint.pt", weights_only=True)
    second = torch.load(tmp_path / "run" / "stage1-kernels" / "checkpoint.pt", weights_only=True)
    # stage 0 ran the largest child only: kernel 5 (option 1), depth 3, expand 6 on every decision
    counts = np.array(first["history"][-1]["op_counts"])
    assert counts[0] == 0 and counts[1] > 0
    assert second["config"]["lr"] == 0.01 and second["config"]["stages"] == []
    moved = [k for k in first["model"] if not torch.equal(first["model"][k], second["model"][k]) and "running" not in k
             and "num_batches" not in k]
    assert moved and all(k.startswith("layers.1.") for k in moved)  # only the trainable block moved
    run = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(run["model"][k], second["model"][k]) for k in run["model"])
    assert np.array(run["allowed"]).sum() > np.array(second["allowed"]).sum()  # the run's own mask: everything


def test_staged_run_resumes_exactly_inside_and_between_stages(tmp_path):
    straight = train(config(), tmp_path / "straight", progress=False)

    class Stop(Exception):
        pass

    def stop_at(epoch):
        def callback(trainer, record):
            if record["epoch"] == epoch and trainer.run_dir.name.startswith("stage1"):
                raise Stop
        return callback

    with pytest.raises(Stop):
        train(config(), tmp_path / "killed", progress=False, callbacks=[stop_at(0)])
    resumed = train(config(), tmp_path / "killed", resume=True, progress=False)
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["final_train_loss"] == straight["final_train_loss"]


def test_progressive_shrinking_preset_opens_one_dimension_per_phase():
    space = get_space("mobilenet")
    stages = stages_from(progressive_shrinking(space, 6))
    assert [s.name for s in stages] == ["full", "kernel", "depth1", "depth2", "expand1", "expand2"]
    assert [s.epochs for s in stages] == [6, 6, 1, 6, 1, 6]
    supernet = space.supernet(10)
    allowed = [restrict(supernet, s.allowed).sum() for s in stages]
    assert allowed == sorted(allowed) and allowed[0] == len(supernet.decisions)  # the full network: one option each
    assert stages[4].sort_channels == [] and stages[5].sort_channels == [4.0, 6.0]
    assert all(s.overrides["step_options"]["teacher"] == "stage:full" for s in stages[1:])


@pytest.mark.parametrize("stages, message", [
    ([{"name": "a", "epochs": 0}], "epochs must be a whole number >= 1"),
    ([{"name": "a", "epochs": 1, "allowed": {"*_width": ["3"]}}], "matches no decision"),
    ([{"name": "a", "epochs": 1, "allowed": {"*_kernel": ["9"]}}], "none of \\['9'\\] is an option"),
    ([{"name": "a", "epochs": 1, "colour": 1}], "unknown key"),
    ([{"name": "a", "epochs": 1}, {"name": "a", "epochs": 1}], "unique"),
    ([{"name": "a", "epochs": 1, "overrides": {"step": "ofa", "step_options": {"teacher": "stage:a"}}}], "earlier stage"),
])
def test_bad_schedules_are_one_line_and_write_nothing(tmp_path, stages, message):
    with pytest.raises(ConfigError, match=message):
        train(config(stages=stages), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_cli_ofa_schedule_from_a_config_file(tmp_path, capsys):
    path = tmp_path / "ofa.yaml"
    path.write_text("space: mobilenet\ndataset: digits\ntrain_size: 64\nbatch_size: 32\nvalid_size: 0\n"
                    "supernet: {bn_momentum: 0.0}\n")
    argv = ["supernet", "train", "--config", str(path), "--stages", "ofa", "--epochs", "1", "--no-progress",
            "--run-dir", str(tmp_path / "run"), "--format", "json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert [s["stage"] for s in out["stages"]] == ["full", "kernel", "depth1", "depth2", "expand1", "expand2"]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert len(saved["stages"]) == 6 and saved["stages"][1]["overrides"]["step"] == "ofa"
    assert main(argv[:-4] + ["--run-dir", str(tmp_path / "run"), "--resume", "--format", "json"]) == 0  # nothing left


def test_a_run_from_before_the_kits_fields_resumes(tmp_path):
    run = tmp_path / "old"
    options = dict(config().to_dict(), stages=[], epochs=2)
    train(OneShotConfig.from_dict({**options, "epochs": 1}), run, progress=False)
    saved = json.loads((run / "config.json").read_text())
    for field in ("stages", "bn_recalibration"):  # fields added by the one-shot kit
        saved.pop(field)
    saved["epochs"] = 1
    (run / "config.json").write_text(json.dumps(saved))
    summary = train(OneShotConfig.from_dict({**options, "epochs": 1}), run, resume=True, progress=False)
    assert summary["resumed_from_epoch"] == 1
    assert json.loads((run / "config.json").read_text())["stages"] == []  # rewritten in today's form
