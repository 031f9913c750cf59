"""ShiftNAS' architecture generator (AG) and the matrix mapping that lets the task loss reach it (methods.md 2.1 items 3-5).

* :class:`ArchitectureGenerator`: one LSTM cell (64 hidden units) that, given a target cost ``C``, emits one
  Gumbel-softmax one-hot per decision of the supernet, sequentially. [R] (the paper's appendix is not
  available): the first input is ``C`` normalised to [0, 1] over the bins' range through a linear layer, later
  inputs the previous decision's one-hot through a linear embedding; one FC head per *kind* of decision
  (decisions with the same option tuple share it: kernel, expand, depth on the tiny space); Gumbel
  temperature 1; straight-through (hard one-hot forward, soft gradient).
* :class:`MaskMapping`: the supernet runs its largest kernel / expand / depth while the sampled one-hots are
  turned into nested masks ``p' = M y`` (columns of ``M`` are each option's mask: centre-crop kernels,
  prefix hidden channels, the first ``d`` blocks of a stage) that multiply the depthwise kernels, the hidden
  activations and the residual branches. With a hard one-hot the output is exactly the child's; the
  gradient flows into ``y`` and hence the generator (NNI's weighted slicing ``sum_i y_i mask_i * W`` is the
  same operation). Decisions of other roles (widths, resolution) run their sampled option without a mask.
* :func:`resource_loss`: ``(F(y) - C)^2``, the absolute squared gap in the cost's units (Eq. 10's ``L_RC``):
  ``F`` is the supernet's analytic ``expected_cost`` at the straight-through one-hots, i.e. the exact cost
  of the sampled child forward and the analytic cost of the relaxed one-hots backward [R].
"""
from __future__ import annotations

import contextlib
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from nastk.devices import HOST
from nastk.elastic import DynamicConv2d, ElasticMBConv, hidden_channels
from nastk.errors import CapabilityError, ConfigError

#: the block roles the mapping turns into masks (nested choices of an elastic MBConv block)
MAPPED_ROLES = ("kernel", "expand", "depth")


def gumbel_softmax(logits: torch.Tensor, tau: float = 1.0, generator: Optional[torch.Generator] = None,
                   noise: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """Straight-through Gumbel-softmax over the last dimension: ``(hard - soft.detach() + soft, index)``.

    The noise comes from ``generator`` (a seeded CPU stream: identical on every rank and after a resume,
    which ``torch.nn.functional.gumbel_softmax`` and its global generator are not); ``noise=False`` gives the
    argmax. Entries at ``-inf`` are never drawn.
    """
    if noise:
        u = torch.rand(logits.shape, generator=generator, dtype=torch.float64, device=HOST).clamp_(1e-12, 1 - 1e-12)
        logits = logits + (-torch.log(-torch.log(u))).to(logits)
    soft = torch.softmax(logits / tau, dim=-1)
    index = soft.argmax(dim=-1)
    hard = F.one_hot(index, soft.shape[-1]).to(soft)
    return hard - soft.detach() + soft, index


class ArchitectureGenerator(nn.Module):
    """``C -> one straight-through one-hot per decision`` (see the module docstring).

    ``option_counts[d]`` options of decision ``d``; ``kinds[d]`` the head it uses; ``allowed`` (decisions x
    width) masks options a restricted supernet never runs; outputs are ``(batch, decisions, width)``.
    """

    def __init__(self, option_counts: Sequence[int], kinds: Sequence[str], allowed=None, hidden: int = 64):
        super().__init__()
        if len(option_counts) != len(kinds) or not option_counts:
            raise ConfigError("the architecture generator needs one kind per decision and at least one decision")
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ConfigError(f"generator hidden size must be a positive integer, got {hidden!r}")
        self.option_counts, self.kinds = [int(n) for n in option_counts], list(kinds)
        self.width = max(self.option_counts)
        self.hidden = hidden
        names = sorted(set(self.kinds))
        self.kind_index = {kind: i for i, kind in enumerate(names)}
        self.cell = nn.LSTMCell(hidden, hidden)
        self.target_in = nn.Linear(1, hidden)
        self.embed = nn.ModuleList(nn.Linear(self.width, hidden) for _ in names)
        counts = {kind: n for kind, n in zip(self.kinds, self.option_counts)}
        self.heads = nn.ModuleList(nn.Linear(hidden, counts[kind]) for kind in names)
        mask = torch.ones(len(self.option_counts), self.width, dtype=torch.bool)
        for d, n in enumerate(self.option_counts):
            mask[d, n:] = False
        if allowed is not None:
            mask &= torch.as_tensor(allowed, dtype=torch.bool)[:, :self.width]
        self.register_buffer("option_mask", mask, persistent=False)

    @classmethod
    def for_supernet(cls, supernet, hidden: int = 64) -> "ArchitectureGenerator":
        """A generator over a supernet's decisions; decisions with the same option tuple share a head."""
        return cls([len(d.options) for d in supernet.decisions], ["/".join(map(str, d.options)) for d in supernet.decisions],
                   allowed=supernet.allowed, hidden=hidden)

    def forward(self, target: torch.Tensor, tau: float = 1.0, generator: Optional[torch.Generator] = None,
                noise: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
        """``target``: normalised costs, shape ``(batch,)``. Returns (straight-through one-hots
        ``(batch, decisions, width)``, option indices ``(batch, decisions)``)."""
        target = target.reshape(-1, 1).to(self.target_in.weight)
        x = self.target_in(target)
        state = None
        rows, indices = [], []
        for d, kind in enumerate(self.kinds):
            h, c = self.cell(x, state)
            state = (h, c)
            k = self.kind_index[kind]
            logits = torch.full((len(target), self.width), float("-inf"), dtype=h.dtype, device=h.device)
            logits[:, :self.option_counts[d]] = self.heads[k](h)
            logits = logits.masked_fill(~self.option_mask[d], float("-inf"))
            y, index = gumbel_softmax(logits, tau, generator, noise)
            rows.append(y)
            indices.append(index)
            x = self.embed[k](y)
        return torch.stack(rows, dim=1), torch.stack(indices, dim=1)

    @torch.no_grad()
    def argmax_path(self, target: float) -> Tuple[int, ...]:
        """The most probable child for a normalised target (deployment: no noise)."""
        _, index = self.forward(torch.tensor([float(target)], device=self.target_in.weight.device), noise=False)
        return tuple(int(i) for i in index[0])


def resource_loss(supernet, rows: torch.Tensor, target: torch.Tensor, metric: str = "flops") -> torch.Tensor:
    """``(F(rows) - C)^2`` per row set, in the cost's units (Eq. 10's absolute squared ``L_RC``)."""
    rows = rows if rows.dim() == 3 else rows.unsqueeze(0)
    width = supernet.allowed.shape[1]
    if rows.shape[2] < width:
        rows = F.pad(rows, (0, width - rows.shape[2]))
    costs = torch.stack([supernet.expected_cost(r.double(), metric) for r in rows]).to(rows.dtype)
    return (costs - target.reshape(-1).to(costs)) ** 2


def fit_resource(generator: ArchitectureGenerator, supernet, low: float, high: float, steps: int, lr: float = 1e-3,
                 batch: int = 32, noise: Optional[torch.Generator] = None, metric: str = "flops") -> List[float]:
    """Train the generator on the resource loss alone (targets uniform in ``[low, high]``), returning the mean
    loss per step: a warm start [R] (the paper trains it jointly from the start; a short CPU run would otherwise
    spend most of its steps with a generator that ignores ``C``). Deterministic given ``noise``."""
    optimizer = torch.optim.Adam(generator.parameters(), lr=lr)
    device = generator.target_in.weight.device
    history = []
    for _ in range(int(steps)):
        u = torch.rand(batch, generator=noise, dtype=torch.float64, device=HOST)
        rows, _ = generator(u.to(device), generator=noise)
        loss = resource_loss(supernet, rows, (low + u * (high - low)).to(device), metric).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(float(loss.detach()))
    return history


# --- matrix mapping ---------------------------------------------------------------------------------
def _pad_kernel(weight: torch.Tensor, size: int) -> torch.Tensor:
    pad = (size - weight.shape[-1]) // 2
    return F.pad(weight, (pad, pad, pad, pad))


class MaskMapping:
    """Runs an elastic MBConv supernet at its largest kernel / expand / depth with the sampled one-hots as
    nested masks (see the module docstring). ``with mapping.applied(rows): out = context.forward(x,
    path=mapping.execution_path(path))`` -- hooks exist only inside the ``with`` block."""

    def __init__(self, supernet):
        self.supernet = supernet
        blocks = [m for m in supernet.modules() if isinstance(m, ElasticMBConv)]
        if not blocks:
            raise CapabilityError(f"ShiftNAS' matrix mapping needs elastic MBConv blocks (nested kernel / expand / depth "
                                  f"choices); the {supernet.space.name} supernet has none")
        supernet.choice_points()  # resolves decision names to indices
        self.blocks: List[Tuple[ElasticMBConv, Dict[str, int]]] = []
        self.mapped: Dict[int, int] = {}  # decision -> the option the supernet runs (its largest)
        for block in blocks:
            roles = {role: d for role, d in zip(block.roles, block.decisions) if role in MAPPED_ROLES}
            if "depth" in roles and min(int(v) for v in block.options["depth"]) <= block.index and not block.residual:
                raise CapabilityError("a skippable MBConv block without an identity residual cannot be depth-masked")
            self.blocks.append((block, roles))
            for role, d in roles.items():
                values = [float(v) for v in block.options[role]]
                self.mapped[d] = max(range(len(values)), key=values.__getitem__)
        self._rows: Optional[torch.Tensor] = None

    def execution_path(self, path: Sequence[int]) -> Tuple[int, ...]:
        """The path the supernet runs: mapped decisions at their largest option, the others as sampled."""
        return tuple(self.mapped.get(d, int(o)) for d, o in enumerate(path))

    @contextlib.contextmanager
    def applied(self, rows: torch.Tensor) -> Iterator[None]:
        """Hooks that turn ``rows`` (decisions x options, straight-through one-hots) into masks."""
        self._rows = rows
        handles, overrides = [], []
        try:
            for block, roles in self.blocks:
                state: Dict[str, int] = {}
                handles.append(block.register_forward_pre_hook(self._remember_input(state)))
                if "kernel" in roles:
                    conv = block.depthwise.conv
                    conv.active_weight = self._kernel_mixture(conv, block, roles["kernel"])
                    overrides.append(conv)
                if "expand" in roles and block.expand is not None:
                    handles.append(block.depthwise.register_forward_hook(self._hidden_mask(block, roles["expand"], state)))
                if "depth" in roles and min(int(v) for v in block.options["depth"]) <= block.index:
                    handles.append(block.register_forward_hook(self._depth_gate(block, roles["depth"])))
            yield
        finally:
            for handle in handles:
                handle.remove()
            for conv in overrides:
                del conv.active_weight
            self._rows = None

    @staticmethod
    def _remember_input(state):
        def hook(module, inputs):
            state["in_channels"] = inputs[0].shape[1]
        return hook

    def _kernel_mixture(self, conv: DynamicConv2d, block: ElasticMBConv, decision: int):
        """``active_weight`` as ``sum_j y_j pad(W_j)``: each option's kernel (centre crop, or OFA's transformed
        one) padded to the largest, weighted by its one-hot entry."""
        kernels = [int(k) for k in block.options["kernel"]]
        rows = lambda: self._rows  # noqa: E731

        def active_weight(in_channels: int) -> torch.Tensor:
            size, total = conv.kernel_size, None
            try:
                for j, k in enumerate(kernels):
                    conv.kernel_size = k
                    term = rows()[decision, j].to(conv.weight) * _pad_kernel(DynamicConv2d.active_weight(conv, in_channels), size)
                    total = term if total is None else total + term
            finally:
                conv.kernel_size = size
            return total
        return active_weight

    def _hidden_mask(self, block: ElasticMBConv, decision: int, state):
        """Prefix masks of the hidden channels (after the depthwise BN + activation: channel ``c`` of the
        depthwise output depends on hidden channel ``c`` only, so masking there is exact)."""
        expands = [float(e) for e in block.options["expand"]]

        def hook(module, inputs, output):
            widths = torch.tensor([hidden_channels(state["in_channels"], e) for e in expands], device=output.device)
            masks = (torch.arange(output.shape[1], device=output.device)[:, None] < widths[None, :]).to(output)
            mask = masks @ self._rows[decision, :len(expands)].to(output)  # p' = M y
            return output * mask.view(1, -1, 1, 1)
        return hook

    def _depth_gate(self, block: ElasticMBConv, decision: int):
        """``x + g * branch(x)`` with ``g = sum_d y_d [d > index]``: the block runs iff the stage is deep enough."""
        runs = torch.tensor([float(int(d) > block.index) for d in block.options["depth"]], device=HOST)  # moved in the hook

        def hook(module, inputs, output):
            x = inputs[0]
            gate = (self._rows[decision, :len(runs)].to(output) * runs.to(output)).sum()
            return x + gate * (output - x)
        return hook
