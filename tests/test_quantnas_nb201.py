"""The ``qnas-nb201`` space (QuantNAS over NB201 cells, issue 26): its (op, bits) decisions, the quantized child
network, BitOps by hand (final model and search time), the ``--bits`` restriction, the ``quantnas`` step on
labelled images (cross-entropy) with ``supernet select``, and its exact resume."""
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from nastk.datasets import ImageDataset
from nastk.errors import ArchitectureError, ConfigError
from nastk.oneshot.selection import select
from nastk.oneshot.trainer import OneShotConfig, OneShotTrainer
from nastk.quantization.quantnas import QuantConv, QuantLinear, model_bitops
from nastk.space import get_space
from search_spaces.nb201.constants import EDGES

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def labelled_images(count=48, size=8, seed=0) -> ImageDataset:
    """Random normalised images with 3 classes, each class a brightness offset (learnable, no download)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(count + 12) % 3
    x = torch.randn(count + 12, 3, size, size, generator=g) * 0.5 + (y.float() - 1).view(-1, 1, 1, 1)
    return ImageDataset("tiny-labelled", x[:count], y[:count], x[count:], y[count:], num_classes=3)


def nb201_config(**options):
    base = dict(space="qnas-nb201", step="quantnas", supernet={"C": 4, "N": 1, "bits": "2,4"}, epochs=2,
                train_size=32, batch_size=8, valid_size=8, eval_batch_size=8, augment=False, lr=1e-3,
                step_options={"arch_warmup_epochs": 0, "arch_lr": 0.05, "bitops_penalty": 0.5})
    return OneShotConfig(**{**base, **options})


def uniform_arch(space, option: str):
    return space.arch_of({f"{to}<-{source}": option for to, source in EDGES})


# --- the space --------------------------------------------------------------------------------------------------
def test_edges_are_op_bits_decisions_with_bits_only_on_convolutions():
    space = get_space("qnas-nb201")
    choices = space.get_choice_model().choices
    assert [c.name for c in choices] == ["1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2"]
    assert choices[0].options == ("none", "skip_connect", "nor_conv_1x1@2", "nor_conv_1x1@3", "nor_conv_1x1@4",
                                  "nor_conv_1x1@8", "nor_conv_3x3@2", "nor_conv_3x3@3", "nor_conv_3x3@4",
                                  "nor_conv_3x3@8", "avg_pool_3x3")
    arch = space.sample(np.random.default_rng(0))
    assert space.from_str(space.to_str(arch)) == arch
    for bad in ("skip_connect@4", "nor_conv_3x3@5", "nor_conv_3x3"):
        with pytest.raises(ArchitectureError):
            space.from_str(space.to_str(arch).replace(space.choices_of(arch)["1<-0"], bad, 1))


def test_child_quantizes_each_edge_at_its_bits_and_the_fixed_layers_at_8():
    space = get_space("qnas-nb201")
    arch = space.arch_of({"1<-0": "nor_conv_3x3@2", "2<-0": "nor_conv_1x1@4", "2<-1": "skip_connect",
                          "3<-0": "avg_pool_3x3", "3<-1": "none", "3<-2": "nor_conv_1x1@8"})
    net = space.build(arch, num_classes=10, C=4, N=1)
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    cells = [m for m in net.cells if hasattr(m, "edges")]
    assert len(cells) == 3
    for cell in cells:
        assert [op[1].bits if isinstance(op, torch.nn.Sequential) else None for op in cell.ops] == \
               [(2,), (4,), None, None, None, (8,)]
        assert cell.ops[0][2].affine and cell.ops[0][2].track_running_stats  # a child's BatchNorm
    assert not any(type(m) is torch.nn.Conv2d and not isinstance(p, QuantConv)
                   for p in net.modules() for m in p.children())  # no float conv is left
    assert net.stem[0].bits == (8,) and not net.stem[0].quantize_input  # the image as it comes
    assert isinstance(net.classifier, QuantLinear) and net.classifier.conv.bits == (8,)
    # a 2-bit edge quantizes its weights to at most 4 levels per channel (signed 2-bit integers)
    weight = cells[0].ops[0][1].quantized_weight(2)
    assert all(len(torch.unique(row)) <= 4 for row in weight.detach().flatten(1))


def test_final_bitops_by_hand():
    """Every edge nor_conv_1x1@4, C = 4, N = 1, an 8 x 8 image: MACs x b_w x b_a per quantized conv."""
    space = get_space("qnas-nb201")
    arch = uniform_arch(space, "nor_conv_1x1@4")
    cells = 6 * (4 * 4 * 64 + 8 * 8 * 16 + 16 * 16 * 4) * 16           # three stages: 8x8, 4x4, 2x2
    fixed = (3 * 4 * 9 * 64                                              # stem
             + 4 * 8 * 9 * 16 + 8 * 8 * 9 * 16 + 4 * 8 * 16             # reduction 1 (conv_a, conv_b, shortcut)
             + 8 * 16 * 9 * 4 + 16 * 16 * 9 * 4 + 8 * 16 * 4            # reduction 2
             + 16 * 10) * 64                                             # classifier
    model = space.build(arch, 10, C=4, N=1)
    assert model_bitops(model, (1, 3, 8, 8)) == cells + fixed
    cost = space.cost(arch, input_size=8, C=4, N=1)
    assert cost["bitops"] == cells + fixed and cost["bitops_m"] == pytest.approx((cells + fixed) / 1e6)
    assert space.cost(uniform_arch(space, "skip_connect"), input_size=8, C=4, N=1)["bitops"] == fixed


def test_search_bitops_are_linear_in_bits_over_the_cells_and_bits_restrict_the_options():
    space = get_space("qnas-nb201")
    supernet = space.supernet(C=4, N=1, bits="2,8")
    names = supernet.decisions[0].options
    assert [names[o] for o in np.flatnonzero(supernet.allowed[0])] == [
        "none", "skip_connect", "nor_conv_1x1@2", "nor_conv_1x1@8", "nor_conv_3x3@2", "nor_conv_3x3@8", "avg_pool_3x3"]
    flops, bits = supernet.search_flops()  # a 32 x 32 image: stages of 4 / 8 / 16 channels at 32 / 16 / 8 px
    conv1x1 = 2 * (4 * 4 * 1024 + 8 * 8 * 256 + 16 * 16 * 64)
    assert flops[0].tolist() == [0, 0] + [conv1x1] * 4 + [9 * conv1x1] * 4 + [0]
    assert bits[3].tolist() == [0, 0, 2, 3, 4, 8, 2, 3, 4, 8, 0]
    one_hot = torch.zeros(supernet.allowed.shape)
    one_hot[:, names.index("nor_conv_3x3@2")] = 1.0
    assert float(supernet.expected_cost(one_hot)) == pytest.approx(6 * 9 * conv1x1 * 2)
    supernet.init_arch_parameters()
    weights = supernet.mixture_weights()
    assert float(weights.detach()[:, ~supernet.allowed[0]].abs().sum()) == 0.0  # 3- and 4-bit options never weigh
    with pytest.raises(ConfigError, match="HWGQ's table"):
        space.supernet(C=4, N=1, bits="2,5")
    with pytest.raises(ConfigError, match="comma-separated"):
        space.supernet(C=4, N=1, bits="two")


# --- the quantnas step on labelled images ------------------------------------------------------------------------
def test_quantnas_searches_nb201_cells_with_cross_entropy_and_selects_allowed_bits():
    trainer = OneShotTrainer(nb201_config(), data=labelled_images(), progress=False)
    assert trainer.loss is F.cross_entropy  # the labelled data module's loss, not SR's L1
    alpha = trainer.supernet.arch_logits.detach().clone()
    history = trainer.fit()
    assert not torch.equal(alpha, trainer.supernet.arch_logits.detach())
    assert trainer.step.bitops_init > 0 and history[-1]["train_bitops_ratio"] < 1.0  # eta pushes BitOps down
    assert history[-1]["train_acc"] is not None and history[-1]["test_acc"] is not None
    selection = select(trainer.supernet, "argmax")
    space = get_space("qnas-nb201")
    for option in space.choices_of(selection.arch).values():
        assert "@" not in option or option.split("@")[1] in ("2", "4")
    assert history[-1]["arch"] == selection.arch.to_str()


def test_quantnas_nb201_resume_is_exact(tmp_path):
    config, data = nb201_config(), labelled_images()
    straight = OneShotTrainer(config, tmp_path / "a", data=data, progress=False)
    straight.fit()
    first = OneShotTrainer(config, tmp_path / "b", data=data, progress=False)
    first.fit(until=1)
    resumed = OneShotTrainer(config, tmp_path / "b", data=data, progress=False)
    assert resumed.load_checkpoint() and resumed.epoch == 1
    resumed.fit()
    a, b = straight.supernet.state_dict(), resumed.supernet.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(straight.supernet.arch_logits, resumed.supernet.arch_logits)
    assert straight.history[-1]["train_loss"] == resumed.history[-1]["train_loss"]
