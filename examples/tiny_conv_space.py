"""A user's own space in its own file: depth, width and activation of a small conv net (used by
examples/configs/custom_space.yaml: `PYTHONPATH=examples nastk search --config examples/configs/custom_space.yaml`)."""
from torch import nn

from nastk.choices import Categorical, ChoiceModel, Ordered
from nastk.space import SearchSpace


class TinyConvSpace(SearchSpace):
    name = "tinyconv"

    def choice_model(self):
        return ChoiceModel([Ordered("depth", (1, 2, 3)), Ordered("width", (8, 16, 32)),
                            Categorical("act", ("relu", "gelu"))])

    def build(self, arch, num_classes: int = 10, **options):
        v = self.choices_of(arch)
        layers, channels = [], 3
        for _ in range(v["depth"]):
            # batch norm after each conv: without it these nets sit at chance for the first epochs on digits
            layers += [nn.Conv2d(channels, v["width"], 3, padding=1, bias=False), nn.BatchNorm2d(v["width"]),
                       nn.ReLU() if v["act"] == "relu" else nn.GELU()]
            channels = v["width"]
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
