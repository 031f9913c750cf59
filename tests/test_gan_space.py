"""EAGAN's GAN spaces (search_spaces/gan.py) and their supernets / stand-alone networks (gan_supernet.py)."""
import numpy as np
import pytest
import torch

from nastk.errors import ArchitectureError
from nastk.registry import get_space
from search_spaces.gan_supernet import FixedDiscriminator

SPACES = ("gan-g-digits", "gan-d-digits", "gan-g-cifar", "gan-d-cifar")


@pytest.mark.parametrize("name", SPACES)
def test_sampled_mutated_and_crossed_genotypes_are_valid_and_round_trip(name):
    space, rng = get_space(name), np.random.default_rng(0)
    for _ in range(30):
        a, b = space.sample(rng), space.sample(rng)
        assert space.from_str(space.to_str(a)) == a
        child = space.mutate(a, rng)
        assert child != a and sum(x != y for x, y in zip(space.matrix(a), space.matrix(child))) == 1  # one cell changed
        crossed = space.crossover(a, b, rng)
        for arch in (child, crossed):
            space.from_str(space.to_str(arch))  # valid (raises otherwise)
    assert len(space.matrix(a)) == (2 if "digits" in name else 3) and all(len(r) == 7 for r in space.matrix(a))


def test_validity_rules_are_one_clear_line():
    g, d = get_space("gan-g-digits"), get_space("gan-d-digits")
    with pytest.raises(ArchitectureError, match=r"cell 2 .*edges 2 and 3 .* both none"):
        g.from_str("0,0,3,0,1,0,0/0,0,0,0,1,1,1")
    with pytest.raises(ArchitectureError, match=r"cell 1 .*edges 4, 5 and 6 .* all none"):
        g.from_str("0,0,3,0,0,0,0/0,0,3,3,1,1,1")
    with pytest.raises(ArchitectureError, match=r"edges 3 and 4 .* both none"):
        d.from_str("1,1,1,0,0,-1,-1/1,1,1,1,1,0,0")
    with pytest.raises(ArchitectureError, match="inactive"):  # down-sampling off, so no shortcut op
        d.from_str("1,1,1,1,1,-1,3/1,1,1,1,1,0,0")
    with pytest.raises(ArchitectureError, match="c1_op0"):  # element 0 of a D cell is never none
        d.from_str("0,1,1,1,1,-1,-1/1,1,1,1,1,0,0")
    with pytest.raises(ArchitectureError, match="expected 2 rows"):
        g.from_str("0,0,3,3,1,1,1")
    with pytest.raises(ArchitectureError, match="not an integer"):
        g.from_str("0,0,x,3,1,1,1/0,0,3,3,1,1,1")
    with pytest.raises(ArchitectureError, match="c1_up0"):
        g.from_str("3,0,3,3,1,1,1/0,0,3,3,1,1,1")


@pytest.mark.parametrize("name", ("gan-g-digits", "gan-d-digits"))
def test_the_supernet_on_a_path_computes_the_stand_alone_network_it_extracts(name, one_torch_thread):
    space, rng = get_space(name), np.random.default_rng(1)
    generator = name.startswith("gan-g")
    supernet = space.supernet(width=4, latent_per_cell=3) if generator else space.supernet(width=4)
    for _ in range(4):
        arch = space.sample(rng)
        net = supernet.extract(arch)
        assert type(net).__name__ == ("Generator" if generator else "Discriminator")
        supernet.set_active(arch)
        x = torch.randn(5, supernet.latent_dim) if generator else torch.rand(5, 1, 8, 8) * 2 - 1
        supernet.eval(), net.eval()
        assert torch.equal(supernet(x), net(x))
        built = space.build(arch, width=4, **({"latent_per_cell": 3} if generator else {}))
        assert sum(p.numel() for p in built.parameters()) == sum(p.numel() for p in net.parameters())
    if generator:
        out = supernet(torch.randn(3, supernet.latent_dim))
        assert out.shape == (3, 1, 8, 8) and out.abs().max() <= 1


def test_cifar_generator_upsamples_4_to_32_and_the_latent_is_split_per_cell(one_torch_thread):
    space = get_space("gan-g-cifar")
    arch = space.sample(np.random.default_rng(2))
    net = space.build(arch, width=8, latent_per_cell=5)
    assert net.latent_dim == 15 and [tuple(l.weight.shape) for l in net.latent] == [(4 * 4 * 8, 5), (8 * 8 * 8, 5),
                                                                                     (16 * 16 * 8, 5)]
    assert net(torch.randn(2, 15)).shape == (2, 3, 32, 32)
    d = get_space("gan-d-cifar").build(get_space("gan-d-cifar").sample(np.random.default_rng(3)), width=8)
    assert d(torch.rand(2, 3, 32, 32)).shape == (2, 1)


def test_discriminators_are_spectrally_normalised(one_torch_thread):
    space = get_space("gan-d-digits")
    d = space.build(space.from_str("3,3,3,3,3,2,2/3,3,3,3,3,-1,-1"), width=4)
    normalised = [m for m in d.modules() if hasattr(m, "parametrizations")]
    assert len(normalised) == 1 + 2 * 5 + 2 + 1  # stem, every conv of the cells, the down convs, the linear
    fixed = FixedDiscriminator(1, 8)
    assert fixed(torch.rand(4, 1, 8, 8)).shape == (4, 1)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in fixed.modules()) == 3  # log2(8) stride-2 convs
    assert sum(isinstance(m, torch.nn.Conv2d) for m in FixedDiscriminator(3, 32).modules()) == 5
