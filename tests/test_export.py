"""``nastk export``: the winner runs without nastk and keeps the accuracy the run reported."""
import json
import subprocess
import sys

import pytest
import torch

from nastk.cli import main
from nastk.datasets import load_digits
from nastk.standalone_training import accuracy

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("export") / "run"
    assert main(["search", "--budget", "3", "--epochs", "1", "--final-epochs", "3", "--C", "4",
                 "--run-dir", str(run), "--no-progress", "--format", "json"]) == 0
    return run


def test_torchscript_export_reproduces_the_reported_test_accuracy_without_nastk(trained_run, capsys, tmp_path):
    capsys.readouterr()
    out = tmp_path / "model.pt"
    assert main(["export", "--run-dir", str(trained_run), "--out", str(out), "--format", "json"]) == 0
    written = json.loads(capsys.readouterr().out)
    summary = json.loads((trained_run / "summary.json").read_text())
    assert written["arch"] == summary["best_arch"] and written["weights"].startswith("retrained")
    assert written["check_max_abs_difference"] < 1e-5
    data = load_digits()
    assert accuracy(torch.jit.load(str(out)), data.x_test, data.y_test) == pytest.approx(summary["test_accuracy"])
    script = ("import sys, torch; model = torch.jit.load(sys.argv[1]); y = model(torch.zeros(2, 3, 16, 16)); "
              "assert not [m for m in sys.modules if m.startswith('nastk')]; print(tuple(y.shape))")
    done = subprocess.run([sys.executable, "-I", "-c", script, str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "(2, 10)", done.stderr


def test_state_dict_export_rebuilds_the_same_network(trained_run, capsys, tmp_path):
    from nastk.space import get_space

    out = tmp_path / "winner.pt"
    assert main(["export", "--run-dir", str(trained_run), "--out", str(out), "--out-format", "state-dict"]) == 0
    held = torch.load(out, weights_only=True)
    model = get_space(held["space"]).build(get_space("nb201").from_str(held["arch"]), held["num_classes"], **held["build"])
    model.load_state_dict(held["state_dict"])
    summary = json.loads((trained_run / "summary.json").read_text())
    data = load_digits()
    assert accuracy(model, data.x_test, data.y_test) == pytest.approx(summary["test_accuracy"])


def test_a_benchmark_run_exports_an_initialised_network_and_says_so(nastk_data, capsys, tmp_path):
    run = tmp_path / "bench"
    assert main(["search", "--benchmark", "nb201", "--dataset", "cifar100", "--budget", "3", "--run-dir", str(run),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["export", "--run-dir", str(run), "--format", "json"]) == 0
    written = json.loads(capsys.readouterr().out)
    assert written["weights"].startswith("initialised") and written["num_classes"] == 100
    assert torch.jit.load(str(run / "model.pt"))(torch.zeros(1, 3, 32, 32)).shape == (1, 100)


@pytest.mark.parametrize("make, message", [
    (lambda d: None, "does not exist"),
    (lambda d: (d.mkdir(), (d / "config.json").write_text("{}")), "not a run folder"),
])
def test_bad_export_inputs_are_one_line(capsys, tmp_path, make, message):
    folder = tmp_path / "x"
    make(folder)
    assert main(["export", "--run-dir", str(folder)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (folder / "model.pt").exists()


@pytest.mark.parametrize("make, flags, message", [
    (lambda d: None, ["--arch", "s1_depth=1"], "does not exist"),
    (lambda d: (d.mkdir(), (d / "config.json").write_text("{}")), ["--arch", "s1_depth=1"], "holds no supernet checkpoint"),
    (lambda d: (d.mkdir(), torch.save({"epoch": 1}, d / "checkpoint.pt")), ["--arch", "s1_depth=1"],
     "not a nastk supernet checkpoint"),
    (lambda d: (d.mkdir(), (d / "checkpoint.pt").write_bytes(b"x")), [], "name the child to export with --arch"),
])
def test_bad_supernet_child_exports_are_one_line(capsys, tmp_path, make, flags, message):
    folder = tmp_path / "x"
    make(folder)
    listed = sorted(p.name for p in folder.iterdir()) if folder.exists() else None
    assert main(["export", "--run-dir", str(folder), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert (sorted(p.name for p in folder.iterdir()) if folder.exists() else None) == listed


def test_supernet_options_are_refused_for_a_run_that_trained_its_winner(trained_run, capsys, tmp_path):
    assert main(["export", "--run-dir", str(trained_run), "--out", str(tmp_path / "m.pt"), "--bn-calibration", "2"]) == 2
    err = capsys.readouterr().err
    assert "apply to supernet children" in err and err.count("\n") == 1 and not (tmp_path / "m.pt").exists()


def test_tampered_winner_weights_are_refused(trained_run, capsys, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    (copy / ".nastk.lock").unlink(missing_ok=True)
    (copy / "winner.pt").write_bytes(b"not a checkpoint")
    assert main(["export", "--run-dir", str(copy)]) == 2
    assert "cannot load the winner's weights" in capsys.readouterr().err


def test_a_network_that_does_not_trace_is_one_line_and_writes_nothing(tmp_path):
    from nastk.errors import CapabilityError
    from nastk.export import write_model

    class Doubled(torch.autograd.Function):  # a Python autograd Function: torch.jit cannot save it
        @staticmethod
        def forward(ctx, x):
            return 2 * x

        @staticmethod
        def backward(ctx, grad):
            return 2 * grad

    class Net(torch.nn.Module):
        def forward(self, x):
            return Doubled.apply(x)

    info = {"space": "nb201", "arch": "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "build": {},
            "num_classes": 10, "input_shape": [3, 4, 4]}
    with pytest.raises(CapabilityError, match="does not trace as TorchScript") as error:
        write_model(Net(), info, tmp_path / "m.pt")
    assert "\n" not in str(error.value) and not list(tmp_path.iterdir())
