"""Data modules: labelled images (every existing run, bitwise unchanged: see the fingerprint script), two
augmented views for a self-supervised step, low/high-resolution image pairs for super-resolution."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from nastk.datasets import ImageDataset
from nastk.errors import ConfigError
from nastk.oneshot.datamodules import ImagePairs, TwoViews, make_data_module, psnr_sum
from nastk.oneshot.steps import StepOutput, TrainingStep, weight_optimizer
from nastk.oneshot.trainer import OneShotConfig, OneShotTrainer
from nastk.supernet import ChoicePoint, Supernet, decisions_of
from toy_steps import ToySpace, ToySupernet

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def images(n=64, size=8):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, size, size, generator=generator)
    y = torch.randint(0, 10, (n,), generator=generator)
    return ImageDataset("toy", x, y, x[:16], y[:16], 10)


class TwoViewStep(TrainingStep):
    """Pulls the two views' outputs together (a stand-in for a self-supervised objective)."""

    name = "test_two_views"

    def __init__(self, context):
        super().__init__(context)
        self.optimizer, self.scheduler = weight_optimizer(context, context.supernet.weights())
        self.seen = []

    def step(self, batch):
        context = self.context
        (a, b), _ = context.examples(batch.indices, batch.augment)
        self.seen.append(float((a - b).abs().max()))
        path = context.supernet.largest_path()
        context.zero_grad()
        loss = F.mse_loss(context.forward(a, path=path), context.forward(b, path=path).detach())
        context.backward(loss)
        self.optimizer.step()
        return StepOutput(loss.detach(), path=path)


def test_two_views_are_independent_augmentations_and_monitoring_is_skipped(tmp_path):
    def trainer(augment):
        config = OneShotConfig(space="toy-elastic", data="two_views", step=f"{__name__}:TwoViewStep", epochs=1, batch_size=16,
                               valid_size=16, augment=augment, lr=0.01)
        return OneShotTrainer(config, tmp_path / str(augment), data=images(size=4), progress=False,
                              supernet=ToySupernet())

    on = trainer(True)
    on.fit()
    assert min(on.step.seen) > 0  # two different crops / flips of each image
    assert not [k for k in on.history[-1] if k.endswith("_acc")]  # no labels are scored for two views
    off = trainer(False)
    off.fit()
    assert max(off.step.seen) == 0  # without augmentation both views are the image
    with pytest.raises(ConfigError, match="no supervised loss"):
        TwoViews.loss(torch.zeros(2, 3), torch.zeros(2))


class ElasticSR(ChoicePoint):
    """x2 super-resolution in miniature: conv to an elastic width, conv to 12 channels, pixel shuffle."""

    def __init__(self):
        super().__init__(decisions=("width", "depth"))
        self.first, self.last, self.width = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 12, 3, padding=1), 8

    def configure(self, values, allowed):
        self.width = (2, 4, 8)[int(values[0])]

    def forward(self, x):
        w = self.width
        h = F.relu(F.conv2d(x, self.first.weight[:w], self.first.bias[:w], padding=1))
        return F.pixel_shuffle(F.conv2d(h, self.last.weight[:, :w], self.last.bias, padding=1), 2)


class SRSupernet(Supernet):
    def __init__(self):
        super().__init__(ToySpace(), decisions_of(ToySpace()))
        self.body = ElasticSR()

    def forward(self, x):
        return x.repeat_interleave(2, -1).repeat_interleave(2, -2) + self.body(x)  # nearest upsampling + residual


def test_image_pairs_train_super_resolution_with_l1_and_select_by_psnr(tmp_path):
    config = OneShotConfig(space="toy-elastic", data="image_pairs", data_options={"scale": 2}, epochs=3, batch_size=16,
                           valid_size=16, augment=True, lr=0.05, held_out_fraction=0.25)
    trainer = OneShotTrainer(config, tmp_path, data=images(), progress=False, supernet=SRSupernet())
    lr, hr = trainer.examples(torch.arange(4))
    assert lr.shape == (4, 3, 4, 4) and hr.shape == (4, 3, 8, 8) and torch.allclose(F.avg_pool2d(hr, 2), lr)
    before, _ = trainer.held_out_quality(trainer.supernet.largest_path())
    trainer.fit()
    after, loss = trainer.held_out_quality(trainer.supernet.largest_path())
    assert trainer.loss is F.l1_loss and "test_psnr" in trainer.history[-1] and after > before  # PSNR in dB rose
    same = torch.rand(2, 3, 8, 8)
    assert psnr_sum(same + 0.1, same) < psnr_sum(same + 0.01, same)
    with pytest.raises(ConfigError, match="scale 3 must divide"):
        ImagePairs(scale=3).examples(hr, None, None)


@pytest.mark.parametrize("name, options, message", [
    ("stereo", {}, "unknown data module"), ("image_pairs", {"scale": 1}, "option scale"),
    ("labelled", {"scale": 2}, "has no option"), ("image_pairs", {"zoom": 2}, "its options: scale")])
def test_bad_data_modules_are_one_line(name, options, message):
    with pytest.raises(Exception, match=message):
        make_data_module(name, options)
    with pytest.raises(Exception, match=message):
        OneShotConfig(data=name, data_options=options)
