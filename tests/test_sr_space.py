"""The ``sr`` space (QuantNAS' reduced SR macro-architecture), its supernet, the SR images that ship with installed
packages, and the image_pairs data module's bicubic pairs and Y-channel PSNR with a border (against a hand computation)."""
import math

import numpy as np
import pytest
import torch

from nastk.errors import ArchitectureError, ConfigError
from nastk.oneshot.datamodules import make_data_module, y_psnr_sum
from nastk.space import get_space
from search_spaces.sr import BITS, BODY_OPS, TAIL_OPS, layer_names

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_space_has_one_op_bits_decision_per_searched_layer():
    space = get_space("sr")
    model = space.get_choice_model()
    assert [c.name for c in model.choices] == layer_names() and len(layer_names()) == 9
    assert model.choices[0].options == tuple(f"{op}@{b}" for op in BODY_OPS for b in BITS)
    assert model.choices[-1].options == tuple(f"{op}@{b}" for op in TAIL_OPS for b in BITS)
    arch = space.sample(np.random.default_rng(0))
    assert space.from_str(arch.to_str()) == arch
    with pytest.raises(ArchitectureError):
        space.from_str(arch.to_str().replace("@4", "@5").replace("@8", "@5"))


@pytest.mark.parametrize("scale", [2, 4])
def test_supernet_single_path_mixture_and_extract_agree_in_shape_and_value(scale):
    torch.manual_seed(0)
    space = get_space("sr")
    supernet = space.supernet(C=4, upscale=scale).eval()
    x = torch.rand(2, 3, 8, 8)
    arch = space.sample(np.random.default_rng(scale))
    supernet.set_active(arch)
    out = supernet(x)
    assert out.shape == (2, 3, 8 * scale, 8 * scale)
    assert torch.allclose(supernet.extract(arch)(x), out)
    supernet.init_arch_parameters()
    supernet.set_mixture(supernet.mixture_weights())
    assert supernet(x).shape == out.shape
    assert space.build(arch, scale=scale, C=4)(x).shape == out.shape
    with pytest.raises(ConfigError, match="multiple of 4"):
        space.supernet(C=6)


def test_patches_and_whole_images_come_from_installed_packages():
    pytest.importorskip("skimage")
    from nastk.quantization.sr_data import SPLITS, load_image, patches

    assert not set(SPLITS["train"]) & set(SPLITS["test"]) and not set(SPLITS["select"]) & set(SPLITS["test"])
    image = load_image("astronaut")
    assert image.shape == (3, 512, 512) and 0 <= float(image.min()) and float(image.max()) <= 1
    tiles = patches(torch.arange(2 * 3 * 6 * 6, dtype=torch.float).view(3, 6, 12)[:, :, :12], 4, 4)
    assert tiles.shape == (3, 3, 4, 4)
    with pytest.raises(ConfigError, match="unknown SR image"):
        load_image("lena")


def test_y_psnr_with_border_by_hand():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(1, 3, 12, 12, generator=g)
    target = torch.round(target * 255) / 255
    output = (target + 0.02 * torch.randn(1, 3, 12, 12, generator=g)).clamp(0, 1)
    # by hand, in 8-bit units: Y = 16 + (65.481 R + 128.553 G + 24.966 B), 4-pixel border cropped, peak 255
    out8 = np.round(output[0].numpy() * 255) / 255
    t = target[0].numpy()
    y_out = 16 + 65.481 * out8[0] + 128.553 * out8[1] + 24.966 * out8[2]
    y_t = 16 + 65.481 * t[0] + 128.553 * t[1] + 24.966 * t[2]
    mse = np.mean((y_out[4:-4, 4:-4] - y_t[4:-4, 4:-4]) ** 2)
    expected = 10 * math.log10(255 ** 2 / mse)
    assert y_psnr_sum(output, target, border=4) == pytest.approx(expected, abs=1e-3)
    assert y_psnr_sum(torch.cat([output, output]), torch.cat([target, target]), border=4) == pytest.approx(2 * expected, abs=2e-3)
    whole = 10 * math.log10(255 ** 2 / np.mean((y_out - y_t) ** 2))
    assert y_psnr_sum(output, target, border=0) == pytest.approx(whole, abs=1e-3) and whole != pytest.approx(expected)


def test_image_pairs_bicubic_and_y_psnr_options():
    module = make_data_module("image_pairs", {"scale": 2, "downscale": "bicubic", "psnr": "y", "border": 4})
    hr = torch.rand(2, 3, 16, 16)
    low, high = module.monitor(hr, None)
    assert low.shape == (2, 3, 8, 8) and high is hr
    flat = torch.full((1, 3, 16, 16), 0.5)
    assert torch.allclose(module.monitor(flat, None)[0], torch.full((1, 3, 8, 8), 0.5), atol=1e-6)
    hr8 = torch.round(hr * 255) / 255  # the score rounds outputs to 8 bits: an exact 8-bit image scores the mse floor
    assert module.score(hr8, hr8) == pytest.approx(2 * 120.0)
    assert module.default_metrics()["psnr"] is module.score
    default = make_data_module("image_pairs")
    assert torch.equal(default.monitor(hr, None)[0], torch.nn.functional.avg_pool2d(hr, 2))
    with pytest.raises(ConfigError):
        make_data_module("image_pairs", {"psnr": "ssim"})
