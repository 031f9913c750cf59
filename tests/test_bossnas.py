"""BossNAS' training step (fair paths, ensemble target, EMA, LARS, exact resume) and its block rating."""
import json

import numpy as np
import pytest
import torch

from nastk.errors import ConfigError


def tiny_config(**overrides):
    from nastk.oneshot.trainer import OneShotConfig

    options = {"paths": 2, "update_interval": 3, "adapter_width": 8, "hidden": 16, "projection": 8}
    options.update(overrides.pop("step_options", {}))
    settings = {"space": "nats-sss", "dataset": "digits", "epochs": 2, "train_size": 20, "held_out_fraction": 0.2,
                "batch_size": 8, "lr": 0.05, "step_options": options, **overrides}
    return OneShotConfig.for_step("bossnas", **settings)


@pytest.fixture(scope="module")
def digits():
    from nastk.datasets import load_dataset

    return load_dataset("digits")


def test_fair_sampling_uses_every_width_once_per_layer_and_keeps_fixed_decisions():
    from nastk.oneshot.bossnas import FairPathSampler
    from nastk.space import get_space

    supernet = get_space("nats-sss").supernet()
    supernet.allowed[1] = False
    supernet.allowed[1, 5] = True  # a decided earlier block
    sampler = FairPathSampler(supernet, seed=3)
    paths = np.array(sampler.sample_many(8))
    for d in (0, 2, 3, 4):
        assert sorted(paths[:, d]) == list(range(8))
    assert set(paths[:, 1]) == {5}
    assert not np.array_equal(paths, np.array(sampler.sample_many(8)))  # resampled every iteration


def test_lars_scales_weights_by_the_trust_ratio_and_leaves_norm_and_bias_plain():
    from nastk.oneshot.bossnas import LARS, split_decay

    weight = torch.nn.Parameter(torch.full((2, 2), 2.0))
    bias = torch.nn.Parameter(torch.ones(2))
    weight.grad, bias.grad = torch.full((2, 2), 0.5), torch.full((2,), 0.5)
    optimizer = LARS(split_decay([weight, bias]), lr=1.0, momentum=0.9, weight_decay=0.1, eta=0.001)
    optimizer.step()
    w_norm, g_norm = 4.0, 1.0
    trust = 0.001 * w_norm / (g_norm + 0.1 * w_norm)
    assert torch.allclose(weight, torch.full((2, 2), 2.0 - trust * (0.5 + 0.1 * 2.0)))
    assert torch.allclose(bias, torch.full((2,), 0.5))  # plain SGD, no decay, no trust ratio


def test_the_step_refuses_labelled_data_and_bad_blocks(digits, tmp_path):
    from nastk.oneshot.trainer import OneShotTrainer

    with pytest.raises(ConfigError, match="two_views"):
        OneShotTrainer(tiny_config(data="labelled"), None, data=digits, progress=False)
    with pytest.raises(ConfigError, match="block 3 out of range"):
        OneShotTrainer(tiny_config(step_options={"block": 3}), None, data=digits, progress=False)


@pytest.mark.slow
def test_training_moves_online_and_target_and_resumes_exactly(digits, tmp_path, one_torch_thread):
    """Two epochs straight == one epoch, a fresh process-like trainer, one more (weights, heads, target)."""
    from nastk.oneshot.trainer import OneShotTrainer, read_checkpoint

    config = tiny_config()
    straight = OneShotTrainer(config, tmp_path / "a", data=digits, progress=False)
    initial = {k: v.clone() for k, v in straight.step.target.state_dict().items()}
    straight.fit()
    broken = OneShotTrainer(config, tmp_path / "b", data=digits, progress=False)
    broken.fit(until=1)
    resumed = OneShotTrainer(config, tmp_path / "b", data=digits, progress=False)
    assert resumed.load_checkpoint()
    resumed.fit()
    a, b = read_checkpoint(tmp_path / "a" / "checkpoint.pt"), read_checkpoint(tmp_path / "b" / "checkpoint.pt")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for part in ("head", "predictor", "target", "target_head"):
        for key, value in a["step"][part].items():
            assert torch.equal(value, b["step"][part][key]), (part, key)
    moved = [k for k, v in a["step"]["target"].items() if v.dtype.is_floating_point and not torch.equal(v, initial[k])]
    assert moved, "the EMA target never moved"
    history = a["history"]
    assert len(history) == 2 and all(np.isfinite(r["train_loss"]) for r in history)
    assert history[-1]["optimizer_steps"] == 2  # 2 iterations per epoch, update interval 3: flushed each epoch


@pytest.mark.slow
def test_rating_scores_every_path_of_a_block_and_picks_the_lowest(digits, tmp_path, one_torch_thread):
    from nastk.oneshot.block_rating import RatingOptions, rate_stage
    from nastk.oneshot.trainer import OneShotTrainer

    config = tiny_config(epochs=1, step_options={"block": 2})
    OneShotTrainer(config, tmp_path, data=digits, progress=False).fit()
    record = rate_stage(tmp_path, 2, RatingOptions(batches=1, batch_size=8, calibration_size=8), data=digits)
    ratings = record["ratings"]
    assert sorted(ratings, key=int) == [str(c) for c in range(8, 65, 8)] and record["paths"] == 8
    values = np.array(list(ratings.values()))
    assert np.all(np.isfinite(values)) and np.all((values >= -4) & (values <= 4)) and values.std() > 0
    best = min(ratings, key=ratings.get)
    assert record["chosen"] == {"c4": [best]}


@pytest.mark.slow
def test_block_wise_search_trains_rates_and_fixes_every_block(digits, tmp_path, one_torch_thread):
    """Three blocks with K = 8 fair paths, every path rated, the next block trained on the choice, resumable."""
    from nastk.oneshot.block_rating import aggregate
    from nastk.oneshot.bossnas import search
    from nastk.space import get_space
    from nastk.benchmarks.nats_sss import BOSSNAS_BLOCKS, arch_at

    rating = {"rating_batches": 1, "rating_batch_size": 8, "rating_calibration_size": 8}
    config = tiny_config(epochs=1, step_options={"paths": 8, "update_interval": 2, **rating})
    summary = search(config, tmp_path, progress=False, data=digits)
    assert [len(r) for r in summary["ratings"]] == [64, 64, 8]
    assert [s["stage"] for s in summary["train"]["stages"]] == ["block0", "block1", "block2"]
    block1 = torch.load(tmp_path / "stage1-block1" / "checkpoint.pt", weights_only=True)
    assert block1["config"]["step_options"]["block"] == 1
    allowed = np.array(block1["allowed"])  # block 1 trained on block 0's choice, its own decisions open
    chosen0 = summary["chosen"][0]
    for d, decision in enumerate(get_space("nats-sss").supernet().decisions):
        texts = [decision.options[o] for o in np.flatnonzero(allowed[d])]
        assert texts == chosen0[decision.name] if decision.name in chosen0 else len(texts) == 8
    for k in range(3):
        choice = json.loads((tmp_path / f"stage{k}-block{k}" / "choice.json").read_text())
        assert choice["ratings"] == summary["ratings"][k] and choice["chosen"] == summary["chosen"][k]
    assert json.loads((tmp_path / "bossnas.json").read_text())["arch"] == summary["arch"]
    space = get_space("nats-sss")
    networks = [space.channels(a) for a in space.enumerate()]
    ranking = aggregate(summary["ratings"], networks, BOSSNAS_BLOCKS, decimals=None)
    assert space.to_str(arch_at(int(np.argmin(ranking)))) == summary["arch"]  # greedy = argmin of the sum
    from nastk.oneshot.block_rating import BossNASEvaluator

    evaluator = BossNASEvaluator(space, tmp_path)
    chosen = evaluator.evaluate(space.from_str(summary["arch"])).metrics["bossnas_score"]
    assert chosen == pytest.approx(-float(np.min(ranking)))
    again = search(config, tmp_path, resume=True, progress=False, data=digits)
    assert again == summary  # finished blocks and ratings are not redone
    # supernet rank on the run ranks by the rating (self-supervised weights have no classifier to score with)
    import io
    from contextlib import redirect_stdout

    from nastk.cli import main

    output = io.StringIO()
    with redirect_stdout(output):
        assert main(["supernet", "rank", "--run-dir", str(tmp_path), "--sample", "20", "--no-progress",
                     "--format", "json"]) == 0
    ranked = json.loads(output.getvalue())
    assert ranked["score"].startswith("bossnas_score") and ranked["kendall"] is not None
    scores = [row["supernet_accuracy"] for row in ranked["ranking"]]
    assert scores == sorted(scores, reverse=True)
    assert scores == [evaluator.evaluate(space.from_str(row["arch"])).value for row in ranked["ranking"]]
    from nastk.evaluators.supernet import SupernetEvaluator

    via_supernet = SupernetEvaluator.from_config(space, {"run_dir": str(tmp_path)}, device=None)
    assert isinstance(via_supernet, BossNASEvaluator)  # --evaluator supernet:RUN_DIR scores by the rating too
    from nastk.run_views import read_oneshot

    assert read_oneshot(tmp_path).selected_arch == summary["arch"]  # runs show / list name the search's choice


BLOCKWISE = ["supernet", "train", "--space", "nats-sss", "--step", "bossnas", "--data", "two_views", "--stages",
             "blockwise", "--dataset", "digits", "--epochs", "1"]


@pytest.mark.parametrize("change, fragment", [
    ({"--step": "single_path"}, "trains with --step bossnas, not 'single_path'"),
    ({"--space": "nb201"}, "needs a supernet made of blocks"),
    ({"--data": "labelled"}, "use --data two_views"),
    ({"--held-out-fraction": "0"}, "leaves none"),
    ({"--block": "1"}, "leave out the step option block"),
    ({"--fewshot": "gm", "--epochs": "4"}, "does not combine with a stage schedule"),
    ({"--rating-batches": "0"}, "--rating-batches: must be a whole number >= 1"),
    ({"--rating-calibration-size": "x"}, "--rating-calibration-size: must be a whole number"),
])
def test_blockwise_cli_refuses_bad_settings_in_one_line_and_writes_nothing(tmp_path, capsys, change, fragment):
    from cli_run import run_cli  # tests/ is on sys.path under pytest

    argv = list(BLOCKWISE)
    for flag, value in change.items():
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    code, _, err = run_cli(capsys, *argv, "--run-dir", str(tmp_path / "run"))
    assert code == 2 and fragment in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()


def test_a_choosing_stage_needs_a_step_that_chooses(tmp_path, digits):
    from nastk.oneshot.trainer import OneShotConfig, train

    config = OneShotConfig(space="nats-sss", dataset="digits", epochs=1, train_size=8, batch_size=8, valid_size=0,
                           stages=[{"name": "a", "epochs": 1, "choose": True}])
    with pytest.raises(ConfigError, match="choose needs a step that chooses"):
        train(config, tmp_path / "run", progress=False, data=digits)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="choose must be true or false"):
        OneShotConfig(space="nats-sss", stages=[{"name": "a", "epochs": 1, "choose": "yes"}])


def test_blockwise_schedule_is_one_choosing_bossnas_stage_per_block():
    from nastk.oneshot.bossnas import HELD_OUT_FRACTION, blockwise, is_blockwise

    config = blockwise(tiny_config(epochs=3, held_out_fraction=None, step_options={"rating_batches": 1}))
    assert is_blockwise(config) and config.held_out_fraction == HELD_OUT_FRACTION
    assert [(s["name"], s["epochs"], s["choose"], s["overrides"]["step_options"]["block"]) for s in config.stages] == [
        ("block0", 3, True, 0), ("block1", 3, True, 1), ("block2", 3, True, 2)]
    assert all(s["overrides"]["step_options"]["rating_batches"] == 1 for s in config.stages)
    assert blockwise(config) == config  # a saved blockwise config is kept as it is
    with pytest.raises(ConfigError, match="one choosing stage per block"):
        blockwise(tiny_config(stages=[{"name": "warm", "epochs": 1}]))


def test_the_reproduction_script_runs_what_the_cli_runs(tmp_path):
    """scripts/reproduce_bossnas.py calls the CLI's entry (bossnas.search) with the config its documented
    nastk supernet train flags make."""
    import importlib.util
    from pathlib import Path

    from nastk.cli import build_parser
    from nastk.commands.supernet import train_config
    from nastk.oneshot.bossnas import blockwise

    path = Path(__file__).parent.parent / "scripts" / "reproduce_bossnas.py"
    spec = importlib.util.spec_from_file_location("reproduce_bossnas", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    args = script.parse_args(["train", "--epochs", "1", "--train-size", "320", "--rating-images", "64",
                              "--calibration", "32"])
    argv = ["supernet", "train", *script.cli_flags(args, 2), "--run-dir", str(tmp_path / "run")]
    cli = train_config(build_parser().parse_known_args(argv)[0])
    assert cli == blockwise(script.bossnas_config(args, 2), args.epochs)


@pytest.mark.slow
def test_blockwise_search_under_torchrun_rates_on_rank_0_and_keeps_replicas_identical(tmp_path):
    """2 gloo ranks: every rank trains each block, rank 0 alone rates it (choice.json), both continue with
    its choice; replicas stay identical in every block; the printed result is rank 0's."""
    import os

    from torchrun import torchrun  # tests/ is on sys.path under pytest

    flags = [*BLOCKWISE[2:], "--epochs", "2", "--train-size", "20", "--image-size", "4", "--batch-size", "8", "--paths", "2",
             "--update-interval", "2", "--adapter-width", "8", "--hidden", "8", "--projection", "8",
             "--rating-batches", "1", "--rating-batch-size", "4", "--rating-calibration-size", "4", "--no-progress",
             "--format", "json"]
    run = tmp_path / "ddp"
    done = torchrun("-m", "nastk.cli", "supernet", "train", *flags, "--run-dir", str(run), clean=run,
                    env={"NASTK_TENSORBOARD": "0"})
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    printed = json.loads(done.stdout)  # one JSON document: rank 1 prints nothing
    assert printed["train"]["world_size"] == 2 and [len(r) for r in printed["ratings"]] == [64, 64, 8]
    assert json.loads((run / "bossnas.json").read_text())["arch"] == printed["arch"]
    for k in range(3):
        lines = [json.loads(line) for line in (run / f"stage{k}-block{k}" / "metrics.jsonl").read_text().splitlines()]
        assert [r["replica_spread"] for r in lines] == [0.0, 0.0], f"block {k}: replicas drift apart"
        assert json.loads((run / f"stage{k}-block{k}" / "choice.json").read_text())["chosen"] == printed["chosen"][k]
    assert os.environ.get("WORLD_SIZE") is None  # nothing leaked into the test process
