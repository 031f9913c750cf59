"""A fingerprint of seeded one-shot training, to check a refactor leaves results bitwise unchanged.

Trains tiny NB201 supernets (digits, C=4, N=1, 3 epochs, 2 micro-batches per step) with the SPOS,
PA&DA and its two ablation samplers and prints, per sampler, the sha256 of the final weights and of
the metrics history (timings left out). Run it on two checkouts and compare:

    .venv/bin/python scripts/fingerprint_oneshot.py
    git worktree add /tmp/old <commit> && (cd /tmp/old && /work/main/.venv/bin/python scripts/fingerprint_oneshot.py)
"""
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path.cwd()))  # the checkout it is run in, not the installed one
from nastk.oneshot.trainer import OneShotConfig, train  # noqa: E402


def fingerprint(sampler: str, folder: Path) -> dict:
    config = OneShotConfig(space="nb201", dataset="digits", supernet={"C": 4, "N": 1}, epochs=3, train_size=96,
                           batch_size=32, valid_size=64, eval_batch_size=64, sampler=sampler, accumulate=2)
    train(config, folder, progress=False)
    state = torch.load(folder / "checkpoint.pt", weights_only=True)
    weights = hashlib.sha256()
    for key, value in state["model"].items():
        weights.update(key.encode())
        weights.update(value.numpy().tobytes())
    history = [{k: v for k, v in r.items() if k not in ("epoch_s", "images_per_s")} for r in state["history"]]
    return {"weights": weights.hexdigest()[:16],
            "history": hashlib.sha256(json.dumps(history, sort_keys=True).encode()).hexdigest()[:16]}


def main():
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as work:
        print(json.dumps({s: fingerprint(s, Path(work) / s) for s in ("uniform", "pada", "pa", "da")}, indent=1))


if __name__ == "__main__":
    main()
