"""The elastic-space tutorial (examples/elastic_space.py) works as written: a user's elastic space and
training step run as a script, under torchrun (2 gloo ranks, replicas identical), and from
``nastk supernet train`` by ``module:Class`` with the step's declared options as checked flags.

The example's step is never registered in this process (only its script registers it), so the
registry of steps that tests/test_ddp_steps.py walks stays the library's and the toy ones."""
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_run import run_cli  # tests/ is on sys.path under pytest
from torchrun import torchrun

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "elastic_space.py"
SPACE, STEP = "examples.elastic_space:ElasticExampleSpace", "examples.elastic_space:ConsistencyStep"
QUICK = ["--epochs", "2", "--train-size", "384", "--base-width", "8"]
DECISIONS = 6


@pytest.fixture
def example(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))  # as PYTHONPATH=<repo root> does for the nastk command
    return importlib.import_module("examples.elastic_space")


def reported(out: str, space) -> dict:
    """What the script promises to print, parsed (and checked for shape)."""
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert lines["space"].startswith(f"space tiny-elastic-example: {len(space)} children;"), out
    accuracies = {}
    for label, arch in (("largest", space.largest()), ("smallest", space.smallest())):
        match = re.fullmatch(rf"{label} +child (\S+): test acc ([\d.]+)% after BN recalibration", lines[label])
        assert match and match.group(1) == space.to_str(arch), lines[label]
        accuracies[label] = float(match.group(2))
        assert 0 <= accuracies[label] <= 100
    match = re.fullmatch(r"extracted smallest child: (\d+) parameters \(supernet (\d+)\), max \|child - supernet\| "
                         r"output (\S+)", lines["extracted"])
    assert match and int(match.group(1)) < int(match.group(2)) and float(match.group(3)) < 1e-5, lines["extracted"]
    return {"accuracies": accuracies, "lines": lines}


def test_the_script_trains_recalibrates_scores_and_extracts(example, tmp_path):
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, str(EXAMPLE), *QUICK, "--run-dir", str(run)], capture_output=True,
                          text=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    out = reported(done.stdout, example.ElasticExampleSpace())
    assert out["lines"]["run"] == f"run folder: {run}" and "replica" not in done.stdout  # one process
    config = json.loads((run / "config.json").read_text())
    assert config["space"] == "tiny-elastic-example" and config["step"] == "elastic-consistency"
    assert config["supernet"] == {"base_width": 8} and config["step_options"] == {"consistency_weight": 1.0}
    assert (config["lr"], config["batch_size"], config["augment"]) == (0.1, 64, False)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all("train_consistency" in r for r in records)
    # largest + one random child + smallest per step, each one option per decision
    assert all(sum(r["op_counts"]) == 3 * DECISIONS * r["steps"] for r in records)


@pytest.mark.usefixtures("one_torch_thread")
def test_children_and_extracted_networks_agree(example):
    space = example.ElasticExampleSpace()
    torch.manual_seed(0)
    supernet = space.supernet(base_width=4)
    x = torch.randn(8, 3, 16, 16)
    rng = np.random.default_rng(0)
    for arch in (space.largest(), space.smallest(), space.sample(rng), space.sample(rng)):
        supernet.set_active(arch)
        for train in (True, False):
            supernet.train(train)
            expected = supernet(x)
            supernet.extract(space.sample(rng))
            assert torch.equal(supernet(x), expected)  # extracting another child left the path alone
            child = supernet.extract(arch)
            assert torch.allclose(child(x), expected, atol=1e-6) and child.training == train
    built = space.build(space.smallest(), base_width=4)
    assert sum(p.numel() for p in built.parameters()) < sum(p.numel() for p in supernet.parameters())


@pytest.mark.slow  # moved out of the default run to keep it under 5 minutes on 2 cores
def test_the_script_runs_data_parallel_under_torchrun(example, tmp_path):
    run = tmp_path / "run"
    done = torchrun(str(EXAMPLE), *QUICK, "--run-dir", str(run), clean=run)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    out = reported(done.stdout, example.ElasticExampleSpace())  # printed once, by rank 0
    assert done.stdout.count("largest  child") == 1
    assert out["lines"]["replica"] == "replica spread per epoch: [0.0, 0.0]"
    assert json.loads((run / "summary.json").read_text())["world_size"] == 2
    spread = [json.loads(line)["replica_spread"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert spread == [0.0, 0.0]


CLI = ["supernet", "train", "--space", SPACE, "--step", STEP, "--dataset", "digits", "--no-augment", "--epochs", "1",
       "--train-size", "128", "--valid-size", "0", "--no-progress"]


@pytest.mark.usefixtures("one_torch_thread")
def test_cli_trains_the_example_with_its_declared_flags_and_refuses_bad_ones(example, tmp_path, capsys):
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, CLI + ["--consistency-weight", "0.3", "--temperature", "1.5", "--no-random-child",
                                            "--base-width", "4", "--run-dir", str(run), "--format", "json"])
    assert code == 0, err
    summary = json.loads(out)
    assert summary["step"] == STEP and summary["space"] == SPACE and summary["world_size"] == 1
    config = json.loads((run / "config.json").read_text())
    assert config["step_options"] == {"consistency_weight": 0.3, "temperature": 1.5, "random_child": False}
    assert config["supernet"] == {"base_width": 4} and (config["lr"], config["batch_size"]) == (0.1, 64)  # RECIPE
    (record,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert sum(record["op_counts"]) == 2 * DECISIONS * record["steps"]  # --no-random-child reached the step
    refused = [(["--consistency-weight", "lots"], "--consistency-weight"),
               (["--consistency-weight", "-0.5"], "--consistency-weight"),
               (["--temperature", "0"], "--temperature"), (["--temperature", "warm"], "--temperature"),
               (["--random-child=maybe"], "--random-child"),
               (["--base-width", "1"], "--base-width"), (["--base-width", "2.5"], "--base-width"),
               (["--order", "2"], f"--order is an option of step darts, not of --step {STEP}")]
    for flags, message in refused:
        bad = tmp_path / "bad"
        code, out, err = run_cli(capsys, CLI + flags + ["--run-dir", str(bad)])
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, (flags, err)
        assert not bad.exists(), flags
