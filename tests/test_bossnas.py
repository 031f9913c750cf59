"""BossNAS' training step (fair paths, ensemble target, EMA, LARS, exact resume) and its block rating."""
import json

import numpy as np
import pytest
import torch

from nastk.errors import ConfigError


def tiny_config(**overrides):
    from nastk.oneshot.trainer import OneShotConfig

    options = {"block": 0, "paths": 2, "update_interval": 3, "adapter_width": 8, "hidden": 16, "projection": 8}
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
    from nastk.oneshot.block_rating import RatingOptions, aggregate
    from nastk.oneshot.bossnas import search
    from nastk.space import get_space
    from nastk.benchmarks.nats_sss import BOSSNAS_BLOCKS, arch_at

    config = tiny_config(epochs=1, step_options={"paths": 8, "update_interval": 2})
    summary = search(config, tmp_path, 1, progress=False, data=digits,
                     rating=RatingOptions(batches=1, batch_size=8, calibration_size=8))
    assert [len(r) for r in summary["ratings"]] == [64, 64, 8]
    block1 = json.loads((tmp_path / "stage1-block1" / "config.json").read_text()) if (
        tmp_path / "stage1-block1" / "config.json").is_file() else None
    assert block1 is None or block1["step_options"]["block"] == 1
    space = get_space("nats-sss")
    networks = [space.channels(a) for a in space.enumerate()]
    ranking = aggregate(summary["ratings"], networks, BOSSNAS_BLOCKS, decimals=None)
    assert space.to_str(arch_at(int(np.argmin(ranking)))) == summary["arch"]  # greedy = argmin of the sum
    from nastk.oneshot.block_rating import BossNASEvaluator

    evaluator = BossNASEvaluator(space, tmp_path)
    chosen = evaluator.evaluate(space.from_str(summary["arch"])).metrics["bossnas_score"]
    assert chosen == pytest.approx(-float(np.min(ranking)))
    again = search(config, tmp_path, 1, resume=True, progress=False, data=digits,
                   rating=RatingOptions(batches=1, batch_size=8, calibration_size=8))
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
