"""The typed choice model (nastk.choices) and what SearchSpace derives from it."""
import itertools

import numpy as np
import optuna
import pytest
import torch
from torch import nn

from nastk.architecture import Architecture
from nastk.choices import Categorical, ChoiceModel, ChooseK, Condition, Integer, Ordered
from nastk.errors import ArchitectureError, CapabilityError, ConfigError, NastkError
from nastk.evaluator import Evaluator, Result
from nastk.registry import SPACES, get_space
from nastk.run_folder import run_search
from nastk.space import SearchSpace
from nastk.strategy import make_strategy


def conditional_model() -> ChoiceModel:
    """A depth choice switching later layers off, an ordered and an integer choice, and a choose-k."""
    return ChoiceModel([
        Integer("depth", 1, 3),
        Ordered("kernel1", (3, 5, 7)),
        Ordered("kernel2", (3, 5, 7), active_if=Condition("depth", (2, 3))),
        Categorical("act3", ("relu", "gelu"), active_if=Condition("depth", (3,))),
        ChooseK("skips", ("a", "b", "c"), 2),
        Integer("width", 8, 10, active_if=Condition("skips", [("a", "c")])),
    ])


def all_valid(model):
    """Brute force: every tuple over (options or None) per choice that validates."""
    found = []
    for values in itertools.product(*[list(c.options) + [None] for c in model.choices]):
        try:
            found.append(model.validate(values))
        except ArchitectureError:
            pass
    return found


def one_change_apart(model, a, b):
    """Exactly one choice active in both differs (choices switched on or off by it may differ)."""
    return sum(x is not None and y is not None and x != y for x, y in zip(a, b)) == 1


# --- choice types ------------------------------------------------------------------------------------
def test_each_choice_type():
    op = Categorical("op", ("conv", "pool", 2))
    assert op.options == ("conv", "pool", 2) and op.canonical(np.int64(2)) == 2
    kernel = Ordered("kernel", (3, 5, 7))
    assert (kernel.smallest, kernel.largest) == (3, 7) and kernel.canonical(5.0) == 5
    depth = Integer("depth", 2, 4)
    assert list(depth.options) == [2, 3, 4] and (depth.smallest, depth.largest) == (2, 4)
    assert depth.canonical(np.int32(3)) == 3 and type(depth.canonical(np.int32(3))) is int
    inputs = ChooseK("inputs", (0, 1, 2, 3), 2)
    assert inputs.options == tuple(itertools.combinations((0, 1, 2, 3), 2)) and inputs.items == (0, 1, 2, 3)
    assert inputs.canonical([3, 1]) == (1, 3)  # any order in, the pool's order out
    model = ChoiceModel([op, kernel, depth, inputs])
    vector = model.encode(("pool", 5, 4, (3, 1)))
    assert vector.dtype == np.float32 and model.encoding_length == 3 + 1 + 1 + 4
    assert vector.tolist() == [0, 1, 0, 0.5, 1.0, 0, 1, 0, 1]
    assert model.largest() == ("conv", 7, 4, (0, 1)) and model.smallest() == ("conv", 3, 2, (0, 1))


def test_conditions_switch_later_choices_off():
    model = conditional_model()
    assert model.validate((1, 3, None, None, ("a", "b"), None)) == (1, 3, None, None, ("a", "b"), None)
    assert model.validate((3, 7, 5, "gelu", ("c", "a"), 9)) == (3, 7, 5, "gelu", ("a", "c"), 9)
    with pytest.raises(ArchitectureError, match="'kernel2' is inactive \\(depth=1\\) and must be None, got 5"):
        model.validate((1, 3, 5, None, ("a", "b"), None))
    with pytest.raises(ArchitectureError, match="'act3' is active but has no value"):
        model.validate((3, 3, 5, None, ("a", "b"), None))
    assert model.largest() == (3, 7, 7, "relu", ("a", "b"), None)
    assert model.smallest() == (1, 3, None, None, ("a", "b"), None)


def test_size_and_enumerate_agree_with_brute_force():
    model = conditional_model()
    valid = all_valid(model)
    listed = list(model.enumerate())
    # depth: 3 + 3*3 + 3*3*2 = 30 layer settings; skips: 2 without width + ("a","c") x 3 widths = 5
    assert model.size() == len(valid) == len(listed) == len(set(listed)) == 30 * 5
    assert set(listed) == set(valid)


def test_validation_errors_are_one_line_nastk_errors():
    bad_models = [
        lambda: ChoiceModel([]),
        lambda: ChoiceModel([Categorical("x", (1, 2)), Categorical("x", (3,))]),
        lambda: ChoiceModel([Categorical("y", (1,), active_if=Condition("x", (1,))), Categorical("x", (1, 2))]),
        lambda: ChoiceModel([Categorical("x", (1, 2)), Categorical("y", (1,), active_if=Condition("x", (5,)))]),
        lambda: Categorical("x", ()),
        lambda: Categorical("x", (1, 1)),
        lambda: Categorical("x", "abc"),
        lambda: Categorical("a,b", (1, 2)),
        lambda: Ordered("k", (5, 3)),
        lambda: Ordered("k", ("a", "b")),
        lambda: Integer("n", 3, 1),
        lambda: ChooseK("c", (1, 2, 3), 4),
        lambda: ChooseK("c", (1, 2, 3), 0),
        lambda: Condition("x", 3),
    ]
    for make in bad_models:
        with pytest.raises(ConfigError) as error:
            make()
        assert "\n" not in str(error.value) and str(error.value)
    model = conditional_model()
    for values, fragment in [((4, 3, None, None, ("a", "b"), None), "'depth': 4"),
                             ((1, 4, None, None, ("a", "b"), None), "'kernel1': 4"),
                             ((1, 3, None, None, ("a", "a"), None), "'skips'"),
                             ((1, 3), "6 choice values")]:
        with pytest.raises(ArchitectureError, match=fragment) as error:
            model.validate(values)
        assert isinstance(error.value, NastkError) and "\n" not in str(error.value)


# --- operators ---------------------------------------------------------------------------------------
def test_neighbors_are_complete_and_one_change_away():
    model = conditional_model()
    valid = all_valid(model)
    for values in valid[::7]:
        neighbors = model.neighbors(values)
        assert len(neighbors) == len(set(neighbors)) and neighbors == model.neighbors(values)
        assert set(neighbors) == {w for w in valid if one_change_apart(model, values, w)}


def test_mutate_changes_exactly_one_active_choice_and_crossover_is_valid():
    model = conditional_model()
    rng = np.random.default_rng(0)
    for _ in range(300):
        a, b = model.sample(rng), model.sample(rng)
        assert model.validate(a) == a
        child = model.mutate(a, rng)
        assert one_change_apart(model, a, child) and model.validate(child) == child
        mixed = model.crossover(a, b, rng)
        assert model.validate(mixed) == mixed
        assert all(m in (x, y) for m, x, y in zip(mixed, a, b) if x is not None and y is not None)


def test_encode_has_a_fixed_length_and_zeros_for_inactive_choices():
    model = conditional_model()
    vectors = [model.encode(v) for v in model.enumerate()]
    assert {len(v) for v in vectors} == {model.encoding_length} == {1 + 1 + 1 + 2 + 3 + 1}
    assert all(((v >= 0) & (v <= 1)).all() for v in vectors)
    shallow = model.encode((1, 3, None, None, ("a", "b"), None))
    assert shallow.tolist() == [0, 0, 0, 0, 0, 1, 1, 0, 0]  # depth, kernel1, kernel2, act3 x2, skips x3, width
    assert len({v.tobytes() for v in vectors}) == len(vectors)


def test_text_codec_round_trips_and_names_problems():
    model = conditional_model()
    for values in model.enumerate():
        assert model.parse(model.format(values)) == values
    assert model.format((3, 7, 5, "gelu", ("a", "c"), 9)) == "depth=3,kernel1=7,kernel2=5,act3=gelu,skips=a+c,width=9"
    assert model.parse("skips=a+b, depth=1,kernel1=3") == (1, 3, None, None, ("a", "b"), None)
    for text, fragment in [("depth=1,kernel1=3", "lacks active choice 'skips'"),
                           ("depth=1,kernel1=3,kernel2=3,skips=a+b", "'kernel2' is inactive"),
                           ("depth=1,kernel1=3,skips=a+b,colour=red", "unknown choice 'colour'"),
                           ("depth=1,depth=2", "appears twice"), ("depth", "not name=value"),
                           ("depth=9,kernel1=3,skips=a+b", "'depth': 9"), ("", "expected")]:
        with pytest.raises(ArchitectureError, match=fragment):
            model.parse(text)


def test_optuna_tpe_suggests_conditional_choices():
    model = conditional_model()
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5), direction="maximize")
    distributions = {}
    for _ in range(20):
        trial = study.ask()
        values = model.suggest(trial)
        assert model.validate(values) == values
        assert set(trial.params) == {c.name for c, v in zip(model.choices, values) if v is not None}
        for name, distribution in trial.distributions.items():
            assert distributions.setdefault(name, distribution) == distribution  # one per name, every call
        study.tell(trial, float(model.encode(values).sum()))
    assert len(study.trials) == 20 and set(distributions) == set(model.names)


# --- a user's space in a few lines ---------------------------------------------------------------------
class MLPSpace(SearchSpace):
    name = "test-mlp"

    def choice_model(self):
        return ChoiceModel([Integer("layers", 1, 3), Ordered("width", (8, 16, 32)), Categorical("act", ("relu", "tanh")),
                            Ordered("width3", (4, 8), active_if=Condition("layers", (3,)))])

    def build(self, arch, num_classes=10, **options):
        c = self.choices_of(arch)
        act = nn.ReLU if c["act"] == "relu" else nn.Tanh
        widths = [c["width"]] * min(c["layers"], 2) + ([c["width3"]] if c["width3"] else [])
        layers, size = [nn.Flatten()], 3 * 8 * 8
        for width in widths:
            layers += [nn.Linear(size, width), act()]
            size = width
        return nn.Sequential(*layers, nn.Linear(size, num_classes))


class ChoiceScore(Evaluator):
    """A fake evaluator scoring from the choices (best: 3 layers, width 16, tanh, width3 8)."""

    def evaluate(self, arch):
        c = get_space(arch.space).choices_of(arch)
        return Result({"accuracy": c["layers"] - abs(c["width"] - 16) / 8 + (c["act"] == "tanh") + (c["width3"] or 0) / 8})


@pytest.fixture(scope="module")
def mlp_space():
    SPACES.register(MLPSpace.name, MLPSpace)  # architectures find their space through the registry
    return get_space(MLPSpace.name)


@pytest.mark.parametrize("strategy", ["random", "re", "bo-tpe"])
def test_user_space_runs_every_strategy_unchanged(mlp_space, strategy):
    outcome = run_search(make_strategy(strategy, mlp_space, seed=0), ChoiceScore(), 40)
    assert len(outcome.trials) == 40 and outcome.best_result.value >= 4.0
    assert mlp_space.from_str(outcome.trials[0].arch).to_str() == outcome.trials[0].arch


def test_user_space_gets_codec_capabilities_and_cost(mlp_space):
    assert mlp_space.capabilities == {"enumerate", "mutate", "neighbors", "crossover", "optuna", "build"}
    assert len(mlp_space) == 2 * 3 * 2 + 3 * 2 * 2 == len(list(mlp_space.enumerate()))
    arch = mlp_space.arch_of({"layers": 3, "width": 16, "act": "tanh", "width3": 8})
    assert arch.to_str() == "layers=3,width=16,act=tanh,width3=8" and Architecture.from_str(arch.to_str(), "test-mlp") == arch
    assert mlp_space.build(arch, 10)(torch.zeros(2, 3, 8, 8)).shape == (2, 10)
    params = (192 * 16 + 16) + (16 * 16 + 16) + (16 * 8 + 8) + (8 * 10 + 10)  # = multiply-adds of Linear layers
    assert mlp_space.cost(arch, 10, input_size=8) == {"params_m": params / 1e6, "flops_m": params / 1e6}
    with pytest.raises(ArchitectureError, match="test-mlp"):
        mlp_space.encode(Architecture("nb201", arch.choices))


def test_a_space_without_choice_model_or_methods_says_what_is_missing():
    class Bare(SearchSpace):
        name = "bare"
        capabilities = frozenset({"mutate"})

    bare = Bare()
    assert bare.capabilities == {"mutate"}
    for call in (lambda: bare.sample(np.random.default_rng(0)), lambda: bare.from_str("x"),
                 lambda: bare.mutate(Architecture("bare", (1,)), np.random.default_rng(0))):
        with pytest.raises(CapabilityError, match="'bare' has no choice_model\\(\\) and does not define"):
            call()
    with pytest.raises(CapabilityError, match="lacks capability build"):
        bare.build(Architecture("bare", (1,)))


def test_nb201_keeps_its_random_streams(nb201):
    """Seeded NB201 samples, mutations and crossovers (as the hand-written operators drew them)."""
    rng = np.random.default_rng(0)
    a, b = nb201.sample(rng), nb201.sample(rng)
    assert a.to_str() == "|avg_pool_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|skip_connect~1|none~2|"
    assert b.to_str() == "|none~0|+|none~0|none~1|+|avg_pool_3x3~0|nor_conv_3x3~1|avg_pool_3x3~2|"
    assert nb201.mutate(a, rng).to_str() == "|avg_pool_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|nor_conv_3x3~0|skip_connect~1|none~2|"
    assert nb201.crossover(a, b, rng).to_str() == "|none~0|+|none~0|none~1|+|avg_pool_3x3~0|skip_connect~1|avg_pool_3x3~2|"
    assert nb201.choice_model().names == ("1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2")
