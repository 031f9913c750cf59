"""A search space that lives only in the tests, loaded by ``module:Class`` like a user's package would be."""
from torch import nn

from nastk.choices import Categorical, ChoiceModel, Ordered
from nastk.space import SearchSpace


class PluginSpace(SearchSpace):
    """Width and activation of a one-hidden-layer convolutional net."""

    name = "plugin"

    def choice_model(self):
        return ChoiceModel([Ordered("width", (4, 8, 16)), Categorical("act", ("relu", "tanh"))])

    def build(self, arch, num_classes: int = 10, **options):
        values = self.choices_of(arch)
        act = nn.ReLU() if values["act"] == "relu" else nn.Tanh()
        return nn.Sequential(nn.Conv2d(3, values["width"], 3, padding=1), act, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(values["width"], num_classes))
