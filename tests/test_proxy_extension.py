"""A researcher's own proxy, defined in this module: registered with ``register_proxy``, scored in the
built-ins' shared passes (no extra forward or backward), with another loss, and named as
``test_proxy_extension:NAME`` on the command line; bad names, functions and return values are one line."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from nastk.cli import main
from nastk.datasets import load_dataset
from nastk.errors import ConfigError, PluginError
from nastk.proxies import ProxySpec, compute_proxies, get_proxy, per_layer, register_proxy
from nastk.space import get_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_3x3~2|"
BUILTINS = ["snip", "grasp", "jacob_cov"]  # all three of the gradient pass


@register_proxy("activation_saliency", pass_name="gradient", needs=("activations",), needs_labels=True,
                layerwise=True, description="per layer sum |a * dL/da| over its Conv/Linear outputs")
def my_proxy(p):
    return per_layer(sum(((a * g).abs().sum() for a, g in zip(p.activations[name], p.activation_gradients[name])),
                         p.logits.new_zeros(())) for name in p.layer_names)


def not_a_proxy(p):  # a plain function: no proxy_spec, so it cannot be named as a proxy
    return 0.0


def _text(p):
    return "high"


def _short(p):
    return np.ones(2)


RETURNS_TEXT = ProxySpec("returns_text", "gradient", False, False, True, False, False, "bad", function=_text)
WRONG_LENGTH = ProxySpec("wrong_length", "static", False, False, True, False, True, "bad", function=_short)
UNKNOWN_NEED = ProxySpec("unknown_need", "gradient", False, False, True, False, False, "bad", function=_text,
                         needs=("hessian",))
NO_MODULE = ProxySpec("no_module", "static", False, False, True, False, False, "bad", function="no_such_pkg_xyz:f")
NO_PASS = ProxySpec("no_pass", "no_such_pass", False, False, True, False, False, "bad", function=_text)


@pytest.fixture(scope="module")
def batch():
    return load_dataset("digits").batch(8, seed=0)


def small_net():
    space = get_space("nb201")
    torch.manual_seed(0)
    return space.build(space.from_str(ARCH), 10, C=4, N=1)


class PassCounter:
    """Forward calls of the network (and of any copy a pass makes) and autograd backward calls."""

    def __init__(self, monkeypatch):
        self.forwards = self.backwards = 0
        grad = torch.autograd.grad

        def counted(*args, **kwargs):
            self.backwards += 1
            return grad(*args, **kwargs)

        monkeypatch.setattr(torch.autograd, "grad", counted)

    def model(self):
        model = small_net()
        model.register_forward_pre_hook(lambda *_: setattr(self, "forwards", self.forwards + 1))
        return model


def test_user_proxy_shares_the_pass_of_three_builtins(monkeypatch, batch):
    counter = PassCounter(monkeypatch)
    alone = compute_proxies(counter.model(), batch, BUILTINS, None)
    passes_alone = (counter.forwards, counter.backwards)
    counter.forwards = counter.backwards = 0
    together = compute_proxies(counter.model(), batch, BUILTINS + ["activation_saliency"], None)
    assert passes_alone == (1, 3)  # one forward; backward to the input, to the weights, H g
    assert (counter.forwards, counter.backwards) == passes_alone
    assert set(together.seconds) == {"gradient"}
    for name in BUILTINS:
        assert together.scores[name] == alone.scores[name], name
    values = together.layerwise["activation_saliency"]
    assert values.shape == (len(together.layer_names),) and (values > 0).any() and np.isfinite(values).all()
    assert together.scores["activation_saliency"] == pytest.approx(values.sum(), rel=1e-12)


def test_the_module_name_resolves_to_the_same_proxy(batch):
    assert get_proxy("test_proxy_extension:my_proxy") is get_proxy("activation_saliency")
    by_path = compute_proxies(small_net(), batch, ["test_proxy_extension:my_proxy"], "cpu").scores
    by_name = compute_proxies(small_net(), batch, ["activation_saliency"], "cpu").scores
    assert by_path["test_proxy_extension:my_proxy"] == by_name["activation_saliency"]


def test_a_regression_network_with_an_mse_loss():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 1)).double()
    x, y = torch.randn(10, 5, dtype=torch.float64), torch.randn(10, 1, dtype=torch.float64)
    scores = compute_proxies(model, (x, y), ["snip", "grad_norm", "activation_saliency"], None,
                             loss=nn.functional.mse_loss).scores
    weights = [model[0].weight, model[2].weight]
    grads = torch.autograd.grad(nn.functional.mse_loss(model(x), y), weights)
    weights = [w.detach() for w in weights]
    assert scores["snip"] == pytest.approx(float(sum((w * g).abs().sum() for w, g in zip(weights, grads))), rel=1e-12)
    assert scores["grad_norm"] == pytest.approx(float(sum(g.norm() for g in grads)), rel=1e-12)
    assert np.isfinite(scores["activation_saliency"]) and scores["activation_saliency"] > 0
    with pytest.raises(ConfigError, match="another loss"):
        compute_proxies(model, (x, y.long()), ["grad_sign"], None, loss=nn.functional.mse_loss)


def test_correlate_names_a_proxy_by_module_path(nastk_data, capsys, tmp_path):
    code = main(["proxies", "correlate", "--proxies", "test_proxy_extension:my_proxy,synflow", "--sample", "3",
                 "--batch-size", "8", "--C", "4", "--N", "1", "--no-progress", "--cache", str(tmp_path / "c.jsonl")])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"test_proxy_extension:my_proxy", "synflow"}
    assert out["test_proxy_extension:my_proxy"]["n"] == 3 and out["test_proxy_extension:my_proxy"]["nan"] == 0
    cached = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert {r["proxy"] for r in cached} == {"test_proxy_extension:my_proxy", "synflow"}


def test_a_user_proxy_as_the_search_evaluator(capsys, tmp_path):
    code = main(["search", "--space", "nb201", "--strategy", "random", "--evaluator",
                 "proxy:test_proxy_extension:my_proxy", "--dataset", "digits", "--budget", "2", "--C", "4", "--N", "1",
                 "--batch-size", "8", "--seed", "0", "--no-progress", "--format", "json",
                 "--run-dir", str(tmp_path / "r")])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    assert summary["evaluations"] == 2 and np.isfinite(summary["best_objective"])
    assert summary["evaluator"]["proxy"] == "test_proxy_extension:my_proxy"


@pytest.mark.parametrize("name, error, fragment", [
    ("test_proxy_extension:not_a_proxy", PluginError,
     "is the function test_proxy_extension.not_a_proxy, not a ProxySpec"),
    ("no_such_pkg_xyz:proxy", PluginError, "no module named 'no_such_pkg_xyz'"),
    ("test_proxy_extension:RETURNS_TEXT", PluginError, "returned str; a proxy function returns a float"),
    ("test_proxy_extension:WRONG_LENGTH", PluginError, "returned an array of shape (2,)"),
    ("test_proxy_extension:UNKNOWN_NEED", ConfigError, "needs 'hessian', which pass 'gradient' does not compute"),
    ("test_proxy_extension:NO_MODULE", PluginError, "no module named 'no_such_pkg_xyz'"),
    ("test_proxy_extension:NO_PASS", ConfigError, "computed by pass 'no_such_pass', which is not registered"),
])
def test_bad_proxies_are_one_clear_error(batch, name, error, fragment):
    with pytest.raises(error) as raised:
        compute_proxies(small_net(), batch, [name], None)
    assert fragment in str(raised.value) and "\n" not in str(raised.value)


def test_bad_proxy_names_on_the_command_line_are_one_line(nastk_data, capsys):
    for name in ["test_proxy_extension:not_a_proxy", "no_such_pkg_xyz:proxy"]:
        code = main(["proxies", "correlate", "--proxies", f"snip,{name}", "--sample", "2", "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and name.split(":")[0] in err, err


def test_robot_computes_a_user_proxy_its_table_lacks(tmp_path, monkeypatch):
    from nastk.strategies.robot import RoBoT

    monkeypatch.setenv("NASTK_CACHE", str(tmp_path / "cache"))
    space = get_space("nb201")
    archs = [ARCH, "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
             "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"]
    table = tmp_path / "table.csv"
    table.write_text("arch_str,a\n" + "".join(f"{arch},{i}\n" for i, arch in enumerate(archs)))
    strategy = RoBoT(space, budget=2, dataset="digits", proxy_table=str(table),
                     proxies="a,test_proxy_extension:my_proxy")
    pool = strategy.pool
    assert pool.names == ["a", "test_proxy_extension:my_proxy"] and pool.archs == [space.from_str(a) for a in archs]
    computed = pool.normalised[:, 1]
    assert computed[1] == 0.0 and computed[2] == 1.0  # the all-none network scores lowest (0), min-max normalised
    assert (tmp_path / "cache" / "robot_proxies_nb201.jsonl").is_file()


def test_parzc_statistics_may_be_a_user_proxy(nastk_data):
    from nastk.predictors import layerwise_features as lw

    statistics = ("snip", "test_proxy_extension:my_proxy")
    extractor = lw.Extractor(seed=0, batch_size=8, C=4, N=1, statistics=statistics, device=None)
    rows = extractor(get_space("nb201").from_str(ARCH))
    assert set(rows) == set(statistics) and extractor.meta()["statistics"] == list(statistics)
    assert (np.isnan(rows["snip"]) == np.isnan(rows["test_proxy_extension:my_proxy"])).all()
    assert "statistics" not in lw.Extractor(seed=0, batch_size=8, C=4, N=1).meta()  # default pools: as before
    assert lw.cache_path(statistics=statistics) != lw.cache_path()
    with pytest.raises(ConfigError, match="jacob_cov is not layerwise"):
        lw.Extractor(seed=0, batch_size=8, C=4, N=1, statistics=("snip", "jacob_cov"))


def test_proxies_list_shows_a_registered_user_proxy(capsys):
    assert main(["proxies", "list", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows["activation_saliency"]["function"] == "test_proxy_extension:my_proxy"
    assert rows["activation_saliency"]["needs"] == ["activations"] and rows["activation_saliency"]["layerwise"]
    assert rows["grasp"]["function"] == "nastk.proxies.gradient:grasp" and rows["grasp"]["needs"] == ["hessian_gradient"]
