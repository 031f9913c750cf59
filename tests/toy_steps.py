"""Toy one-shot pieces that live only in the tests, importable by a ``torchrun`` worker: an elastic MLP
space, and training steps of later method families written against the public StepContext — a GAN
step (the supernet is the generator, the step owns a discriminator, two optimizers, no labels) and a
self-supervised step (two augmented views, a predictor the step owns, an EMA target without
gradients, no labels)."""
import copy

import torch
from torch import nn
from torch.nn import functional as F

from nastk.choices import ChoiceModel, Ordered
from nastk.datasets import ImageDataset
from nastk.oneshot.steps import STEPS, StepOutput, TrainingStep, register_step
from nastk.space import SearchSpace
from nastk.supernet import ChoicePoint, Supernet, decisions_of


class ToySpace(SearchSpace):
    """Width and depth of a tiny MLP, both ordered choices (an elastic family in miniature)."""

    name = "toy-elastic"

    def choice_model(self):
        return ChoiceModel([Ordered("width", (2, 4, 8)), Ordered("depth", (1, 2, 3))])


class ElasticMLP(ChoicePoint):
    """One choice point reading two decisions by name: the hidden width and how many hidden layers run."""

    def __init__(self, inputs: int, outputs: int, width: int = 8, depth: int = 3):
        super().__init__(decisions=("width", "depth"))
        self.first = nn.Linear(inputs, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(depth - 1))
        self.last = nn.Linear(width, outputs)
        self.widths, self.depths = (2, 4, 8), (1, 2, 3)
        self.width, self.depth = width, depth

    def configure(self, values, allowed):
        self.width, self.depth = self.widths[int(values[0])], self.depths[int(values[1])]

    def forward(self, x):
        w = self.width
        h = F.relu(F.linear(x, self.first.weight[:w], self.first.bias[:w]))
        for layer in self.hidden[:self.depth - 1]:
            h = F.relu(F.linear(h, layer.weight[:w, :w], layer.bias[:w]))
        return F.linear(h, self.last.weight[:, :w], self.last.bias)


class ToySupernet(Supernet):
    def __init__(self, inputs=48, outputs=10):
        super().__init__(ToySpace(), decisions_of(ToySpace()))
        self.body = ElasticMLP(inputs, outputs)

    def forward(self, x):
        return self.body(x.flatten(1))


def toy_data():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(96, 3, 4, 4, generator=generator)
    y = (x.flatten(1)[:, :10].argmax(1))
    return ImageDataset("toy", x, y, x[:32], y[:32], 10)


class AdversarialStep(TrainingStep):
    """A GAN step in the EAGAN mould: the supernet is the generator (a sampled path per step), the step
    owns a discriminator (wrapped by the context, so its gradients are averaged over ranks too)."""

    name = "toy_adversarial"

    def __init__(self, context, noise: int = 48):
        super().__init__(context)
        torch.manual_seed(context.config.seed + 1)
        self.discriminator = context.wrap(nn.Sequential(nn.Flatten(), nn.Linear(48, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1)))
        self.noise = noise
        self.g_optimizer = torch.optim.Adam(context.supernet.weights(), lr=1e-3, betas=(0.5, 0.999))
        self.d_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=1e-3, betas=(0.5, 0.999))

    def start_epoch(self, epoch):
        self.generator = self.context.torch_generator(10)
        self.rng = self.context.rng(11)

    def step(self, batch):
        context = self.context
        real, _ = context.examples(batch.indices)
        real = real.flatten(1)
        path = context.supernet.path_of_arch(context.supernet.space.sample(self.rng))  # same path on every rank
        z = torch.randn(len(real), self.noise, generator=self.generator).to(context.device)
        fake = torch.tanh(context.forward(z.view(len(real), 3, 4, 4), path=path).repeat(1, 5)[:, :48])
        ones, zeros = torch.ones(len(real), 1, device=context.device), torch.zeros(len(real), 1, device=context.device)
        d = self.discriminator
        d_loss = (F.binary_cross_entropy_with_logits(context.forward(real, model=d), ones)
                  + F.binary_cross_entropy_with_logits(context.forward(fake.detach(), model=d), zeros))
        context.zero_grad(d)
        context.backward(d_loss, model=d)
        self.d_optimizer.step()
        g_loss = F.binary_cross_entropy_with_logits(context.forward(fake, model=d), ones)
        context.zero_grad()
        context.backward(g_loss, model=context.model)
        self.g_optimizer.step()
        return StepOutput(g_loss.detach(), path=path, metrics={"d_loss": float(d_loss.detach())})

    def state_dict(self):
        return {"discriminator": self.discriminator.state_dict(), "g": self.g_optimizer.state_dict(),
                "d": self.d_optimizer.state_dict()}

    def load_state_dict(self, state):
        self.discriminator.load_state_dict(state["discriminator"])
        self.g_optimizer.load_state_dict(state["g"])
        self.d_optimizer.load_state_dict(state["d"])


class SelfSupervisedStep(TrainingStep):
    """A BossNAS-like step in miniature: two noisy views, two paths, the online supernet plus a predictor
    the step owns predict an EMA target's output of the other view (no labels, no logits)."""

    name = "toy_self_supervised"

    def __init__(self, context, ema: float = 0.9):
        super().__init__(context)
        torch.manual_seed(context.config.seed + 2)
        self.predictor = context.wrap(nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 10)))
        self.target = copy.deepcopy(context.supernet).requires_grad_(False)
        self.ema = ema
        self.optimizer = torch.optim.SGD(list(context.supernet.weights()) + list(self.predictor.parameters()), lr=0.05)

    def start_epoch(self, epoch):
        self.generator = self.context.torch_generator(10)
        self.rng = self.context.rng(11)

    def step(self, batch):
        context = self.context
        x, _ = context.examples(batch.indices)
        views = [x + 0.1 * torch.randn(x.shape, generator=self.generator).to(context.device) for _ in range(2)]
        paths = [context.supernet.path_of_arch(context.supernet.space.sample(self.rng)) for _ in range(2)]
        context.zero_grad()
        total = 0.0
        for i, path in enumerate(paths):
            online = context.forward(context.forward(views[i], path=path), model=self.predictor)
            with torch.no_grad():
                self.target.set_active(path)
                target = self.target(views[1 - i])
            loss = (2 - 2 * F.cosine_similarity(online, target, dim=1)).mean() / len(paths)
            context.backward(loss, last=i == len(paths) - 1)
            total += float(loss.detach())
        self.optimizer.step()
        with torch.no_grad():
            for t, o in zip(self.target.parameters(), context.supernet.parameters()):
                t.mul_(self.ema).add_(o.detach(), alpha=1 - self.ema)
        return StepOutput(torch.tensor(total), paths=paths)

    def state_dict(self):
        return {"predictor": self.predictor.state_dict(), "target": self.target.state_dict(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state):
        self.predictor.load_state_dict(state["predictor"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])


TOY_STEPS = (AdversarialStep, SelfSupervisedStep)
for _step in TOY_STEPS:
    if _step.name not in STEPS:
        register_step(_step.name, _step)


def replica_spread_run(step: str, run_dir, epochs: int = 2, step_options=None, space_supernet=None):
    """Train the toy supernet (or a given one) with ``step`` for ``epochs`` and return the history."""
    from nastk.oneshot.trainer import OneShotConfig, OneShotTrainer

    config = OneShotConfig(space="toy-elastic", step=step, step_options=dict(step_options or {}), epochs=epochs,
                           batch_size=32, valid_size=0, augment=False, lr=0.05)
    torch.manual_seed(0)
    trainer = OneShotTrainer(config, run_dir, data=toy_data(), progress=False,
                             supernet=space_supernet or ToySupernet(), metrics=None)
    trainer.fit()
    return trainer.history

