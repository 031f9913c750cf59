"""A user's own search space with a supernet, in one file: RE, BO, SPOS and DARTS work on it unchanged.

    .venv/bin/python examples/custom_space.py        # ~10 s on one CPU core (digits, tiny settings)

The space declares its choices once (three layers, each one of four ops); the base classes derive
sampling, mutation, encoding, optuna suggestions, the codec and the supernet's option mapping.
"""
import torch
from torch import nn

from nastk.choices import Categorical, ChoiceModel
from nastk.registry import SPACES
from nastk.space import SearchSpace
from nastk.supernet import CandidateOps, Supernet, decisions_of

OPS = ("conv3", "conv5", "pool", "skip")


def make_op(name: str, channels: int) -> nn.Module:
    if name.startswith("conv"):
        k = int(name[-1])
        return nn.Sequential(nn.Conv2d(channels, channels, k, padding=k // 2), nn.BatchNorm2d(channels), nn.ReLU())
    return nn.AvgPool2d(3, 1, 1) if name == "pool" else nn.Identity()


class TinyNet(nn.Module):
    """A stem, three layers (each a fixed op, or a CandidateOps choice point in the supernet) and a head."""

    def __init__(self, layers, num_classes: int = 10, C: int = 8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1), nn.BatchNorm2d(C), nn.ReLU())
        self.layers = nn.Sequential(*layers)
        # pooled to 4x4, not 1x1: a digit's layout is what tells it apart (a 1x1 head stays near chance)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(16 * C, num_classes))

    def forward(self, x):
        return self.head(self.layers(self.stem(x)))


class TinySpace(SearchSpace):
    name = "tiny"
    capabilities = {"supernet"}

    def choice_model(self):
        return ChoiceModel([Categorical(f"layer{i}", OPS) for i in range(3)])

    def build(self, arch, num_classes: int = 10, C: int = 8, **options):
        return TinyNet([make_op(op, C) for op in arch.choices], num_classes, C)

    def supernet(self, num_classes: int = 10, C: int = 8, **options):
        return TinySupernet(self, num_classes, C)


class TinySupernet(Supernet):
    def __init__(self, space, num_classes: int, C: int):
        super().__init__(space, decisions_of(space))
        self.net = TinyNet([CandidateOps(i, [make_op(op, C) for op in OPS]) for i in range(3)], num_classes, C)

    def forward(self, x):
        return self.net(x)


SPACES.register("tiny", TinySpace)


def main():
    import numpy as np

    from nastk.evaluators.proxy import ProxyEvaluator
    from nastk.oneshot.selection import select
    from nastk.oneshot.trainer import OneShotConfig, OneShotTrainer
    from nastk.run_folder import run_search
    from nastk.strategy import make_strategy

    torch.set_num_threads(1)
    space = TinySpace()
    print("a random architecture:", space.sample(np.random.default_rng(0)).to_str())
    evaluator = ProxyEvaluator(space, "synflow", dataset="digits", batch_size=32)  # zero-cost: no training
    for strategy in ("re", "bo-tpe"):
        outcome = run_search(make_strategy(strategy, space, seed=0), evaluator, budget=12)
        print(f"{strategy:7s} best by synflow: {outcome.best_arch.to_str()}")
    # no flips or crops: a mirrored digit is another digit (or none)
    common = dict(space="tiny", dataset="digits", supernet={"C": 8}, epochs=3, train_size=512, batch_size=32,
                  valid_size=128, eval_batch_size=128, augment=False)
    spos = OneShotTrainer(OneShotConfig(**common, lr=0.05), progress=False)
    print(f"SPOS    supernet test acc (monitoring) {spos.fit()[-1]['test_acc']:.1f}")
    darts = OneShotTrainer(OneShotConfig(**common, step="darts", lr=0.025, lr_min=0.001), progress=False)
    darts.fit()
    print(f"DARTS   argmax architecture: {select(darts.supernet).arch.to_str()}")


if __name__ == "__main__":
    main()
