"""Every registered training step (the library's and the toy GAN / self-supervised steps of the tests)
keeps its replicas identical under ``torchrun`` with 2 gloo processes, epoch after epoch."""
import json
import os
from pathlib import Path

import toy_steps  # noqa: F401 (registers the toy steps, so they count as registered)
from ddp_steps_driver import EXTRA_CASES
from nastk.oneshot.steps import STEPS
from torchrun import torchrun

HERE = Path(__file__).parent


def test_every_registered_step_keeps_replicas_identical_under_torchrun(tmp_path):
    steps = STEPS.names() + list(EXTRA_CASES)  # every step, and the step / space cases the driver adds
    assert {"single_path", "darts", "sandwich", "toy_adversarial", "toy_self_supervised", "quantnas-nb201"} <= set(steps)
    env = {"PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    done = torchrun(str(HERE / "ddp_steps_driver.py"), str(tmp_path), *steps, clean=None, env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    for step in steps:
        result = json.loads((tmp_path / f"{step}.json").read_text())
        assert result["world"] == 2
        assert result["spread"] == [0.0, 0.0], f"{step}: replicas drift apart under DDP ({result['spread']})"
        assert result["moved"] > 0, f"{step} did not train"
