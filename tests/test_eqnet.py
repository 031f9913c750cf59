"""The EQ-Net step (methods.md 11B): modes, the GPG chain's configurations, WDR, pretrained start, exact resume."""
import json

import pytest
import torch

import toy_steps
from nastk.errors import ConfigError
from nastk.oneshot.eqnet import KURTOSIS_TARGET, _moments, uniform_path, weight_distribution_loss
from nastk.oneshot.trainer import OneShotConfig, OneShotTrainer, load_trained, train


def config(epochs=1, **step_options):
    return OneShotConfig.for_step("eqnet", space="quant:mobilenet", epochs=epochs, batch_size=32, valid_size=0,
                                  augment=False, step_options={"calibration_size": 16, **step_options})


def test_weight_distribution_moments():
    torch.manual_seed(0)
    kurt, skew = _moments(torch.rand(200_000))
    assert float(kurt) == pytest.approx(KURTOSIS_TARGET, abs=0.02) and abs(float(skew)) < 0.02
    kurt, _ = _moments(torch.randn(200_000))
    assert float(kurt) == pytest.approx(3.0, abs=0.05)


@pytest.mark.slow
def test_step_trains_the_chain_largest_random_smallest(tmp_path):
    trainer = OneShotTrainer(config(), tmp_path / "run", data=toy_steps.toy_data(), progress=False)
    step, supernet = trainer.step, trainer.supernet
    step.start_epoch(0)
    configurations = step.configurations()
    assert [p for p, _ in configurations][0] == uniform_path(supernet, step.base_largest, 8)
    assert [p for p, _ in configurations][-1] == uniform_path(supernet, step.base_largest, 2)
    assert len(configurations) == 3 and all(forms is not None for _, forms in configurations)
    loss = weight_distribution_loss(supernet, 0.015, 1.0)
    loss.backward()
    assert supernet.layers()[0].layer.weight.grad is None  # WDR skips the first layer
    assert supernet.layers()[1].layer.weight.grad is not None
    assert all(q.weight_quantizer.active.initialized.all() for q in supernet.layers())  # calibrated
    with pytest.raises(ConfigError):
        OneShotTrainer(config(precision="int4"), tmp_path / "bad", data=toy_steps.toy_data(), progress=False)
    with pytest.raises(ConfigError):
        OneShotTrainer(OneShotConfig.for_step("eqnet", space="mobilenet", epochs=1, valid_size=0),
                       tmp_path / "bad2", data=toy_steps.toy_data(), progress=False)


@pytest.mark.slow
def test_float_pretraining_then_eqnet_and_exact_resume(tmp_path):
    data = toy_steps.toy_data()
    train(config(precision="float"), tmp_path / "fp", data=data, progress=False)
    fp, _, _ = load_trained(tmp_path / "fp")
    eq_config = config(epochs=2, pretrained=str(tmp_path / "fp"))
    trainer = OneShotTrainer(eq_config, None, data=data, progress=False)
    for (name, a), b in zip(fp.base.state_dict().items(), trainer.supernet.base.state_dict().values()):
        if "quantizer" not in name:
            assert torch.equal(a, b), name  # started from the float weights
    train(eq_config, tmp_path / "straight", data=data, progress=False)

    class Stop(Exception):
        pass

    def stop(trainer, record):
        if record["epoch"] == 0:
            raise Stop

    with pytest.raises(Stop):
        train(eq_config, tmp_path / "killed", data=data, progress=False, callbacks=[stop])
    resumed = train(eq_config, tmp_path / "killed", resume=True, data=data, progress=False)
    assert resumed["resumed_from_epoch"] == 1
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    history = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 2 and all(r["train_loss"] == r["train_loss"] for r in history)
