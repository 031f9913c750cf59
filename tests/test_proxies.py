"""Zero-cost proxies: registry, determinism, layer-wise values, GradSign, SynFlow overflow, NaN handling,
the proxy evaluator and cache, and the ``nastk proxies`` CLI. Small networks (C=8, N=1) on tiny batches."""
import json
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from nastk.cli import main
from nastk.datasets import load_dataset
from nastk.errors import ConfigError, UnknownNameError
from nastk.proxies import PROXIES, compute_proxies, get_proxy, nan_last, proxy_names
from nastk.proxies.gradsign import grad_sign_layerwise, resolve_method, sign_sums
from nastk.proxies.layers import weight_layers
from nastk.proxies.synflow import synflow_layerwise
from nastk.space import get_space

ALL = ["params", "flops", "grad_norm", "snip", "grasp", "fisher", "jacob_cov", "synflow", "nwot", "zen", "l2_norm",
       "plain", "epe_nas", "grad_sign", "grad_sign_mean", "fisher_channel_sum"]
ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_3x3~2|"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits_batch():
    x, y = load_dataset("digits").batch(16, seed=0)
    return x, y


def small_net(arch=ARCH, seed=0):
    space = get_space("nb201")
    torch.manual_seed(seed)
    return space.build(space.from_str(arch), 10, C=8, N=1)


@pytest.fixture(scope="module")
def all_scores(digits_batch):
    return compute_proxies(small_net(), digits_batch, ALL, device="cpu", seed=0)


def test_registry_and_metadata():
    assert set(ALL) <= set(proxy_names())
    assert get_proxy("synflow").removes_bn and not get_proxy("snip").removes_bn
    assert get_proxy("snip").needs_labels and not get_proxy("jacob_cov").needs_labels
    assert not get_proxy("params").needs_gradients and get_proxy("grasp").needs_gradients
    assert all(PROXIES.get(n).higher_is_better for n in ALL)
    with pytest.raises(UnknownNameError, match="known proxies"):
        get_proxy("nope")
    with pytest.raises(UnknownNameError):
        compute_proxies(small_net(), (torch.zeros(2, 3, 16, 16), None), ["nope"])


def test_every_proxy_finite_and_deterministic(digits_batch, all_scores):
    again = compute_proxies(small_net(), digits_batch, ALL, device=torch.device("cpu"), seed=0)
    for name in ALL:
        assert math.isfinite(all_scores.scores[name]), name
        assert all_scores.scores[name] == again.scores[name], name
    other = compute_proxies(small_net(seed=1), digits_batch, ["snip", "zen"], seed=1).scores
    assert other["snip"] != all_scores.scores["snip"] and other["zen"] != all_scores.scores["zen"]


def test_layerwise_values_sum_to_scores(all_scores):
    names = [n for n, _ in weight_layers(small_net())]
    assert all_scores.layer_names == names
    assert {n for n in ALL if get_proxy(n).layerwise} == set(all_scores.layerwise)
    for name, values in all_scores.layerwise.items():
        assert values.shape == (len(names),)
        assert values.sum() == pytest.approx(all_scores.scores[name], rel=1e-12), name


def test_shared_passes_equal_separate_passes(digits_batch, all_scores):
    for name in ["grad_norm", "snip", "fisher", "grasp", "jacob_cov", "nwot", "plain", "epe_nas"]:
        alone = compute_proxies(small_net(), digits_batch, [name]).scores[name]
        assert alone == pytest.approx(all_scores.scores[name], rel=1e-5), name


def test_snip_grasp_match_explicit_autograd():
    """snip = |W * dL/dW| and grasp = -W * (H g) against a Hessian built entry by entry."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5, bias=False), nn.Tanh(), nn.Linear(5, 3, bias=False)).double()
    x, y = torch.randn(6, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    scores = compute_proxies(model, (x, y), ["snip", "grasp"]).scores
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    shapes = [p.shape for p in model.parameters()]

    def loss(vector):
        a, b = vector[:20].view(shapes[0]), vector[20:].view(shapes[1])
        return nn.functional.cross_entropy(torch.tanh(x @ a.T) @ b.T, y)

    g = torch.autograd.functional.jacobian(loss, flat)
    h = torch.autograd.functional.hessian(loss, flat)
    assert scores["snip"] == pytest.approx(float((flat * g).abs().sum()), rel=1e-10)
    assert scores["grasp"] == pytest.approx(float(-(flat * (h @ g)).sum()), rel=1e-10)


def _reference_style_fisher(model, x, y):
    """fisher written the way its reference defines it, independently of nastk's pass: keep every
    Conv/Linear output's gradient, reduce each channel to 0.5 * mean_batch(sum_spatial a * g)^2, fill
    a tensor of the layer's per-channel weight shape with that value, and sum everything."""
    model.train()
    outputs = {}

    def keep(module, _inputs, out):
        out.retain_grad()
        outputs[module] = out

    hooks = [m.register_forward_hook(keep) for _, m in weight_layers(model)]
    nn.functional.cross_entropy(model(x), y).backward()
    for h in hooks:
        h.remove()
    total = 0.0
    for _, layer in weight_layers(model):
        a = outputs[layer]
        g_nk = (a * a.grad).sum(dim=tuple(range(2, a.dim()))) if a.dim() > 2 else a * a.grad
        per_channel = 0.5 * g_nk.pow(2).mean(0)
        total += float(torch.stack([torch.full(layer.weight.shape[1:], float(v)) for v in per_channel]).sum())
    model.zero_grad(set_to_none=True)
    return total


def test_fisher_is_the_reference_definition(digits_batch):
    """fisher spreads each channel's value over that channel's weights (layer l counts
    prod(W.shape[1:]) times); fisher_channel_sum is the unweighted sum, a different ranking."""
    model = small_net()
    scores = compute_proxies(model, digits_batch, ["fisher", "fisher_channel_sum"])
    assert scores.scores["fisher"] == pytest.approx(_reference_style_fisher(model, *digits_batch), rel=1e-5)
    counts = np.array([m.weight[0].numel() for _, m in weight_layers(model)])
    assert np.allclose(scores.layerwise["fisher"], scores.layerwise["fisher_channel_sum"] * counts, rtol=1e-12)
    assert (counts > 1).any() and scores.scores["fisher"] > scores.scores["fisher_channel_sum"]
    assert get_proxy("fisher").version == 2 and get_proxy("fisher_channel_sum").version == 1


def test_cache_never_serves_an_old_definition(tmp_path):
    """A cache line written under fisher's old definition (no version field) is not reused."""
    from nastk.evaluators.proxy import ProxyScorer
    space = get_space("nb201")
    arch = space.from_str(ARCH)
    cache = tmp_path / "scores.jsonl"
    scorer = ProxyScorer(space, "digits", batch_size=8, seed=0, cache_path=cache, build_options={"C": 8, "N": 1})
    key = {k: v for k, v in scorer._key("fisher", ARCH).items() if k != "version"}
    cache.write_text(json.dumps({**key, "score": -123.0, "seconds": 0.0}) + "\n")
    fresh = ProxyScorer(space, "digits", batch_size=8, seed=0, cache_path=cache, build_options={"C": 8, "N": 1})
    assert fresh.score(arch, ["fisher"])["fisher"]["score"] != -123.0


def test_grad_sign_methods_equal_loop_and_are_order_invariant():
    # float64 so that no gradient is within rounding error of zero (in float32, batched and
    # single-example convolutions round differently and may flip the sign of a ~1e-8 gradient)
    model = small_net().double()
    x, y = load_dataset("digits").batch(12, seed=1)
    x = x.double()
    assert resolve_method(model) == "hooks"
    looped = sign_sums(model, x, y, method="loop")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(3))
    for method, chunk, perm in [("hooks", None, None), ("hooks", 5, order), ("vmap", 5, None), ("vmap", 4, order)]:
        xs, ys = (x, y) if perm is None else (x[perm], y[perm])
        for a, b in zip(sign_sums(model, xs, ys, method=method, chunk=chunk), looped):
            assert torch.equal(a, b), (method, chunk)
    assert any(s.abs().sum() < len(x) * s.numel() for s in looped)  # not trivially all-agreeing
    score, count = grad_sign_layerwise(model, x, y)
    assert score.sum() == sum(int(s.abs().sum()) for s in looped)
    assert count == sum(m.weight.numel() for _, m in weight_layers(model))


class _Custom(nn.Module):
    """Stride/padding/dilation/groups convs, BatchNorm1d on (N, C, L), BN without affine, a Linear on
    (N, L, C), a layer called twice, in-place ReLUs on conv outputs and a layer whose gradient is unused."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2, padding=2, dilation=2, bias=True)
        self.bn = nn.BatchNorm2d(6, affine=False)
        self.grouped = nn.Conv2d(6, 6, 3, padding=1, groups=3, bias=False)
        self.strided = nn.Conv2d(6, 6, 1, stride=2)
        self.bn1d = nn.BatchNorm1d(6)
        self.shared = nn.Linear(6, 6)
        self.unused = nn.Linear(6, 6)
        self.head = nn.Linear(6, 4, bias=False)

    def forward(self, x):
        h = self.bn(self.conv(x).relu_())
        h = self.strided(self.grouped(h).relu_()).flatten(2)  # (N, C, L)
        h = self.bn1d(h).transpose(1, 2)  # (N, L, C)
        h = self.shared(torch.tanh(self.shared(h))).mean(1)
        self.unused(h)
        return self.head(h)


def test_grad_sign_hooks_equal_loop_on_custom_net():
    torch.manual_seed(0)
    model = _Custom().double()
    x, y = torch.randn(7, 3, 9, 9, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0, 1, 2])
    assert resolve_method(model) == "hooks"
    hooked, looped = sign_sums(model, x, y, method="hooks", chunk=3), sign_sums(model, x, y, method="loop")
    for name, a, b in zip([n for n, _ in weight_layers(model)], hooked, looped):
        assert torch.equal(a, b), name
    assert looped[4].abs().sum() == 0 and looped[3].abs().sum() > 0  # unused layer: zeros; shared: counted
    assert model.bn.running_mean.abs().sum() == 0  # the caller's network is untouched


def test_grad_sign_method_choice_and_nan_gradients():
    conv1d = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Flatten(), nn.Linear(12, 2))
    assert resolve_method(conv1d) == "vmap"
    with pytest.raises(ConfigError, match="'hooks' supports"):
        resolve_method(conv1d, "hooks")
    with pytest.raises(ConfigError, match="unknown GradSign method"):
        resolve_method(conv1d, "fast")
    x, y = torch.randn(5, 2, 6), torch.tensor([0, 1, 0, 1, 1])
    for a, b in zip(sign_sums(conv1d, x, y), sign_sums(conv1d, x, y, method="loop")):
        assert torch.equal(a, b)
    class InPlace(nn.Module):  # modifies a layer's input after the layer used it
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 2)

        def forward(self, x):
            h = self.a(x)
            out = self.b(h)
            h.mul_(2.0)
            return out

    with pytest.raises(RuntimeError, match="modified in place"):
        sign_sums(InPlace(), torch.randn(2, 3), torch.tensor([0, 1]), method="hooks")
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 2, bias=False))
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    x[1, 0] = float("nan")  # one example's gradients are all NaN: it counts as 0
    for method in ("hooks", "loop"):
        expected = sign_sums(model, x[[0, 2, 3]], y[[0, 2, 3]], method=method)
        for a, b in zip(sign_sums(model, x, y, method=method), expected):
            assert torch.equal(a, b), method


def test_grad_sign_is_n_times_weights_when_all_signs_agree():
    """Positive inputs, all labels 0: dCE/dW has the same sign for every example, coordinate by coordinate."""
    torch.manual_seed(0)
    model = nn.Linear(7, 2, bias=False)
    n = 9
    x, y = torch.rand(n, 7) + 0.1, torch.zeros(n, dtype=torch.long)
    result = compute_proxies(model, (x, y), ["grad_sign", "grad_sign_mean"])
    assert result.scores["grad_sign"] == n * 14
    assert result.scores["grad_sign_mean"] == n
    assert result.scores["grad_sign_mean"] * 14 == result.scores["grad_sign"]


def test_grad_sign_mean_is_sum_over_weight_count(all_scores):
    count = sum(m.weight.numel() for _, m in weight_layers(small_net()))
    assert all_scores.scores["grad_sign_mean"] == pytest.approx(all_scores.scores["grad_sign"] / count, rel=1e-12)


def test_synflow_finite_where_float32_overflows():
    torch.manual_seed(0)
    blocks = [(nn.Linear(256, 256), nn.BatchNorm1d(256), nn.ReLU()) for _ in range(50)]
    model = nn.Sequential(*[layer for block in blocks for layer in block])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        naive = synflow_layerwise(model, (256,), dtype=torch.float32).sum()
    assert not np.isfinite(naive)
    result = compute_proxies(model, (torch.randn(4, 256), None), ["synflow"])
    assert math.isfinite(result.scores["synflow"]) and result.scores["synflow"] > 1e38
    assert all(torch.isfinite(p).all() and (p < 0).any() for p in model[0].parameters())  # caller's net untouched


def test_non_finite_scores_become_nan_with_warning_and_rank_last():
    x, _ = load_dataset("digits").batch(8, seed=0)
    dead = small_net("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")  # output ignores the input
    with pytest.warns(RuntimeWarning, match="jacob_cov.*NaN"):
        result = compute_proxies(dead, (x, None), ["jacob_cov", "synflow"])
    assert math.isnan(result.scores["jacob_cov"]) and math.isfinite(result.scores["synflow"])
    ranked = nan_last([0.5, float("nan"), -3.0, 2.0])
    assert list(np.argsort(-ranked)) == [3, 0, 2, 1]
    assert np.argmin(nan_last([1.0, float("nan")], higher_is_better=False)) == 1


def test_label_proxies_on_unlabeled_batch_fail_clearly():
    x, _ = load_dataset("digits").batch(8, seed=0)
    with pytest.raises(ConfigError, match="snip, grad_sign need labels"):
        compute_proxies(small_net(), (x, None), ["nwot", "snip", "grad_sign"])
    assert math.isfinite(compute_proxies(small_net(), (x, None), ["nwot", "zen"]).scores["nwot"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(digits_batch):
    names = ["snip", "synflow", "nwot", "grad_sign", "zen"]
    cpu = compute_proxies(small_net(), digits_batch, names, device="cpu").scores
    gpu = compute_proxies(small_net(), digits_batch, names, device="cuda").scores
    for name in names:
        assert gpu[name] == pytest.approx(cpu[name], rel=1e-3), name


def test_proxy_evaluator_result_and_cache(tmp_path, monkeypatch):
    from nastk.evaluators import proxy as module

    space = get_space("nb201")
    arch = space.from_str(ARCH)
    cache = tmp_path / "scores.jsonl"
    evaluator = module.ProxyEvaluator(space, "snip", dataset="digits", batch_size=8, seed=0, cache_path=cache,
                                      build_options={"C": 8, "N": 1})
    result = evaluator.evaluate(arch)
    assert result.objective == "snip" and math.isfinite(result.value) and result.cost_s > 0
    assert result.protocol["batch_size"] == 8 and result.protocol["dataset"] == "digits"
    assert json.loads(cache.read_text().splitlines()[0])["arch"] == ARCH

    def fail(*_args, **_kwargs):
        raise AssertionError("cached score was recomputed")

    import nastk.proxies.compute

    monkeypatch.setattr(nastk.proxies.compute, "compute_proxies", fail)
    again = module.ProxyEvaluator(space, "snip", dataset="digits", batch_size=8, seed=0, cache_path=cache,
                                  build_options={"C": 8, "N": 1})
    assert again.evaluate(arch).value == result.value
    with pytest.raises(UnknownNameError):
        module.ProxyEvaluator(space, "nope", dataset="digits")


def test_score_architectures_ranks_failures_last(tmp_path):
    from nastk.commands.proxies import sample_architectures
    from nastk.evaluators.proxy import score_architectures

    space = get_space("nb201")
    archs = sample_architectures(space, 3, seed=0) + [space.from_str("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")]
    with pytest.warns(RuntimeWarning):
        scored = score_architectures(space, archs, ["jacob_cov", "params"], dataset="digits", batch_size=8,
                                     build_options={"C": 8, "N": 1}, cache_path=tmp_path / "c.jsonl", progress=False)
    assert np.isnan(scored.scores["jacob_cov"][3]) and np.isfinite(scored.scores["jacob_cov"][:3]).all()
    assert np.argmin(nan_last(scored.scores["jacob_cov"])) == 3
    assert scored.arch_strs == [space.to_str(a) for a in archs]


def test_cli_proxies_list(capsys):
    assert main(["proxies", "list", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert set(ALL) <= set(rows) and rows["synflow"]["removes_bn"] is True
    assert main(["proxies", "list"]) == 0
    assert "grad_sign" in capsys.readouterr().out
    assert main(["proxies", "correlate", "--proxies", "snip,bogus"]) == 2
    assert "unknown proxy 'bogus'" in capsys.readouterr().err


def test_cli_proxies_correlate(nastk_data, capsys, tmp_path):
    code = main(["proxies", "correlate", "--space", "nb201", "--dataset", "cifar10", "--sample", "8",
                 "--proxies", "params,synflow,nwot,snip", "--seed", "0", "--batch-size", "16", "--C", "8", "--N", "1",
                 "--cache", str(tmp_path / "c.jsonl"), "--format", "json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"params", "synflow", "nwot", "snip"}
    for row in out.values():
        assert -1 <= row["spearman"] <= 1 and -1 <= row["kendall"] <= 1 and row["n"] == 8
