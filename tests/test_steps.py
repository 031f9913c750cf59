"""Training steps on the one loop: bilevel DARTS (1st / 2nd order, Max-W, fixed alpha, warm-up),
learning-rate schedules, the select command, and two toy steps that show later methods fit the
interface and resume exactly (sandwich rule with in-place distillation; a two-optimizer GAN step)."""
import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from nastk.cli import main
from nastk.datasets import ImageDataset
from nastk.errors import ConfigError
from nastk.oneshot.steps import Batch, cosine_power, weight_optimizer
from nastk.oneshot.trainer import OneShotConfig, OneShotTrainer, load_trained, train
from nastk.space import get_space
from nastk.supernet import Supernet, max_w
from toy_steps import ToySupernet, toy_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(space="nb201", dataset="digits", supernet={"C": 4, "N": 1}, epochs=3, train_size=128, batch_size=32,
            valid_size=32, eval_batch_size=32, augment=False, lr=0.025, lr_min=0.001)


def darts_trainer(**options):
    config = OneShotConfig(**{**TINY, "step": "darts", **options})
    return OneShotTrainer(config, progress=False)


# --- DARTS -------------------------------------------------------------------------------------------
def test_darts_holds_out_half_and_first_order_alpha_gradient_is_the_validation_gradient():
    trainer = darts_trainer()
    assert len(trainer.x) == len(trainer.x_held) == 64
    assert [p for p in trainer.step.optimizer.param_groups[0]["params"]] == trainer.supernet.weights()
    alpha = trainer.supernet.arch_logits
    assert all(p is not alpha for p in trainer.supernet.weights())
    held = torch.arange(16)
    x, y = trainer.examples(held, held_out=True)
    trainer.supernet.set_mixture(trainer.supernet.mixture_weights())
    (expected,) = torch.autograd.grad(F.cross_entropy(trainer.supernet(x), y), [alpha])
    before = alpha.detach().clone()
    captured = {}
    original = trainer.step.arch_optimizer.step
    trainer.step.arch_optimizer.step = lambda: (captured.setdefault("grad", alpha.grad.clone()), original())
    trainer.step.step(Batch(torch.arange(32), held_out=held))
    assert torch.allclose(captured["grad"], expected, atol=1e-7)
    assert not torch.equal(alpha.detach(), before) and alpha.grad is None


class SmoothSupernet(Supernet):
    """Two edges of smooth candidate ops on vectors, so finite differences converge (ReLU networks
    have kinks that make DARTS' finite-difference Hessian term noisy at any step size)."""

    def __init__(self, width=48, classes=10):
        from nastk.supernet import CandidateOps, Decision

        super().__init__(None, [Decision(f"e{i}", ("tanh", "sigmoid", "skip", "none")) for i in range(2)])
        torch.manual_seed(0)
        make = lambda d: CandidateOps(d, [nn.Sequential(nn.Linear(width, width), nn.Tanh()),  # noqa: E731
                                           nn.Sequential(nn.Linear(width, width), nn.Sigmoid()), nn.Identity(),
                                           ZeroOp()])
        self.edges = nn.ModuleList([make(0), make(1)])
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        h = x.flatten(1)
        for edge in self.edges:
            h = edge(h)
        return self.head(h)


class ZeroOp(nn.Module):
    def forward(self, x):
        return x * 0


def test_second_order_gradient_matches_the_exact_unrolled_gradient():
    """DARTS' finite-difference Hessian-vector product against autograd through the unrolled step, in
    float64, with a momentum buffer and weight decay in the unrolled step."""
    config = OneShotConfig(step="darts", step_options={"order": 2}, epochs=2, batch_size=32, augment=False,
                           valid_size=0, lr=0.1, weight_decay=1e-2, momentum=0.9)
    data = toy_data()
    data = ImageDataset("toy", data.x_train.double(), data.y_train, data.x_test.double(), data.y_test, 10)
    trainer = OneShotTrainer(config, data=data, progress=False, supernet=SmoothSupernet().double())
    step = trainer.step
    trainer.supernet.arch_logits.data = trainer.supernet.arch_logits.data.double()
    with torch.no_grad():
        trainer.supernet.arch_logits.normal_(0, 0.5)
    step.step(Batch(torch.arange(32), held_out=torch.arange(16)))  # fills SGD's momentum buffers
    supernet, alpha = trainer.supernet, trainer.supernet.arch_logits
    train_batch, held_batch = trainer.examples(torch.arange(32, 48)), trainer.examples(torch.arange(16, 32), held_out=True)
    got = step._unrolled_alpha_gradient(train_batch, held_batch)

    weights = supernet.weights()
    group = step.optimizer.param_groups[0]
    xi, decay, momentum = group["lr"], group["weight_decay"], group["momentum"]
    names = [name for name, p in supernet.named_parameters() if p is not alpha]

    def loss_at(params, batch, arch):
        supernet.set_mixture(supernet.masked_softmax(arch))
        return F.cross_entropy(torch.func.functional_call(supernet, dict(zip(names, params)), (batch[0],)), batch[1])

    arch = alpha.detach().clone().requires_grad_(True)
    grads = torch.autograd.grad(loss_at(weights, train_batch, arch), weights, create_graph=True, allow_unused=True)
    unrolled = [w - xi * ((g if g is not None else 0) + decay * w + momentum * step.optimizer.state[w]["momentum_buffer"])
                for w, g in zip(weights, grads)]
    (exact,) = torch.autograd.grad(loss_at(unrolled, held_batch, arch), [arch])
    (first,) = torch.autograd.grad(loss_at([w.detach() for w in unrolled], held_batch, arch), [arch])
    assert float((got - exact).norm() / exact.norm()) < 1e-4
    assert float((first - exact).norm() / exact.norm()) > 1e-2  # the second-order term is really there
    assert all(torch.equal(w, p) for w, p in zip(weights, supernet.weights()))  # weights restored


def test_fix_alpha_and_warmup_keep_alpha_and_max_w_weights():
    fixed = darts_trainer(epochs=1, step_options={"fix_alpha": True})
    before = fixed.supernet.arch_logits.detach().clone()
    fixed.fit()
    assert torch.equal(fixed.supernet.arch_logits.detach(), before)
    warm = darts_trainer(epochs=2, step_options={"arch_warmup_epochs": 1, "weighting": "max_w"})
    before = warm.supernet.arch_logits.detach().clone()
    warm.train_epoch(0)
    assert torch.equal(warm.supernet.arch_logits.detach(), before)
    warm.train_epoch(1)
    assert not torch.equal(warm.supernet.arch_logits.detach(), before)
    w = torch.tensor([[0.5, 0.3, 0.2, 0.0]])
    assert torch.allclose(max_w(w), torch.tensor([[1.0, 0.8, 0.7, 0.0]]))


def test_darts_step_rejects_bad_options_and_path_samplers():
    for options, message in [({"order": 3}, "option order in the options of step darts must be a whole number >= 1 and <= 2"),
                             ({"weighting": "hard"}, "option weighting .* must be one of softmax, max_w"),
                             ({"arch_lr": 0}, "option arch_lr .* must be a finite number > 0"),
                             ({"fix_alpha": "yes"}, "option fix_alpha .* must be true or false"),
                             ({"momentum_x": 1}, "'darts' has no option.*momentum_x; its options: arch_lr")]:
        with pytest.raises(ConfigError, match=message):
            darts_trainer(step_options=options)
    with pytest.raises(ConfigError, match="draws no paths"):
        darts_trainer(sampler="pada")
    with pytest.raises(Exception, match="unknown training step"):
        OneShotConfig(step="gdas")


def test_darts_resume_is_exact_including_alpha_and_its_optimizer(tmp_path):
    config = OneShotConfig(**{**TINY, "step": "darts", "step_options": {"order": 2}})
    straight = train(config, tmp_path / "straight", progress=False)

    class Stop(Exception):
        pass

    def stop(trainer, record):
        if record["epoch"] == 1:
            raise Stop

    with pytest.raises(Stop):
        train(config, tmp_path / "killed", progress=False, callbacks=[stop])
    resumed = train(config, tmp_path / "killed", resume=True, progress=False)
    assert resumed["resumed_from_epoch"] == 2 and resumed["arch"] == straight["arch"]
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert "arch_logits" in a["model"] and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["step"]["arch_optimizer"]["state"][0]["step"] == b["step"]["arch_optimizer"]["state"][0]["step"]
    supernet, _, epoch = load_trained(tmp_path / "killed")
    assert epoch == 3 and torch.equal(supernet.arch_logits.detach(), a["model"]["arch_logits"])


def test_cli_darts_train_select_and_json(tmp_path, capsys, nastk_data):
    run = str(tmp_path / "darts")
    argv = ["supernet", "train", "--step", "darts", "--order", "1", "--dataset", "digits", "--epochs", "2",
            "--train-size", "96", "--C", "4", "--N", "1", "--batch-size", "32", "--valid-size", "32", "--no-progress",
            "--run-dir", run, "--format", "json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    config = json.loads((tmp_path / "darts" / "config.json").read_text())
    assert config["lr"] == 0.025 and config["lr_min"] == 0.001 and config["step"] == "darts"  # DARTS' recipe
    assert main(["supernet", "select", "--run-dir", run, "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    arch = get_space("nb201").from_str(out["arch"])
    assert out["arch"] == summary["arch"] and len(out["weights"]) == 6
    assert out["benchmark"]["accuracy"] == pytest.approx(
        float(__import__("nastk.benchmarks.registry", fromlist=["x"]).benchmark_for("nb201").truth([arch], "cifar10")[0][0]))
    free = sum(op in ("none", "skip_connect", "avg_pool_3x3") for op in arch.choices) / 6
    assert out["parameter_free_share"] == pytest.approx(free)
    assert json.loads((tmp_path / "darts" / "selection-argmax.json").read_text())["arch"] == out["arch"]
    assert main(["supernet", "train", "--dataset", "digits", "--order", "2", "--run-dir", str(tmp_path / "x")]) == 2
    assert "--order is an option of step darts, not of --step single_path" in capsys.readouterr().err
    spos = str(tmp_path / "spos")
    assert main(argv[:2] + argv[6:-4] + ["--run-dir", spos, "--no-progress"]) == 0
    assert main(["supernet", "select", "--run-dir", spos]) == 2
    assert "no architecture parameters" in capsys.readouterr().err


# --- schedules ---------------------------------------------------------------------------------------
def test_cosine_power_schedule():
    E = 20
    assert [cosine_power(e, E, 1.0) for e in range(E + 1)] == pytest.approx(
        [(1 + math.cos(math.pi * e / E)) / 2 for e in range(E + 1)])
    values = [cosine_power(e, E, 10.0) for e in range(E + 1)]
    assert values[0] == pytest.approx(1.0) and values[-1] == pytest.approx(0.0)
    assert all(a > b for a, b in zip(values, values[1:]))
    assert values[E // 2] < 0.5 * (1 + math.cos(math.pi / 2))  # decays faster than cosine early on
    trainer = darts_trainer(lr_schedule="cosine", epochs=E)
    optimizer, scheduler = weight_optimizer(trainer, [nn.Parameter(torch.zeros(1))])
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.025), E, 0.001)
    trainer.config.lr_schedule, trainer.config.lr_power = "cosine_power", 1.0
    power_opt, power = weight_optimizer(trainer, [nn.Parameter(torch.zeros(1))])
    for _ in range(E):
        assert power_opt.param_groups[0]["lr"] == pytest.approx(reference.get_last_lr()[0])
        power_opt.step(), reference.optimizer.step()
        power.step(), reference.step()
    with pytest.raises(ConfigError, match="lr_schedule"):
        OneShotConfig(lr_schedule="step")


# --- toy steps: the interface carries later methods -------------------------------------------------------
@pytest.mark.parametrize("step, metrics", [("sandwich", None), ("toy_adversarial", {}), ("toy_self_supervised", {})])
def test_steps_fit_the_loop_and_resume_exactly(tmp_path, step, metrics):
    config = OneShotConfig(space="toy-elastic", step=step, epochs=3, batch_size=32, valid_size=32, augment=False, lr=0.05)

    class Stop(Exception):
        pass

    def stop(trainer, record):
        if record["epoch"] == 1:
            raise Stop

    def run(folder, callbacks=(), resume=False):
        torch.manual_seed(0)
        trainer = OneShotTrainer(config, folder, data=toy_data(), progress=False, supernet=ToySupernet(),
                                 metrics=metrics, callbacks=callbacks)
        if resume:
            assert trainer.load_checkpoint()
        trainer.fit()
        return trainer

    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    straight = run(tmp_path / "a")
    with pytest.raises(Stop):
        run(tmp_path / "b", callbacks=[stop])
    resumed = run(tmp_path / "b", resume=True)
    assert resumed.history[-1]["epoch"] == 2
    a, b = straight.supernet.state_dict(), resumed.supernet.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    state_a, state_b = straight.step.state_dict(), resumed.step.state_dict()
    if step == "toy_adversarial":
        assert all(torch.equal(state_a["discriminator"][k], state_b["discriminator"][k]) for k in state_a["discriminator"])
        assert "train_acc" not in straight.history[-1] and straight.history[-1]["train_d_loss"] > 0
    elif step == "toy_self_supervised":
        assert all(torch.equal(state_a["target"][k], state_b["target"][k]) for k in state_a["target"])
        assert sum(straight.history[-1]["op_counts"]) == 2 * 2 * 3  # 2 paths x 2 decisions x 3 steps
    else:
        # 4 children per step (largest, 2 random, smallest), 2 decisions each, 3 steps of 32 images
        assert sum(straight.history[-1]["op_counts"]) == 4 * 2 * 3
        assert straight.history[-1]["children_per_step"] == 4
        assert straight.history[-1]["train_acc"] == pytest.approx(resumed.history[-1]["train_acc"])
    assert straight.history[-1]["train_loss"] == pytest.approx(resumed.history[-1]["train_loss"], abs=0)


def test_generic_choice_model_decisions_round_trip():
    supernet = ToySupernet()
    space = supernet.space
    assert [d.name for d in supernet.decisions] == ["width", "depth"] and supernet.decisions[0].options == ("2", "4", "8")
    for seed in range(5):
        arch = space.sample(np.random.default_rng(seed))
        assert supernet.arch_of_path(supernet.path_of_arch(arch)) == arch
    supernet.set_active(space.arch_of({"width": 4, "depth": 2}))
    assert (supernet.body.width, supernet.body.depth) == (4, 2)


# --- spaces from the command line ----------------------------------------------------------------------
def test_darts_space_spos_with_the_space_sampler_and_downsampled_images(tmp_path, capsys):
    darts = get_space("darts")
    config = OneShotConfig(space="darts", dataset="digits", sampler="space", supernet={"C": 4, "layers": 3},
                           epochs=1, train_size=64, batch_size=32, valid_size=32, eval_batch_size=32, augment=False,
                           image_size=8)
    trainer = OneShotTrainer(config, progress=False)
    assert trainer.x.shape[-1] == 8
    for _ in range(20):  # every drawn path is a genotype of the space (two inputs per node)
        assert darts.from_str(trainer.supernet.arch_of_path(trainer.path_sampler.sample()).to_str())
    trainer.fit()
    assert sum(trainer.history[-1]["op_counts"][1:]) == 2 * 16  # 2 steps x 16 genotype edges
    with pytest.raises(ConfigError, match="image_size must divide"):
        OneShotTrainer(OneShotConfig(**{**config.to_dict(), "image_size": 5}), progress=False)


def test_bad_supernet_option_is_one_line_and_writes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["supernet", "train", "--space", "darts", "--N", "3", "--dataset", "digits", "--run-dir", str(run)]) == 2
    assert "darts supernet has no option 'N'" in capsys.readouterr().err and not run.exists()


# --- processes: SIGKILL and DDP -------------------------------------------------------------------------
DARTS_ARGV = ["supernet", "train", "--step", "darts", "--order", "2", "--dataset", "digits", "--train-size", "128",
              "--C", "4", "--N", "1", "--batch-size", "32", "--valid-size", "0", "--no-progress", "--format", "json"]


def _cli(*argv, **options):
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "nastk.cli", *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **options)


@pytest.mark.slow
def test_darts_run_killed_with_sigkill_resumes_exactly(tmp_path):
    import signal
    import time

    argv = DARTS_ARGV + ["--epochs", "6"]
    straight = _cli(*argv, "--run-dir", str(tmp_path / "straight"))
    killed = _cli(*argv, "--run-dir", str(tmp_path / "killed"))
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.is_file() and metrics.read_text().count("\n") >= 1):
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()  # waits and closes its pipes
    assert straight.wait(timeout=240) == 0
    done = metrics.read_text().count("\n")
    assert 1 <= done < 6, "the kill must land mid-run"
    resumed = _cli(*argv, "--run-dir", str(tmp_path / "killed"), "--resume")
    out, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, err
    assert json.loads(out)["resumed_from_epoch"] >= 1
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]) and "arch_logits" in a["model"]


@pytest.mark.slow
def test_darts_under_ddp_keeps_replicas_and_alpha_identical(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = DARTS_ARGV + ["--epochs", "2", "--batch-size", "16", "--train-size", "64"]
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "nastk.cli", *argv, "--run-dir", str(tmp_path / "ddp")], env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    state = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)
    assert [r["replica_spread"] for r in state["history"]] == [0.0, 0.0]  # weights and alpha equal on both ranks
    assert state["history"][-1]["images"] == 32 and state["config"]["step"] == "darts"
    torch.manual_seed(0)
    initial = torch.randn(6, 5, generator=torch.Generator().manual_seed(0)) * 1e-3
    assert not torch.allclose(state["model"]["arch_logits"], initial)


def test_non_positive_supernet_sizes_are_one_line_and_write_nothing(tmp_path, capsys):
    for flags in (["--C", "0"], ["--N", "-1"], ["--space", "darts", "--layers", "3", "--C", "0"]):
        run = tmp_path / "_".join(flags)
        with pytest.raises(SystemExit) as exit_:  # argparse checks the declared range of every flag
            main(["supernet", "train", "--dataset", "digits", "--run-dir", str(run), *flags])
        assert exit_.value.code == 2
        assert "must be a whole number >= 1" in capsys.readouterr().err and not run.exists()


def test_method_hooks_are_opt_in_mixins():
    from nastk.errors import CapabilityError
    from nastk.oneshot.perturbation import plan_rounds
    from nastk.supernet import GradientMatchable, PerturbationSelectable

    nb201 = get_space("nb201").supernet(10, C=4, N=1)
    assert isinstance(nb201, (GradientMatchable, PerturbationSelectable)) and nb201.absent_option is None
    assert len(plan_rounds(nb201)) == 6  # one group of 6 edges, no topology step
    with pytest.raises(CapabilityError, match="does not support DARTS-PT selection: mix nastk.supernet.PerturbationSelectable"):
        plan_rounds(ToySupernet())


def test_a_steps_score_is_what_selection_and_ranking_maximise():
    """The score hook: held-out quality and inherited-weight ranking read the run's step's score."""
    from nastk.oneshot.ranking import inherited_accuracies
    from nastk.oneshot.datamodules import correct_percent
    from nastk.oneshot.steps import SinglePathStep

    class Negated(SinglePathStep):  # a task whose quality is the negated top-1 (any per-example score works)
        @staticmethod
        def score(outputs, targets):
            return -correct_percent(outputs, targets)

    trainer = OneShotTrainer(OneShotConfig(**{**TINY, "held_out_fraction": 0.25}), progress=False)
    path = trainer.supernet.largest_path()
    plain, _ = trainer.held_out_quality(path)
    trainer.step.score = Negated.score  # the step's own score wins over the data module's
    negated, _ = trainer.held_out_quality(path)
    assert negated == -plain != 0
    archs = [trainer.supernet.arch_of_path(path)]
    x, y = trainer.x_held, trainer.y_held
    assert inherited_accuracies(trainer.supernet, archs, x, y, score=Negated.score)[0] == \
        -inherited_accuracies(trainer.supernet, archs, x, y)[0]
