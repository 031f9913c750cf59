"""No silent CPU below the command line (issue 23): every evaluator kind and every proxy pass, run on a
target device, creates no tensor in a place nobody chose.

How: the machine has one real device, the CPU, so it plays the target, and torch's *default* device
becomes ``meta`` (``torch.set_default_device``) while a scenario runs. On top of it,
:class:`StrayTensors` (a ``TorchFunctionMode``) watches every tensor factory (``torch.zeros``, ``ones``,
``empty``, ``full``, ``arange``, ``randn``, ``tensor``, ...: torch's own list of the functions the
default device applies to) called without a ``device``:

* inside an ``nn.Module``'s ``__init__`` the tensor is a parameter or buffer, which moves with the model
  (``model.to(device)``): it is made on the host, as it would be without the test;
* with a ``generator`` it is a seeded draw, made where its generator is (nastk draws those on the host,
  :data:`nastk.devices.HOST`, so the numbers are the same on every device);
* from a tensor (``as_tensor(t)``) it stays where that tensor is;
* anything else is a *stray*: the code should have named the target (``device=x.device``, the model's
  device, ...). Its call site is recorded and it is made on the host, so the scenario runs on and every
  stray is reported at once; the test fails listing ``file:line``.

A ``device=None`` that is resolved by :func:`nastk.devices.resolve_device` without a model lands on the
default device, ``meta``, so a layer that forgets to pass the run's device on fails too (a meta tensor
meets the CPU model: "Tensor on device meta is not on the expected device cpu").

``test_a_planted_stray_is_caught`` checks the net itself: a ``torch.zeros(3)`` planted in a proxy
pass is reported with its line.
"""
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import List

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors

from nastk.devices import HOST

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TARGET = "cpu"
ROOT = Path(__file__).resolve().parents[1]
#: factories that copy a tensor argument keep its device
FOLLOWS_INPUT = {torch.as_tensor, torch.asarray, torch.tensor}


def _building_a_module() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == "__init__" and isinstance(frame.f_locals.get("self"), torch.nn.Module):
            return True
        frame = frame.f_back
    return False


def _call_site() -> str:
    """The innermost frame of this project (nastk, search_spaces, the tests) that called the factory."""
    frame = sys._getframe(2)
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if ROOT in path.parents and ".venv" not in path.parts:
            return f"{path.relative_to(ROOT)}:{frame.f_lineno} ({frame.f_code.co_name})"
        frame = frame.f_back
    return "outside the project"


class StrayTensors(TorchFunctionMode):
    """Records tensor factories called without a device outside module construction (see the module doc)."""

    def __init__(self):
        super().__init__()
        self.strays: List[str] = []
        self.constructors = _device_constructors()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in self.constructors and kwargs.get("device") is None:
            if kwargs.get("generator") is not None:
                kwargs["device"] = kwargs["generator"].device
            elif func in FOLLOWS_INPUT and args and isinstance(args[0], torch.Tensor):
                kwargs["device"] = args[0].device
            elif _building_a_module():
                kwargs["device"] = HOST
            else:
                self.strays.append(f"torch.{func.__name__} at {_call_site()}")
                kwargs["device"] = HOST
        return func(*args, **kwargs)


@contextmanager
def watched():
    """Torch's default device ``meta`` and :class:`StrayTensors` around a scenario; yields the strays found."""
    previous = torch.get_default_device()
    torch.set_default_device("meta")
    try:
        with StrayTensors() as mode:
            yield mode.strays
    finally:
        # None removes torch's device mode; setting "cpu" back would leave a mode that routes every torch
        # call (torch.autograd.grad too) through __torch_function__ for the rest of the process
        torch.set_default_device(None if previous == torch.device("cpu") else previous)


def assert_none(found: List[str]) -> None:
    assert not found, "tensors created without a device (they land on the CPU, not the target):\n  " + \
        "\n  ".join(dict.fromkeys(found))


# --- what the scenarios need, made before the watch starts --------------------------------------------------
@pytest.fixture(scope="module")
def nb201_space():
    from nastk.space import get_space

    return get_space("nb201")


def _evaluator(space, spec: str, **values):
    """The evaluator a run config built from ``spec`` and the options' defaults describes, on the target."""
    from nastk.evaluators import evaluator_class, evaluator_config, evaluator_option_list, make_evaluator, parse_evaluator

    kind, _ = parse_evaluator(spec)
    options = {option.name: option.default for option in evaluator_option_list(evaluator_class(kind), space)}
    return make_evaluator(space, evaluator_config(space, spec, {**options, **values}), seed=0, device=TARGET)


@pytest.fixture(scope="module")
def supernet_run(tmp_path_factory):
    from nastk.cli import main

    run = tmp_path_factory.mktemp("supernet") / "run"
    assert main(["supernet", "train", "--space", "nb201", "--dataset", "digits", "--epochs", "1", "--train-size", "64",
                 "--C", "4", "--N", "1", "--batch-size", "32", "--valid-size", "0", "--run-dir", str(run),
                 "--device", TARGET, "--no-progress", "--format", "json"]) == 0
    return run


@pytest.fixture(scope="module")
def predictor(nastk_data, tmp_path_factory):
    """A small Bayesian ParZC predictor saved to disk (the fit of tests/test_parzc_evaluator.py, shorter)."""
    import io
    from contextlib import redirect_stdout

    from nastk.cli import main

    path = tmp_path_factory.mktemp("model") / "parzc.pt"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NASTK_CACHE", str(tmp_path_factory.mktemp("cache")))
        with redirect_stdout(io.StringIO()):
            assert main(["proxies", "fit", "parzc", "--pool-size", "12", "--train-size", "8", "--epochs", "1",
                         "--mc-samples", "2", "--config", "small", "--save", str(path), "--no-progress",
                         "--format", "json"]) == 0
        yield path


def _architectures(space, count: int = 2):
    import numpy as np

    rng = np.random.default_rng(0)
    return [space.sample(rng) for _ in range(count)]


# --- the scenarios ---------------------------------------------------------------------------------------------
def test_a_planted_stray_is_caught(nb201_space, monkeypatch):
    """The net works: a ``torch.zeros(3)`` in a proxy pass is reported with its file and line."""
    from nastk.proxies import compute_proxies
    from nastk.proxies.static import StaticPass

    original = StaticPass.run.__func__

    def planted(cls, inp, needs):
        torch.zeros(3)  # the bug this test exists to catch
        return original(cls, inp, needs)

    monkeypatch.setattr(StaticPass, "run", classmethod(planted))
    model = nb201_space.build(_architectures(nb201_space, 1)[0], 10, C=4, N=1)
    batch = (torch.randn(4, 3, 8, 8), torch.arange(4))
    with watched() as strays:
        compute_proxies(model, batch, ["params"], device=TARGET)
    assert len(strays) == 1 and "test_device_placement.py" in strays[0] and "(planted)" in strays[0], strays


def test_every_proxy_pass_names_its_devices(nb201_space):
    from nastk.proxies import compute_proxies
    from nastk.proxies.registry import proxy_names

    model = nb201_space.build(_architectures(nb201_space, 1)[0], 10, C=4, N=1)
    batch = (torch.randn(8, 3, 8, 8), torch.arange(8) % 10)
    with watched() as strays:
        scores = compute_proxies(model, batch, proxy_names(), device=TARGET)
    assert set(scores.scores) == set(proxy_names())
    assert_none(strays)


def _scored(evaluator, archs, final: bool = False) -> List[str]:
    """The strays of evaluating ``archs`` (and the last one's final metrics) with an evaluator built before."""
    with watched() as strays:
        results = [evaluator.evaluate(arch) for arch in archs]
        if final:
            evaluator.final_metrics(archs[-1])
    assert all(result.metrics for result in results)
    return strays


def test_the_benchmark_evaluator(nastk_data, nb201_space):
    assert_none(_scored(_evaluator(nb201_space, "benchmark", dataset="cifar10"), _architectures(nb201_space)))


def test_the_proxy_evaluator(nastk_data, nb201_space):
    evaluator = _evaluator(nb201_space, "proxy:synflow", batch_size=8, C=4, N=1)
    assert_none(_scored(evaluator, _architectures(nb201_space)))


def test_the_train_from_scratch_evaluator(nb201_space):
    """One short training and validation (the winner's retraining runs the same code on more images)."""
    evaluator = _evaluator(nb201_space, "train", dataset="digits", epochs=1, batch_size=256, C=4, N=1)
    assert_none(_scored(evaluator, _architectures(nb201_space, 1)))


def test_the_predictor_evaluator(nb201_space, predictor):
    """Architectures of the cached statistics pool: what runs is the predictor, on the target (statistics
    of other architectures are computed on the CPU by design, see nastk.evaluators.predictor)."""
    evaluator = _evaluator(nb201_space, f"parzc:{predictor}", mc_samples=2)
    pool = getattr(evaluator, "inner", evaluator).pool  # inside the benchmark report wrapper
    archs = [nb201_space.from_code(int(code)) for code in pool.codes[:2]]
    assert_none(_scored(evaluator, archs))


def test_the_supernet_evaluator(nb201_space, supernet_run):
    evaluator = _evaluator(nb201_space, f"supernet:{supernet_run}", eval_size=64, eval_batch_size=32)
    assert_none(_scored(evaluator, _architectures(nb201_space, 1), final=True))


@pytest.mark.parametrize("step", [
    "single_path", "sandwich", "darts",
])
def test_training_a_supernet(step, tmp_path):
    """One epoch of a tiny supernet run per step kind; the images are loaded before the watch (see below)."""
    from nastk.datasets import load_dataset
    from nastk.oneshot.trainer import OneShotConfig, train

    digits = load_dataset("digits")
    config = OneShotConfig(space="nb201", dataset="digits", supernet={"C": 4, "N": 1}, epochs=1, train_size=64,
                           batch_size=32, valid_size=16, eval_batch_size=16, augment=False, step=step)
    with watched() as strays:
        train(config, tmp_path / "run", device=TARGET, progress=False, data=digits)
    assert_none(strays)


def test_building_the_evaluators(nb201_space, supernet_run, predictor):
    """Building an evaluator loads its images: on the host, which the loader should say."""
    with watched() as strays:
        _evaluator(nb201_space, "train", dataset="digits", epochs=1, batch_size=256, C=4, N=1)
        _evaluator(nb201_space, "proxy:synflow", batch_size=8, C=4, N=1)
        _evaluator(nb201_space, f"supernet:{supernet_run}", eval_size=64, eval_batch_size=32)
        _evaluator(nb201_space, f"parzc:{predictor}", mc_samples=2)
    assert_none(strays)
