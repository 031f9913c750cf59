"""The one-shot example configs (examples/configs/supernet) resolve, and the sandwich one trains as written
(on a few images for one epoch)."""
import json
from pathlib import Path

import pytest

from nastk.cli import build_parser, main

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "examples" / "configs" / "supernet").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_each_supernet_config_resolves(path, tmp_path):
    from nastk.commands.supernet import train_config

    argv = ["supernet", "train", "--config", str(path), "--run-dir", str(tmp_path / "run")]
    if "ofa" in path.stem:
        argv += ["--stages", "ofa"]
    config = train_config(build_parser().parse_args(argv))
    assert config.space == "mobilenet" and config.held_out_fraction == 0.2
    assert not (tmp_path / "run").exists()


def test_sandwich_config_trains_as_written(nastk_data, tmp_path, capsys):
    path = next(p for p in CONFIGS if p.stem == "mobilenet_sandwich")
    assert main(["supernet", "train", "--config", str(path), "--epochs", "1", "--train-size", "320", "--valid-size", "40",
                 "--run-dir", str(tmp_path / "run"), "--no-progress", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["step_options"]["inplace_distillation"] is True and config["lr"] == 0.1 and config["nesterov"]
    assert out["final_test_acc"] is not None
