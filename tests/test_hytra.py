"""The HyTra space (methods.md 10.1): restricted paths, every op and sampled paths at 64x64, both attentions."""
import math

import numpy as np
import pytest
import torch

from nastk.errors import ArchitectureError
from nastk.space import get_space
from search_spaces.hytra import (BOSSNET_T0, OPTIONS, SCALE, HyTraOp, MultiHeadSelfAttention, in_widths,
                                 restricted_paths, scaled)

WIDTH_MULT = 1 / 16


@pytest.fixture(scope="module")
def space():
    return get_space("hytra")


def test_restricted_paths_follow_the_resolution_rules(space):
    assert [len(restricted_paths(s)) for s in (56, 28, 14, 7)] == [51, 99, 80, 16]  # BossNAS: 51 / 105 / 80 / 16
    rng = np.random.default_rng(0)
    for _ in range(20):
        arch = space.sample(rng)
        assert space.check(arch) is arch and space.from_str(space.to_str(arch)) == arch
        assert space.check(space.mutate(arch, rng)) and space.check(space.crossover(arch, space.sample(rng), rng))
    assert all(space.is_valid(n) for n in space.neighbors(arch)) and space.neighbors(arch)
    assert space.to_str(space.from_str(BOSSNET_T0)) == BOSSNET_T0
    with pytest.raises(ArchitectureError, match="resolution never increases"):
        space.from_str(",".join(["conv28", "conv56"] + ["conv56"] * 14))
    with pytest.raises(ArchitectureError, match="resolution never increases"):
        space.from_str(",".join(["conv14"] * 16))  # 56 -> 14 skips a step


@pytest.mark.parametrize("option", range(len(OPTIONS)))
def test_every_op_runs_forward_and_backward_at_64x64_in_both_entries(option, one_torch_thread):
    base = 64 // 32  # the size of scale 7 at a 64x64 input
    same, down = in_widths(3, option, WIDTH_MULT)
    op = HyTraOp(option, same, down, WIDTH_MULT, "standard")
    out_width, size = scaled({7: 2048, 14: 1024, 28: 512, 56: 256}[SCALE[option]], WIDTH_MULT), base * SCALE[option] // 7
    for kind, c_in, in_size in (("same", same, size), ("down", down, 2 * size)):
        if c_in is None:
            continue
        x = torch.randn(2, c_in, in_size, in_size, requires_grad=True)
        y = op(x, down=kind == "down")
        assert y.shape == (2, out_width, size, size)
        y.square().mean().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()


def test_attention_variants_match_their_formulas():
    torch.manual_seed(0)
    standard = MultiHeadSelfAttention(8, 2, "standard")
    transposed = MultiHeadSelfAttention(8, 2, "search_code_transposed")
    transposed.load_state_dict(standard.state_dict())
    x = torch.randn(1, 8, 3, 3)
    q, k, v = standard.qkv(x).reshape(1, 3, 2, 4, 9).unbind(1)
    a = torch.softmax(q.transpose(-1, -2) @ k / math.sqrt(4), dim=-1)  # a[i, j], rows sum to 1 over keys j
    expected_standard = (v @ a.transpose(-1, -2)).reshape(1, 8, 3, 3)  # out_i = sum_j a[i, j] v_j
    expected_transposed = (v @ a).reshape(1, 8, 3, 3)  # out_j = sum_i a[i, j] v_i
    assert torch.allclose(standard(x), expected_standard, atol=1e-6)
    assert torch.allclose(transposed(x), expected_transposed, atol=1e-6)
    assert not torch.allclose(standard(x), transposed(x))


def test_supernet_blocks_and_sampled_paths_at_64x64(space, one_torch_thread):
    torch.manual_seed(0)
    supernet = space.supernet(num_classes=10, width_mult=WIDTH_MULT)
    x = torch.randn(2, 3, 64, 64)
    rng = np.random.default_rng(1)
    for _ in range(2):
        arch = space.sample(rng)
        supernet.set_active(arch)
        for block in range(4):
            scale = SCALE[space.options_of(arch)[4 * block + 3]]
            features = supernet(x, block=block)
            assert features.shape[-1] == 2 * scale // 7 and supernet.adapter_factor(features) == scale // 7
        logits = supernet(x)
        assert logits.shape == (2, 10)
        logits.sum().backward()
        net = space.build(arch, num_classes=10, width_mult=WIDTH_MULT, attention="search_code_transposed")
        assert net(x).shape == (2, 10)


@pytest.mark.slow
def test_bossnet_t0_cost_at_224(space):
    cost = space.cost(space.from_str(BOSSNET_T0))
    assert 40 < cost["params_m"] < 80 and 4000 < cost["flops_m"] < 8000  # nastk's numbers: docs/results/bossnas_hytra.md
