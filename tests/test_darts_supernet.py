"""The DARTS search supernet: decisions, execution modes, genotype paths, DARTS' discretization, training."""
import numpy as np
import pytest
import torch

from nastk.errors import ArchitectureError, ConfigError
from nastk.oneshot.trainer import OneShotConfig, OneShotTrainer
from nastk.space import get_space
from search_spaces.darts import CELLS, NODES
from search_spaces.darts.ops import PRIMITIVES
from search_spaces.darts.supernet import EDGES, edge_decision

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DARTS_V2 = ("normal:sep3@0,sep3@1|sep3@0,sep3@1|skip@0,sep3@1|skip@0,dil3@2;"
            "reduce:max3@0,max3@1|max3@1,skip@2|max3@0,skip@2|max3@1,skip@2")
#: no pools (the search model's pools carry a BN the stand-alone network lacks); stride-2 skips
NO_POOLS = ("normal:sep3@0,sep3@1|sep3@0,sep3@1|skip@0,sep3@1|skip@0,dil3@2;"
            "reduce:sep5@0,dil5@1|skip@1,sep3@2|skip@0,dil3@2|sep3@1,dil5@4")


@pytest.fixture(scope="module")
def darts():
    return get_space("darts")


def tiny(darts, seed=0, **options):
    torch.manual_seed(seed)
    return darts.supernet(10, **{"C": 4, "layers": 3, **options})


def test_decisions_capability_and_weights(darts):
    supernet = tiny(darts)
    assert "supernet" in darts.capabilities
    assert len(supernet.decisions) == 28 and supernet.allowed.shape == (28, 8)
    names = [d.name for d in supernet.decisions]
    assert names[:3] == ["normal_2<-0", "normal_2<-1", "normal_3<-0"] and names[13] == "normal_5<-4"
    assert names[14] == "reduce_2<-0" and names[-1] == "reduce_5<-4"
    assert all(d.options == PRIMITIVES and d.options[0] == "none" for d in supernet.decisions)
    assert names.index("reduce_4<-2") == edge_decision("reduce", 4, 2)
    assert supernet.weights() == list(supernet.parameters())
    alpha = supernet.init_arch_parameters()
    assert alpha.shape == (28, 8) and all(p is not alpha for p in supernet.weights())
    assert len(supernet.weights()) == len(list(supernet.parameters())) - 1
    with pytest.raises(ConfigError, match="at least 3 cells"):
        darts.supernet(10, C=4, layers=2)


@pytest.mark.parametrize("layers,size", [(3, 16), (5, 32)])
def test_forward_shapes_in_every_mode(darts, layers, size):
    supernet = tiny(darts, layers=layers)
    x = torch.randn(2, 3, size, size)
    supernet.set_active(darts.from_str(DARTS_V2))
    assert supernet.mode == "single" and supernet(x).shape == (2, 10)
    supernet.init_arch_parameters()
    supernet.set_mixture(supernet.mixture_weights())
    assert supernet.mode == "mixture" and supernet(x).shape == (2, 10)
    supernet.set_mixture(supernet.mixture_weights(), fixed={0: 4})
    assert supernet.mode == "partial" and supernet(x).shape == (2, 10)


def test_path_of_arch_and_arch_of_path_are_inverse(darts):
    supernet = tiny(darts)
    rng = np.random.default_rng(0)
    for arch in [darts.from_str(DARTS_V2)] + [darts.sample(rng) for _ in range(5)]:
        choices = supernet.path_of_arch(arch)
        assert len(choices) == 28 and sum(c != 0 for c in choices) == 16
        assert supernet.arch_of_path(choices) == arch
    v2 = supernet.path_of_arch(darts.from_str(DARTS_V2))
    assert v2[edge_decision("normal", 5, 2)] == PRIMITIVES.index("dil_conv_3x3")
    assert v2[edge_decision("normal", 5, 1)] == 0 and v2[edge_decision("reduce", 2, 0)] == 1
    broken = list(v2)
    broken[edge_decision("reduce", 4, 1)] = 3  # node 4 now has three inputs
    with pytest.raises(ArchitectureError, match="reduce node 4 has 3 non-none inputs") as info:
        supernet.arch_of_path(broken)
    assert "\n" not in str(info.value)
    broken = list(v2)
    broken[edge_decision("normal", 3, 0)] = 0
    with pytest.raises(ArchitectureError, match="normal node 3 has 1 non-none"):
        supernet.arch_of_path(broken)
    with pytest.raises(ArchitectureError):
        supernet.arch_of_path(v2[:-1])


def test_single_path_equals_one_hot_mixture_and_touches_only_used_edges(darts):
    supernet = tiny(darts)
    x = torch.randn(3, 3, 16, 16)
    arch = darts.from_str(DARTS_V2)
    choices = supernet.set_active(arch)
    single = supernet(x)
    single.square().sum().backward()
    for cell in supernet.cells:
        for edge in cell.edges:
            for option, op in enumerate(edge.candidates):
                grads = [p.grad for p in op.parameters()]
                if option == choices[edge.decision] and grads:
                    assert all(g is not None for g in grads)
                else:
                    assert all(g is None for g in grads)
    assert all(p.grad is not None for p in supernet.shared_parameters())

    alpha = torch.zeros(28, 8, requires_grad=True)
    supernet.set_mixture(torch.nn.functional.one_hot(torch.tensor(choices), 8).float() + 0 * alpha)
    mixed = supernet(x)
    assert torch.allclose(mixed, single, atol=1e-5)
    mixed.sum().backward()
    assert alpha.grad is not None


def test_single_path_computes_the_stand_alone_network(darts):
    """With copied weights a genotype's path equals DartsNetwork (affine BN, a genotype without pools)."""
    arch = darts.from_str(NO_POOLS)
    supernet = tiny(darts, affine=True)
    with torch.no_grad():
        for p in supernet.parameters():
            p.normal_(0, 0.3)
    net = darts.build(arch, 10, C=4, layers=3)
    cells = darts._cells(arch)
    ours = supernet.state_dict()
    mapped = {}
    for key in net.state_dict():
        parts = key.split(".")
        if parts[0] == "cells" and parts[2] == "ops":
            k, position = int(parts[1]), int(parts[3])
            op, source = cells["reduce" if net.cells[k].reduction else "normal"][position]
            edge = EDGES.index((NODES[position // 2], source))
            parts[2:4] = ["edges", str(edge), "candidates", str(PRIMITIVES.index(op))]
        mapped[key] = ours[".".join(parts)]
    net.load_state_dict(mapped)
    supernet.set_active(arch)
    x = torch.randn(3, 3, 16, 16)
    assert torch.allclose(supernet(x), net(x), atol=1e-5)


def test_candidate_parameters_partition_the_weights(darts):
    supernet = tiny(darts, layers=5)  # reduction cells 1 and 3, normal cells 0, 2, 4
    owned = supernet.candidate_parameters()
    for cell, cells in (("normal", 3), ("reduce", 2)):
        for node, source in EDGES:
            d = edge_decision(cell, node, source)
            for option, op in enumerate(PRIMITIVES):
                count = len(owned[(d, option)])
                if op.startswith("sep_conv"):
                    assert count == 4 * cells  # 2 x (depthwise, pointwise); BN has no parameters
                elif op.startswith("dil_conv"):
                    assert count == 2 * cells
                elif op == "skip_connect" and cell == "reduce" and source < 2:
                    assert count == 2 * cells  # FactorizedReduce's two convs
                else:  # none, pools (BN affine=False), identity
                    assert count == 0, (cell, node, source, op)
    ids = [id(p) for params in owned.values() for p in params] + [id(p) for p in supernet.shared_parameters()]
    assert len(set(ids)) == len(ids) and sorted(ids) == sorted(id(p) for p in supernet.weights())
    shared = {id(p) for p in supernet.shared_parameters()}
    assert {id(p) for p in supernet.stem.parameters()} <= shared
    assert {id(p) for p in supernet.cells[1].preprocess0.parameters()} <= shared


def _favouring(darts, supernet, text, none_logit=6.0):
    """Logits whose softmax prefers the genotype's op on its edges and ``none`` everywhere."""
    logits = torch.zeros(28, 8)
    logits[:, 0] = none_logit
    for d, option in enumerate(supernet.path_of_arch(darts.from_str(text))):
        if option:
            logits[d, option] = 3.0
    return logits


def test_export_recovers_the_favoured_genotype_and_never_none(darts):
    supernet = tiny(darts)
    arch = darts.from_str(DARTS_V2)
    logits = _favouring(darts, supernet, DARTS_V2)
    assert supernet.export(supernet.masked_softmax(logits)) == arch
    supernet.init_arch_parameters()
    with torch.no_grad():
        supernet.arch_logits.copy_(logits)
    assert supernet.export() == arch
    assert supernet.export(supernet.mixture_weights(weighting="max_w")) == arch

    # DARTS' rule written out with numpy on random weights whose none is largest on every edge
    rng = np.random.default_rng(1)
    for _ in range(5):
        weights = rng.random((28, 8))
        weights[:, 0] += 1.0
        expected = [0] * 28
        for cell in CELLS:
            for node in NODES:
                rows = [edge_decision(cell, node, source) for source in range(node)]
                for row in sorted(rows, key=lambda r: -weights[r, 1:].max())[:2]:
                    expected[row] = 1 + int(weights[row, 1:].argmax())
        choices = supernet.discretize(torch.as_tensor(weights))
        assert list(choices) == expected
        supernet.arch_of_path(choices)  # a genotype

    # a disallowed option is never exported: the second-best op of that edge is taken instead
    d = edge_decision("normal", 2, 0)  # node 2 has only its two edges, so this edge is kept
    logits[d, 7] = 2.0
    child, _ = supernet.split(d, [[0, 1, 2, 3, 5, 6, 7], [4]])
    assert child.discretize(child.masked_softmax(logits))[d] == 7
    assert supernet.discretize(supernet.masked_softmax(logits))[d] == 4


def test_batch_statistics_option(darts):
    supernet = tiny(darts, track_running_stats=False)
    supernet.set_active(darts.from_str(DARTS_V2))
    x = torch.randn(4, 3, 16, 16)
    train = supernet(x)
    supernet.eval()
    assert torch.allclose(supernet(x), train, atol=1e-6)
    assert not any("running" in key for key in supernet.state_dict())


@pytest.mark.parametrize("step_options", [{}, {"order": 2}, {"weighting": "max_w"}])
def test_darts_steps_move_alpha_and_log_a_genotype(darts, step_options):
    config = OneShotConfig(space="darts", dataset="digits", step="darts", step_options=step_options,
                           supernet={"C": 4, "layers": 3}, epochs=1, train_size=64, batch_size=16,
                           valid_size=0, augment=False)
    trainer = OneShotTrainer(config, progress=False)
    before = trainer.supernet.arch_logits.detach().clone()
    history = trainer.fit()
    assert not torch.equal(trainer.supernet.arch_logits.detach(), before)
    assert history[-1]["steps"] == 2
    arch = darts.from_str(history[-1]["arch"])
    assert arch == trainer.supernet.export()
