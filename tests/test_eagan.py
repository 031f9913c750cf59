"""EAGAN (nastk.generative.eagan): selection, stage-2 G copies, collapse detection, exact resume, DDP."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from nastk.errors import ConfigError
from nastk.generative.eagan import EaganConfig, EaganSearch, collapse_report, pareto_front, select_survivors

HERE = Path(__file__).parent
#: two objectives (lower is better): A, B, C are the front, D is dominated by B, E is worst in both
LOSSES = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0], [0.6, 0.6], [2.0, 2.0]])


def test_nsga2_keeps_the_front_and_eagan_also_keeps_the_reversed_sortings_front():
    assert pareto_front(LOSSES) == [0, 1, 2]
    assert sorted(select_survivors(LOSSES, 3, "nsga2", (0,))) == [0, 1, 2]
    # NSGA-II truncates a front by crowding distance: the two extremes survive a cut to 2
    assert sorted(select_survivors(LOSSES, 2, "nsga2", (0,))) == [0, 2]
    # EAGAN's sorting on (quality, reversed second objective) puts E in its first merged front, so a cut
    # to 3 samples 3 of {A, B, C, E}: over seeds E survives sometimes, D never
    picks = [set(select_survivors(LOSSES, 3, "eagan", (seed,))) for seed in range(30)]
    assert all(len(p) == 3 and p <= {0, 1, 2, 4} for p in picks)
    assert any(4 in p for p in picks)
    assert select_survivors(LOSSES, 3, "eagan", (5,)) == select_survivors(LOSSES, 3, "eagan", (5,))  # seeded
    with pytest.raises(ConfigError, match="unknown selection"):
        select_survivors(LOSSES, 3, "crowding", (0,))


def test_bad_options_are_one_line_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="selection"):
        EaganConfig(selection="pareto")
    with pytest.raises(ConfigError, match="num_selected"):
        EaganConfig(population=4, num_selected=5)
    with pytest.raises(ConfigError, match="unknown EAGAN option"):
        EaganConfig.from_dict({"populaton": 4})
    with pytest.raises(ConfigError, match="dataset"):
        EaganConfig(dataset="mnist")
    assert not list(tmp_path.iterdir())


def test_collapse_is_reported_from_the_is_floor_or_a_fid_jump():
    healthy = [{"fid": 80.0, "is": 5.0}, {"fid": 40.0, "is": 6.0}]
    assert collapse_report(healthy) == {"collapsed": False, "reason": ""}
    assert collapse_report(healthy + [{"fid": 45.0, "is": 1.3}])["collapsed"]
    jumped = collapse_report(healthy + [{"fid": 300.0, "is": 4.0}])
    assert jumped["collapsed"] and "jumped" in jumped["reason"]


def _stage2_trainer(alias: bool):
    from nastk.generative.features import gan_images
    from nastk.oneshot.trainer import OneShotConfig, OneShotTrainer
    from nastk.registry import get_space

    g = get_space("gan-g-digits").sample(np.random.default_rng(0))
    config = OneShotConfig(space="gan-d-digits", dataset="digits", step="adversarial", supernet={"width": 4},
                           step_options={"search": "discriminator", "generator_arch": get_space("gan-g-digits").to_str(g),
                                         "n_critic": 1, "slots": 2, "alias_generator_copies": alias, "other_width": 4,
                                         "other_latent_per_cell": 2},
                           epochs=1, train_size=32, batch_size=8, valid_size=0, augment=False)
    trainer = OneShotTrainer(config, None, data=gan_images("digits").as_dataset(), progress=False, metrics={})
    d_space = get_space("gan-d-digits")
    rng = np.random.default_rng(1)
    trainer.step.set_population([trainer.supernet.path_of_arch(d_space.sample(rng)) for _ in range(2)])
    return trainer


def test_stage2_generator_copies_are_real_copies_unless_aliasing_is_asked_for(one_torch_thread):
    trainer = _stage2_trainer(alias=False)
    step = trainer.step
    initial = [{k: v.clone() for k, v in c.items()} for c in step.copies]
    trainer.fit()
    live = step.g_module.state_dict()
    changed = [not all(torch.equal(c[k], i[k]) for k in c) for c, i in zip(step.copies, initial)]
    assert changed == [True, True]  # both slots trained their own copy
    first = next(iter(live))
    assert not torch.equal(step.copies[0][first], step.copies[1][first])  # ...and they differ
    assert all(c[first].data_ptr() != live[first].data_ptr() for c in step.copies)  # no aliasing
    step.reset_copies()  # weight resetting: every copy becomes the live G, as separate tensors
    assert torch.equal(step.copies[0][first], step.copies[1][first])
    assert step.copies[0][first].data_ptr() != step.copies[1][first].data_ptr()

    aliased = _stage2_trainer(alias=True)
    aliased.fit()
    live = aliased.step.g_module.state_dict()
    # the released code: a saved copy is the live state_dict, so every visited slot is one shared G
    assert all(c[first].data_ptr() == live[first].data_ptr() for c in aliased.step.copies)
    assert torch.equal(aliased.step.copies[0][first], aliased.step.copies[1][first])


def _tiny_metrics():
    from nastk.generative.features import FeatureCNN, FeatureExtractor, gan_images
    from nastk.generative.metrics import GenerativeMetrics

    torch.manual_seed(0)
    extractor = FeatureExtractor("tiny", FeatureCNN(1, 8, width=4, features=8), "tiny-untrained")
    return GenerativeMetrics(extractor, gan_images("digits").x_train[:200], "tiny-test", cache=Path("/nonexistent/nastk"))


TINY = dict(population=3, num_selected=2, batch_size=16, stage1_epochs=3, stage1_warmup=1, stage2_epochs=3,
            stage2_warmup=1, ga_interval=1, eval_samples=30, final_d_steps=8, final_eval_every=1, g_width=4, d_width=4,
            latent_per_cell=2, train_size=32)


class Killed(Exception):
    pass


@pytest.mark.slow
def test_a_killed_search_resumes_exactly(tmp_path, one_torch_thread):
    metrics = _tiny_metrics()
    whole = EaganSearch(EaganConfig(**TINY), tmp_path / "whole", metrics=metrics).search()

    def kill(stage, epoch):
        if stage == "stage2" and epoch == 2:
            raise Killed()

    with pytest.raises(Killed):
        EaganSearch(EaganConfig(**TINY), tmp_path / "killed", metrics=metrics, stop_after_epoch=kill).search()
    assert not (tmp_path / "killed" / "summary.json").exists()
    resumed = EaganSearch(EaganConfig(**TINY), tmp_path / "killed", resume=True, metrics=metrics).search()
    for key in ("generator", "discriminator", "final"):
        drop = lambda d: {k: v for k, v in d.items() if k != "train_wall_s"} if isinstance(d, dict) else d  # noqa: E731
        assert drop(resumed[key]) == drop(whole[key])
    for name in ("stage1.json", "stage2.json"):
        assert json.loads((tmp_path / "killed" / name).read_text()) == json.loads((tmp_path / "whole" / name).read_text())
    a = torch.load(tmp_path / "whole" / "final" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "killed" / "final" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(Exception, match="already holds a run"):
        EaganSearch(EaganConfig(**TINY), tmp_path / "whole", metrics=metrics)


DDP_STAGE2 = '''
import json, sys
import numpy as np, torch
from nastk.generative.features import gan_images
from nastk.oneshot.ddp import Distributed
from nastk.oneshot.trainer import OneShotConfig, OneShotTrainer
from nastk.registry import get_space
g = get_space("gan-g-digits").to_str(get_space("gan-g-digits").sample(np.random.default_rng(0)))
config = OneShotConfig(space="gan-d-digits", dataset="digits", step="adversarial", supernet={"width": 4}, epochs=2,
                       step_options={"search": "discriminator", "generator_arch": g, "n_critic": 2, "slots": 2,
                                     "other_width": 4, "other_latent_per_cell": 2},
                       train_size=64, batch_size=16, valid_size=0, augment=False)
torch.manual_seed(0)
trainer = OneShotTrainer(config, None, dist=Distributed.from_env(), data=gan_images("digits").as_dataset(),
                         progress=False, metrics={})
space = get_space("gan-d-digits")
rng = np.random.default_rng(1)
trainer.step.set_population([trainer.supernet.path_of_arch(space.sample(rng)) for _ in range(2)])
trainer.fit()
g_sum = sum(float(p.double().sum()) for p in trainer.step.g_module.parameters())
copies = [sum(float(t.double().sum()) for t in c.values()) for c in trainer.step.copies]
sums = trainer.dist.gather([g_sum] + copies)
if trainer.dist.is_main:
    open(sys.argv[1], "w").write(json.dumps({"spread": [r["replica_spread"] for r in trainer.history], "g": sums}))
'''


@pytest.mark.slow
def test_stage2_discriminator_search_keeps_replicas_and_copies_identical_under_torchrun(tmp_path):
    from torchrun import torchrun

    script = tmp_path / "stage2_driver.py"
    script.write_text(DDP_STAGE2)
    done = torchrun(str(script), str(tmp_path / "out.json"), env={"PYTHONPATH": os.pathsep.join(
        [str(HERE.parent), str(HERE), os.environ.get("PYTHONPATH", "")])})
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["spread"] == [0.0, 0.0]
    assert result["g"][0] == result["g"][1]  # G and every slot's copy agree across ranks


def test_the_gan_command_refuses_bad_options_in_one_line_and_writes_nothing(tmp_path, capsys):
    from nastk.cli import main as cli_main

    def main(argv):
        try:
            return cli_main(argv)
        except SystemExit as exit_:  # argparse's own refusals
            return exit_.code

    run = tmp_path / "run"
    assert main(["gan", "search", "--run-dir", str(run), "--selection", "crowd"]) == 2
    assert main(["gan", "search", "--run-dir", str(run), "--population", "2", "--num-selected", "3"]) == 2
    assert main(["gan", "search", "--run-dir", str(run), "--ga-interval", "0"]) == 2
    assert main(["gan", "plot", str(tmp_path)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("nastk: error")]
    assert len(errors) == 4 and "num_selected (3) cannot exceed population (2)" in errors[1]
    assert not run.exists()


@pytest.mark.slow
def test_nastk_gan_search_killed_with_sigkill_resumes_to_the_same_result(tmp_path):
    """A real kill (SIGKILL while stage 2 trains), then ``--resume``: the same journals and final weights as an
    uninterrupted run of the command."""
    import signal
    import subprocess
    import sys
    import time

    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()] + ["--stage2-epochs=4", "--eval-samples=40"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NASTK_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "nastk", "gan", "search", *flags, "--format", "json"]
    whole = subprocess.run(command + ["--run-dir", str(tmp_path / "whole")], env=env, capture_output=True, text=True,
                           timeout=900)
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = subprocess.Popen(command + ["--run-dir", str(tmp_path / "killed")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = tmp_path / "killed" / "stage2" / "metrics.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline and killed.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    assert killed.poll() is None, "the run finished before it could be killed"
    killed.send_signal(signal.SIGKILL)
    killed.communicate()  # waits and closes its pipes
    assert not (tmp_path / "killed" / "summary.json").exists()
    resumed = subprocess.run(command + ["--run-dir", str(tmp_path / "killed"), "--resume"], env=env,
                             capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for name in ("stage1.json", "stage2.json", "final.json"):
        a = json.loads((tmp_path / "whole" / name).read_text())
        b = json.loads((tmp_path / "killed" / name).read_text())
        a.pop("train_wall_s", None), b.pop("train_wall_s", None)
        assert a == b, name
    a = torch.load(tmp_path / "whole" / "final" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "killed" / "final" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
