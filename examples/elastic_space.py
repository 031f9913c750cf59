"""Your own elastic (once-for-all style) space and your own training step, in one file.

    .venv/bin/python examples/elastic_space.py                       # ~15 s on one CPU core (digits)
    torchrun --nproc_per_node 2 examples/elastic_space.py            # the same run, data-parallel (gloo)
    PYTHONPATH=. nastk supernet train --space examples.elastic_space:ElasticExampleSpace \\
        --step examples.elastic_space:ConsistencyStep --consistency-weight 0.3 --no-random-child \\
        --base-width 8 --dataset digits --no-augment --epochs 4 --run-dir runs/elastic-example

The space is a tiny conv net of two stages whose width ratio, depth and kernel size are ``Ordered``
choices (144 children). Its supernet stores each layer's largest weights (``nastk.elastic``'s sliced
conv / BatchNorm / linear layers) and runs a child by slicing them; every block is a ``ChoicePoint``
that names the decisions it reads. The step trains the largest child, optionally one random child,
and the smallest child, which also matches the largest's softened output (a consistency loss), with
one optimizer step per batch. It only goes through ``StepContext``, so it is correct under torchrun
as written, and its declared ``OPTIONS`` become ``nastk supernet train`` flags.
"""
import copy

import torch
from torch import nn
from torch.nn import functional as F

from nastk.choices import ChoiceModel, Ordered
from nastk.elastic import ConvBNAct, DynamicLinear
from nastk.errors import CapabilityError
from nastk.oneshot.steps import StepOutput, TrainingStep, weight_optimizer
from nastk.options import Bool, Float, Int, Option
from nastk.registry import SPACES
from nastk.space import SearchSpace
from nastk.supernet import ChoicePoint, Supernet, decisions_of

WIDTHS = (0.5, 0.75, 1.0)  # share of the stage's channels
DEPTHS = (1, 2)            # blocks a stage runs
KERNELS = (3, 5)           # centre crops of the stored 5x5 kernels
STAGES = (1, 2)            # stage i: base_width * 2^(i-1) channels at width 1.0; stage 2 halves the resolution


class ElasticExampleSpace(SearchSpace):
    name = "tiny-elastic-example"
    capabilities = {"supernet"}
    #: keywords of supernet() that one-shot configs and `nastk supernet train --base-width 8` may set
    SUPERNET_OPTIONS = (Option("base_width", Int(minimum=2, maximum=512),
                               "stage-1 channels at width ratio 1.0 (stage 2: twice as many)"),)

    def choice_model(self):
        return ChoiceModel([Ordered(f"s{s}_{what}", values) for s in STAGES
                            for what, values in (("width", WIDTHS), ("depth", DEPTHS), ("kernel", KERNELS))])

    def supernet(self, num_classes: int = 10, base_width: int = 16):
        return ElasticExampleSupernet(self, num_classes, base_width)

    def build(self, arch, num_classes: int = 10, base_width: int = 16):
        """A stand-alone child with fresh weights (what `nastk search --evaluator train` trains)."""
        return self.supernet(num_classes, base_width).extract(arch)


class ElasticBlock(ChoicePoint, ConvBNAct):
    """Block ``index`` of stage ``stage``: a conv (first ``width`` filters, centre ``kernel`` crop) + BN + ReLU.

    Built with the cooperative constructor: ``decisions=`` goes to ChoicePoint, everything else to
    ConvBNAct. It runs while the stage's depth exceeds ``index`` (else it passes its input on);
    blocks after a stage's first add their input (same width, stride 1).
    """

    def __init__(self, stage: int, index: int, max_in: int, max_out: int, stride: int):
        super().__init__(max_in, max_out, max(KERNELS), stride, "relu", kernel_sizes=KERNELS,
                         decisions=(f"s{stage}_width", f"s{stage}_depth", f"s{stage}_kernel"))
        self.index, self.max_out, self.running = index, max_out, True

    def configure(self, values, allowed):  # one option index per decision, in `decisions` order
        if any(isinstance(value, torch.Tensor) for value in values):
            raise CapabilityError("elastic blocks run one child at a time, not a weighted mixture")
        width, depth, kernel = WIDTHS[int(values[0])], DEPTHS[int(values[1])], KERNELS[int(values[2])]
        self.conv.set_active(out_channels=max(1, round(width * self.max_out)), kernel=kernel)
        self.running = self.index < depth

    def forward(self, x):
        if not self.running:
            return x
        y = super().forward(x)
        return x + y if self.index > 0 else y


class Residual(nn.Module):
    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)


class ElasticExampleSupernet(Supernet):
    def __init__(self, space, num_classes: int, base_width: int):
        super().__init__(space, decisions_of(space))  # one decision per choice of the space
        self.stem = nn.Sequential(nn.Conv2d(3, base_width, 3, padding=1, bias=False), nn.BatchNorm2d(base_width),
                                  nn.ReLU())
        blocks, channels = [], base_width
        for stage in STAGES:
            width = base_width * 2 ** (stage - 1)
            for index in range(max(DEPTHS)):
                blocks.append(ElasticBlock(stage, index, channels, width, stride=2 if stage > 1 and index == 0 else 1))
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.head = DynamicLinear(channels, num_classes)  # reads as many features as the last stage has
        self.path = None

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))

    def set_path(self, path):
        super().set_path(path)
        self.path = tuple(path)  # remembered so that extract() can put it back

    @torch.no_grad()
    def extract(self, arch):
        """A plain network holding copies of only the child's slices (its output equals the supernet's
        for that child, in train and eval mode); the supernet keeps its path."""
        previous = self.path
        self.set_active(arch)
        try:
            layers, channels = [copy.deepcopy(self.stem)], self.stem[1].num_features
            for block in self.blocks:
                if block.running:
                    exported = block.export(channels)
                    layers.append(Residual(exported) if block.index > 0 else exported)
                    channels = block.output_channels(channels)
            layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), self.head.export(channels)]
        finally:
            if previous is not None:
                self.set_path(previous)
        return nn.Sequential(*layers).train(self.training)


SPACES.register(ElasticExampleSpace.name, ElasticExampleSpace)


class ConsistencyStep(TrainingStep):
    """Per batch: the largest child on the labels; with ``random_child`` one uniformly random child on the
    labels; the smallest child on the labels + ``consistency_weight`` x T^2 KL(largest || smallest) at
    temperature T (the largest's output detached: it teaches and is not pulled towards the smallest).
    Gradients of all children accumulate; one SGD step (the run's lr, momentum, schedule, grad clip)."""

    name = "elastic-consistency"
    #: one flag each in `nastk supernet train --step examples.elastic_space:ConsistencyStep` (defaults: __init__'s)
    OPTIONS = (Option("consistency_weight", Float(minimum=0, maximum=100),
                      "weight of the smallest child's KL divergence to the largest child's output"),
               Option("temperature", Float(above=0), "softmax temperature of that KL term"),
               Option("random_child", Bool(), "also train one uniformly random child per batch"))
    #: run settings a new run with this step starts from unless flags or the config say otherwise
    RECIPE = {"lr": 0.1, "batch_size": 64}
    CHILD_STREAM = 10  # StepContext.rng stream of the random children (steps use 10 and up)

    def __init__(self, context, consistency_weight: float = 1.0, temperature: float = 2.0, random_child: bool = True):
        super().__init__(context)
        self.weight, self.temperature = float(consistency_weight), float(temperature)
        self.random_child = bool(random_child)
        self.largest, self.smallest = tuple(context.supernet.largest_path()), tuple(context.supernet.smallest_path())
        self.optimizer, self.scheduler = weight_optimizer(context, context.supernet.weights())

    def start_epoch(self, epoch):
        self.rng = self.context.rng(self.CHILD_STREAM)  # the same on every rank, and after a resume

    def step(self, batch):
        context, T = self.context, self.temperature
        randoms = [tuple(context.path_sampler.uniform_path(self.rng))] if self.random_child else []
        children = [self.largest, *randoms, self.smallest]
        pieces = context.config.accumulate
        context.zero_grad()
        logits, targets, first_loss, consistency = [], [], 0.0, 0.0
        for x, y, last_piece in context.micro_batches(batch.indices, batch.augment):
            for i, child in enumerate(children):
                out = context.forward(x, path=child)
                loss = context.loss(out, y)
                if i == 0:  # the largest: the teacher of this micro-batch, and what train_acc shows
                    teacher = F.softmax(out.detach() / T, dim=1)
                    logits.append(out.detach())
                    targets.append(y)
                    first_loss += float(loss.detach()) / pieces
                if i == len(children) - 1:  # the smallest
                    kl = F.kl_div(F.log_softmax(out / T, dim=1), teacher, reduction="batchmean") * T * T
                    loss = loss + self.weight * kl
                    consistency += float(kl.detach()) / pieces
                context.backward(loss / pieces, last=last_piece and i == len(children) - 1)
        if context.config.grad_clip:
            nn.utils.clip_grad_norm_(context.supernet.weights(), context.config.grad_clip)
        self.optimizer.step()
        return StepOutput(torch.tensor(first_loss), torch.cat(logits), torch.cat(targets), paths=children,
                          metrics={"consistency": consistency})

    def end_epoch(self, epoch, epochs, gather):
        self.scheduler.step()

    def lr(self):
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self):
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state):
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


def main(argv=None):
    import argparse
    import json
    import tempfile
    from pathlib import Path

    from nastk.datasets import load_dataset
    from nastk.oneshot.ddp import Distributed
    from nastk.oneshot.ranking import calibration_batches
    from nastk.oneshot.recalibration import recalibrate_bn
    from nastk.oneshot.steps import STEPS, register_step
    from nastk.oneshot.trainer import OneShotConfig, load_trained, train

    parser = argparse.ArgumentParser(description="train the example elastic supernet with the consistency step")
    parser.add_argument("--dataset", default="digits", help="digits (scikit-learn, 16 px) or any one-shot dataset")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train-size", type=int, help="training images (default all)")
    parser.add_argument("--base-width", type=int, default=16)
    parser.add_argument("--consistency-weight", type=float, default=1.0)
    parser.add_argument("--run-dir", help="run folder to write (default: a temporary one)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny networks run fastest single-threaded
    # A config names its step; a script run as __main__ registers it here (the CLI loads it as module:Class).
    if ConsistencyStep.name not in STEPS:
        register_step(ConsistencyStep.name, ConsistencyStep)
    space = ElasticExampleSpace()
    config = OneShotConfig.for_step(  # the step's RECIPE, then these
        ConsistencyStep.name, step_options={"consistency_weight": args.consistency_weight}, space=space.name,
        supernet={"base_width": args.base_width}, dataset=args.dataset, epochs=args.epochs, train_size=args.train_size,
        augment=False,  # digits: no crops or flips
        valid_size=0)  # no per-epoch monitoring: children are scored below, after BN recalibration
    with tempfile.TemporaryDirectory(prefix="nastk-elastic-") as scratch:
        run_dir = Path(args.run_dir or Path(scratch) / "run")
        summary = train(config, run_dir, progress=True)  # under torchrun: joins the process group, DDP
        if not Distributed.from_env().is_main:
            return summary  # rank 0 reports
        print(f"space {space.name}: {len(space)} children; trained the {config.step} step for {config.epochs} "
              f"epochs on {summary['world_size']} process(es), {summary['train_size']} images, "
              f"in {summary['train_wall_s']:.1f} s")
        history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        if summary["world_size"] > 1:
            print(f"replica spread per epoch: {[record['replica_spread'] for record in history]}")
        supernet, config, _ = load_trained(run_dir)
        data = load_dataset(config.dataset)
        calibration = calibration_batches(config, data, 4)  # training images the weights were trained on
        for label, arch in (("largest", space.largest()), ("smallest", space.smallest())):
            supernet.set_active(arch)
            recalibrate_bn(supernet, calibration)  # the child's own BN statistics (cumulative, BigNAS')
            with torch.no_grad():
                accuracy = 100.0 * float((supernet.eval()(data.x_test).argmax(1) == data.y_test).float().mean())
            print(f"{label:8s} child {arch.to_str()}: test acc {accuracy:.1f}% after BN recalibration")
        child = supernet.extract(space.smallest()).eval()  # the supernet is on the smallest (recalibrated) path
        with torch.no_grad():
            difference = float((child(data.x_test) - supernet(data.x_test)).abs().max())
        count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
        print(f"extracted smallest child: {count(child)} parameters (supernet {count(supernet)}), "
              f"max |child - supernet| output {difference:.1e}")
        print(f"run folder: {run_dir if args.run_dir else '(temporary, removed)'}")
        return summary


if __name__ == "__main__":
    main()
