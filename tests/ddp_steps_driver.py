"""Run under ``torchrun --nproc_per_node 2``: train every step named on the command line for two epochs
(2 gloo ranks) and write each run's per-epoch replica spread to OUT/<step>.json (rank 0)."""
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

import toy_steps  # noqa: F401 (registers the toy GAN and self-supervised steps)
from nastk.datasets import load_dataset
from nastk.oneshot.ddp import Distributed
from nastk.oneshot.steps import STEPS
from nastk.oneshot.trainer import OneShotConfig, OneShotTrainer

#: steps that train architecture parameters run on a tiny NB201 supernet (a mixture needs candidate ops)
MIXTURE_STEPS = {"darts"}
#: steps that need an elastic MBConv supernet (ShiftNAS' matrix mapping), run on the tiny MobileNet space
MBCONV_STEPS = {"shiftnas": {"bins": 2, "shift_every": 1, "warmup_fraction": 0.0, "shift_lr": 0.05, "generator_warmup": 2}}
#: GAN steps train a tiny digits generator supernet against a discriminator the step owns (nastk.generative)
GAN_STEPS = {"adversarial": {"search": "generator", "n_critic": 2, "warmup_epochs": 2}}
#: (op, bits) steps need the super-resolution supernet: a C = 4 sr supernet on digits as (low, high) image pairs
SR_STEPS = {"quantnas": {"arch_warmup_epochs": 0, "bitops_penalty": 0.1}}
#: block-wise self-supervised steps (BossNAS) train block 1 of the NATS size supernet on two views of digits
BLOCK_STEPS = {"bossnas": {"block": 1, "paths": 8, "update_interval": 2, "adapter_width": 8, "hidden": 16,
                           "projection": 8, "optimizer": "lars"}}
#: quantization-supernet steps run on the tiny MobileNet space under mixed precision (quant:mobilenet)
QUANT_STEPS = {"eqnet": {"calibration_size": 16}}
#: cases beyond one per step, as (case name: step): QuantNAS' step on the NB201-style classification space
#: (qnas-nb201, labelled digits, cross-entropy)
EXTRA_CASES = {"quantnas-nb201": "quantnas"}


def run(step: str, out: Path) -> None:
    torch.manual_seed(0)
    if step in BLOCK_STEPS:
        config = OneShotConfig.for_step(step, space="nats-sss", dataset="digits", epochs=2, train_size=24,
                                        batch_size=8, lr=0.05, step_options=BLOCK_STEPS[step])
        trainer = OneShotTrainer(config, out / step, dist=Distributed.from_env(), data=load_dataset("digits"), progress=False)
    elif step in MIXTURE_STEPS:
        config = OneShotConfig(space="nb201", dataset="digits", step=step, supernet={"C": 4, "N": 1}, epochs=2,
                               train_size=64, batch_size=16, valid_size=0, augment=False)
        trainer = OneShotTrainer(config, out / step, dist=Distributed.from_env(), data=load_dataset("digits"), progress=False)
    elif step in MBCONV_STEPS:
        config = OneShotConfig.for_step(step, space="mobilenet", epochs=2, batch_size=16, valid_size=0, augment=False,
                                        lr=0.05, held_out_fraction=0.25, step_options=MBCONV_STEPS[step])
        trainer = OneShotTrainer(config, out / step, dist=Distributed.from_env(), data=toy_steps.toy_data(), progress=False)
    elif step in GAN_STEPS:
        from nastk.generative.features import gan_images

        config = OneShotConfig(space="gan-g-digits", dataset="digits", step=step, supernet={"width": 4, "latent_per_cell": 2},
                               epochs=2, train_size=64, batch_size=16, valid_size=0, augment=False, step_options=GAN_STEPS[step])
        trainer = OneShotTrainer(config, out / step, dist=Distributed.from_env(), data=gan_images("digits").as_dataset(),
                                 progress=False, metrics={})
    elif step == "quantnas-nb201":
        config = OneShotConfig(space="qnas-nb201", dataset="digits", step="quantnas", supernet={"C": 4, "N": 1}, epochs=2,
                               train_size=32, batch_size=8, valid_size=0, augment=False, lr=1e-3,
                               step_options=SR_STEPS["quantnas"])
        trainer = OneShotTrainer(config, out / step, dist=Distributed.from_env(), data=load_dataset("digits"), progress=False)
    elif step in SR_STEPS:
        config = OneShotConfig(space="sr", dataset="digits", step=step, data="image_pairs", supernet={"C": 4}, epochs=2,
                               train_size=32, batch_size=8, valid_size=0, augment=False, lr=1e-3, step_options=SR_STEPS[step])
        trainer = OneShotTrainer(config, out / step, dist=Distributed.from_env(), data=load_dataset("digits"), progress=False)
    elif step in QUANT_STEPS:
        config = OneShotConfig.for_step(step, space="quant:mobilenet", epochs=2, batch_size=16, valid_size=0,
                                        augment=False, step_options=QUANT_STEPS[step])
        trainer = OneShotTrainer(config, out / step, dist=Distributed.from_env(), data=toy_steps.toy_data(), progress=False)
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
        (out / f"{step}.json").write_text(json.dumps({"spread": [r["replica_spread"] + r.get("step_replica_spread", 0.0)
                                                                for r in trainer.history],
                                                     "moved": moved, "world": trainer.dist.world}))


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    for name in sys.argv[2:]:
        STEPS.get(EXTRA_CASES.get(name, name))
        run(name, folder)
    # Both ranks leave the gloo group together, then skip the C++ teardown: on a loaded machine a rank
    # sometimes aborted there ("terminate called without an active exception") after every step's result
    # had been written and checked.
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
