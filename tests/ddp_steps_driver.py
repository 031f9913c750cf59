"""Run under ``torchrun --nproc_per_node 2``: train every step named on the command line for two epochs
(2 gloo ranks) and write each run's per-epoch replica spread to OUT/<step>.json (rank 0)."""
import json
import sys
from pathlib import Path

import torch

import toy_steps  # noqa: F401 (registers the toy GAN and self-supervised steps)
from nastk.datasets import load_dataset
from nastk.oneshot.distributed import Distributed
from nastk.oneshot.steps import STEPS
from nastk.oneshot.trainer import OneShotConfig, OneShotTrainer

#: steps that train architecture parameters run on a tiny NB201 supernet (a mixture needs candidate ops)
MIXTURE_STEPS = {"darts"}


def run(step: str, out: Path) -> None:
    torch.manual_seed(0)
    if step in MIXTURE_STEPS:
        config = OneShotConfig(space="nb201", dataset="digits", step=step, supernet={"C": 4, "N": 1}, epochs=2,
                               train_size=64, batch_size=16, valid_size=0, augment=False)
        trainer = OneShotTrainer(config, out / step, dist=Distributed.from_env(), data=load_dataset("digits"), progress=False)
    else:
        config = OneShotConfig(space="toy-elastic", step=step, epochs=2, batch_size=32, valid_size=0, augment=False,
                               lr=0.05, accumulate=1)
        trainer = OneShotTrainer(config, out / step, dist=Distributed.from_env(), data=toy_steps.toy_data(), progress=False,
                                 supernet=toy_steps.ToySupernet(), metrics={} if step.startswith("toy_") else None)
    initial = [p.detach().clone() for p in trainer.supernet.parameters()]
    if trainer.dist.is_main:
        (out / step).mkdir(parents=True, exist_ok=True)
    trainer.dist.barrier()
    trainer.fit()
    moved = sum(float((p.detach() - q).norm()) for p, q in zip(trainer.supernet.parameters(), initial))
    if trainer.dist.is_main:
        (out / f"{step}.json").write_text(json.dumps({"spread": [r["replica_spread"] for r in trainer.history],
                                                     "moved": moved, "world": trainer.dist.world}))


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    for name in sys.argv[2:]:
        STEPS.get(name)
        run(name, folder)
