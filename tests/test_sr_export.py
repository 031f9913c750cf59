"""``nastk export`` and ``nastk supernet rank`` on the quantized (op, bits) spaces of QuantNAS (``sr``, ``qnas-nb201``),
issue 26: a supernet's child and a search's winner export as the network the space's ``build()`` makes (a state dict
that loads into it) and as TorchScript, each computing what the supernet computes for that path; image-pair
children keep the supernet's BatchNorm statistics, as the supernet evaluator scores them; ``supernet rank`` ranks
an SR run by the PSNR the supernet evaluator scores. EQ-Net children (``quant:nb201``) are checked too."""
import json

import numpy as np
import pytest
import torch

from nastk.cli import main
from nastk.datasets import load_dataset
from nastk.evaluators.supernet import SupernetEvaluator
from nastk.oneshot.datamodules import make_data_module
from nastk.oneshot.ranking import activate, calibration_batches, default_bn_calibration
from nastk.oneshot.trainer import OneShotConfig, OneShotTrainer, load_trained
from nastk.quantization.sr_data import mean_score, whole_images
from nastk.space import get_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DATA_OPTIONS = {"scale": 2, "downscale": "bicubic", "psnr": "y", "border": 4}


@pytest.fixture(scope="module")
def sr_run(tmp_path_factory):
    """A tiny single-path SR supernet (C = 4, one epoch on 16 skimage-sr patches)."""
    folder = tmp_path_factory.mktemp("sr") / "supernet"
    config = OneShotConfig(space="sr", dataset="skimage-sr", data="image_pairs", data_options=DATA_OPTIONS,
                           supernet={"C": 4, "upscale": 2}, epochs=1, train_size=16, batch_size=8, valid_size=8,
                           eval_batch_size=8, augment=False, lr=0.05)
    OneShotTrainer(config, folder, data=load_dataset("skimage-sr"), progress=False).fit()
    return folder


@pytest.fixture(scope="module")
def nb201_run(tmp_path_factory):
    """A tiny qnas-nb201 QuantNAS supernet on digits (C = 4, N = 1, bits 2, 4)."""
    folder = tmp_path_factory.mktemp("qnb") / "supernet"
    config = OneShotConfig(space="qnas-nb201", dataset="digits", step="quantnas",
                           supernet={"C": 4, "N": 1, "bits": "2,4"}, epochs=1, train_size=32, batch_size=8, valid_size=8, eval_batch_size=8, augment=False,
                           lr=1e-3, step_options={"arch_warmup_epochs": 0, "arch_lr": 0.05})
    OneShotTrainer(config, folder, progress=False).fit()
    return folder


def export(capsys, *flags):
    capsys.readouterr()
    assert main(["export", *flags, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def path_output(run, arch: str, x: torch.Tensor) -> torch.Tensor:
    """The supernet's own output for the path ``arch`` (eval mode, its BatchNorm statistics as trained)."""
    supernet, _, _ = load_trained(run)
    activate(supernet, supernet.space.from_str(arch))
    with torch.no_grad():
        return supernet(x)


def rebuilt(file):
    """The state-dict export loaded into the space's build(), as a user without the supernet does."""
    held = torch.load(file, weights_only=True)
    space = get_space(held["space"])
    model = space.build(space.from_str(held["arch"]), held["num_classes"], **held["build"])
    model.load_state_dict(held["state_dict"])
    return model.eval(), held


def sample(space_name: str, seed: int, allowed=None) -> str:
    space = get_space(space_name)
    rng = np.random.default_rng(seed)
    while True:
        arch = space.to_str(space.sample(rng))
        if allowed is None or not any(f"@{b}" in arch for b in allowed):
            return arch


# --- sr --------------------------------------------------------------------------------------------------------
def test_an_sr_child_state_dict_loads_into_build_and_computes_the_supernet_path(sr_run, capsys, tmp_path):
    arch = sample("sr", 0)
    written = export(capsys, "--run-dir", str(sr_run), "--arch", arch, "--out", str(tmp_path / "c.pt"),
                     "--out-format", "state-dict")
    assert written["build"] == {"scale": 2, "C": 4, "adq": True} and written["num_classes"] is None
    assert written["input_shape"] == [3, 16, 16]  # the low-resolution patches the network trained on
    # image pairs keep the supernet's BatchNorm statistics (the supernet evaluator's rule), not OFA's recalibration
    assert written["bn_calibration"] is None and "as the supernet left them" in written["weights"]
    model, _ = rebuilt(tmp_path / "c.pt")
    x = torch.rand(2, 3, 20, 26)
    with torch.no_grad():
        assert torch.equal(model(x), path_output(sr_run, arch, x))


def test_an_sr_child_torchscript_runs_any_image_size_as_the_supernet_path(sr_run, capsys, tmp_path):
    arch = sample("sr", 1)
    written = export(capsys, "--run-dir", str(sr_run), "--arch", arch, "--out", str(tmp_path / "c.pt"))
    assert written["check_max_abs_difference"] == 0
    model = torch.jit.load(str(tmp_path / "c.pt"))
    for size in [(16, 16), (9, 11), (40, 52)]:  # traced at 16 x 16: ESA's pooling keeps its size rule
        x = torch.rand(1, 3, *size)
        with torch.no_grad():
            assert torch.equal(model(x), path_output(sr_run, arch, x)), size


@pytest.fixture(scope="module")
def sr_search(sr_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("srsearch") / "search"
    assert main(["search", "--space", "sr", "--strategy", "random", "--objectives", "psnr,bitops", "--budget", "2",
                 "--evaluator", f"supernet:{sr_run}", "--run-dir", str(folder), "--no-progress"]) == 0
    return folder, json.loads((folder / "summary.json").read_text())


def test_an_sr_search_winner_exports_with_the_psnr_the_search_reported(sr_search, capsys, tmp_path):
    folder, summary = sr_search
    written = export(capsys, "--run-dir", str(folder), "--out", str(tmp_path / "w.pt"), "--out-format", "state-dict")
    assert written["arch"] == summary["best_arch"]
    model, held = rebuilt(tmp_path / "w.pt")
    module = make_data_module("image_pairs", DATA_OPTIONS)
    assert mean_score(model, whole_images("select", 2), module) == pytest.approx(summary["best_objective"], abs=1e-9)
    assert mean_score(model, whole_images("test", 2), module) == pytest.approx(summary["final_metrics"]["test_psnr"],
                                                                              abs=1e-9)


def test_an_sr_search_winner_exports_as_torchscript(sr_search, capsys, tmp_path):
    folder, summary = sr_search
    export(capsys, "--run-dir", str(folder), "--out", str(tmp_path / "w.pt"))
    module = make_data_module("image_pairs", DATA_OPTIONS)
    model = torch.jit.load(str(tmp_path / "w.pt"))
    assert mean_score(model, whole_images("select", 2), module) == pytest.approx(summary["best_objective"], abs=1e-9)


def test_image_pair_children_keep_the_supernets_statistics_unless_calibration_is_asked_for(sr_run, capsys, tmp_path):
    supernet, config, _ = load_trained(sr_run)
    assert default_bn_calibration(supernet, config) == 0  # ADQ's BatchNorm tracks statistics, still none by default
    data = load_dataset("skimage-sr")
    assert [tuple(b.shape) for b in calibration_batches(config, data, 1)] == [(8, 3, 16, 16)]  # the network's input
    arch = sample("sr", 2)
    written = export(capsys, "--run-dir", str(sr_run), "--arch", arch, "--out", str(tmp_path / "c.pt"),
                     "--out-format", "state-dict", "--bn-calibration", "1")
    assert written["bn_calibration"] == {"batches": 1, "images": 8, "recipe": "cumulative"}
    # the exported statistics are the supernet evaluator's for the same request
    evaluator = SupernetEvaluator(get_space("sr"), sr_run, bn_calibration=1)
    activate(evaluator.supernet, evaluator.space.from_str(arch), evaluator.calibration)
    statistics = {k: v for k, v in evaluator.supernet.net.state_dict().items() if "adq.norm.running" in k}
    model, held = rebuilt(tmp_path / "c.pt")
    assert statistics and all(torch.equal(held["state_dict"][k], v) for k, v in statistics.items())


def test_supernet_rank_on_an_sr_run_ranks_by_the_supernet_evaluators_psnr(sr_run, capsys):
    capsys.readouterr()
    assert main(["supernet", "rank", "--run-dir", str(sr_run), "--sample", "3", "--split", "held_out", "--eval-size",
                 "1", "--no-progress", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["truth"] is None and "psnr alone" in out["note"] and "PSNR" in out["score"] and "china" in out["score"]
    assert out["eval_images"] == 1 and out["bn_calibration_batches"] == 0
    evaluator = SupernetEvaluator(get_space("sr"), sr_run, split="held_out", eval_size=1)
    scores = [row["supernet_psnr"] for row in out["ranking"]]
    assert scores == sorted(scores, reverse=True)
    for row in out["ranking"]:
        assert row["supernet_psnr"] == evaluator.evaluate(evaluator.space.from_str(row["arch"])).value
    assert main(["supernet", "rank", "--run-dir", str(sr_run), "--sample", "2", "--eval-size", "1", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "ranked by the supernet's own psnr" in text and "1 test images" in text


def test_an_sr_train_search_winner_exports_its_retrained_weights(capsys, tmp_path):
    folder = tmp_path / "train"
    assert main(["search", "--space", "sr", "--strategy", "random", "--budget", "1", "--evaluator", "train",
                 "--epochs", "1", "--final-epochs", "1", "--C", "4", "--run-dir", str(folder), "--no-progress"]) == 0
    summary = json.loads((folder / "summary.json").read_text())
    written = export(capsys, "--run-dir", str(folder), "--out", str(tmp_path / "w.pt"), "--out-format", "state-dict")
    assert written["weights"].startswith("retrained") and written["input_shape"] == [3, 16, 16]
    model, _ = rebuilt(tmp_path / "w.pt")
    module = make_data_module("image_pairs", DATA_OPTIONS)
    assert mean_score(model, whole_images("test", 2), module) == pytest.approx(summary["final_metrics"]["test_psnr"],
                                                                              abs=1e-9)
    assert main(["export", "--run-dir", str(folder), "--out", str(tmp_path / "t.pt"), "--out-format", "state-dict"]) == 0
    assert "(sr, input 3x16x16, image to image)" in capsys.readouterr().out


def test_a_child_that_is_not_the_supernets_path_is_refused():
    from nastk.errors import CapabilityError
    from nastk.quantization.quantnas import inherit_path

    space = get_space("sr")
    supernet = space.supernet(C=4)
    first, other = (space.from_str(sample("sr", seed)) for seed in (3, 4))
    supernet.set_active(first)
    inherit_path(space.build(first, C=4), supernet.net)  # its own path: every tensor set
    with pytest.raises(CapabilityError, match="does not match"):
        inherit_path(space.build(other, C=4), supernet.net)
    supernet.init_arch_parameters()
    supernet.set_mixture(supernet.mixture_weights())
    with pytest.raises(CapabilityError, match="mixture"):
        inherit_path(space.build(first, C=4), supernet.net)


# --- qnas-nb201 --------------------------------------------------------------------------------------------------
def test_a_qnas_nb201_child_state_dict_loads_into_build_and_computes_the_supernet_path(nb201_run, capsys, tmp_path):
    arch = sample("qnas-nb201", 0, allowed=(3, 8))  # the run searched bits 2 and 4
    written = export(capsys, "--run-dir", str(nb201_run), "--arch", arch, "--out", str(tmp_path / "c.pt"),
                     "--out-format", "state-dict")
    # the supernet's BatchNorm kind (no affine, batch statistics): the child runs as the supernet scores it
    assert written["build"] == {"C": 4, "N": 1, "affine": False, "track_running_stats": False}
    assert written["num_classes"] == 10 and written["input_shape"] == [3, 16, 16]
    model, _ = rebuilt(tmp_path / "c.pt")
    x = torch.randn(6, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), path_output(nb201_run, arch, x))


def test_a_qnas_nb201_child_exports_as_torchscript(nb201_run, capsys, tmp_path):
    arch = sample("qnas-nb201", 1, allowed=(3, 8))
    export(capsys, "--run-dir", str(nb201_run), "--arch", arch, "--out", str(tmp_path / "c.pt"))
    x = torch.randn(6, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(torch.jit.load(str(tmp_path / "c.pt"))(x), path_output(nb201_run, arch, x))


# --- EQ-Net ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def eqnet_child():
    """A quant:nb201 (EQ-Net) supernet, one child of it as the supernet extracts it, and its export description."""
    space = get_space("quant:nb201")
    supernet = space.supernet(num_classes=10).eval()
    arch = space.sample(np.random.default_rng(0))
    supernet.set_active(arch)
    info = {"space": space.name, "arch": arch.to_str(), "build": {}, "num_classes": 10, "input_shape": [3, 16, 16]}
    return supernet, supernet.extract(arch).eval(), info


def test_an_eqnet_child_state_dict_is_refused_in_one_line(tmp_path):
    from nastk.errors import ConfigError
    from nastk.export import write_model

    space = get_space("quant:mobilenet")
    arch = space.sample(np.random.default_rng(0))
    child = space.supernet(num_classes=10).extract(arch).eval()
    info = {"space": space.name, "arch": arch.to_str(), "build": {}, "num_classes": 10, "input_shape": [3, 32, 32]}
    with pytest.raises(ConfigError, match="export it as torchscript") as error:
        write_model(child, info, tmp_path / "c.pt", "state-dict")
    assert "\n" not in str(error.value) and not (tmp_path / "c.pt").exists()


@pytest.mark.slow  # a failing trace of the C = 16, N = 5 network takes about 11 s here (4 s once it traces)
@pytest.mark.xfail(strict=False, reason="nastk/quantization/layers.py substitutes the quantized weight with "
                   "torch.func.functional_call, which torch.jit refuses")
def test_an_eqnet_child_exports_as_torchscript(eqnet_child, tmp_path):
    from nastk.export import write_model

    supernet, child, info = eqnet_child
    written = write_model(child, info, tmp_path / "c.pt", "torchscript")
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert written["check_max_abs_difference"] == 0
        assert torch.equal(torch.jit.load(str(tmp_path / "c.pt"))(x), supernet(x))
