"""EAGAN's GAN search spaces (methods.md 5.1): an AutoGAN-style generator cell space and a discriminator space.

A genotype is a (cells x 7) integer matrix, written row by row: ``0,1,3,3,0,2,4/2,2,0,3,6,1,1``.

Generator cell (inputs: the previous cell's output, and the latent chunk added to it for cells >= 2):
* elements 0, 1: two up-sampling edges, {0 nearest, 1 bilinear, 2 transposed conv} -> u0, u1;
* elements 2, 3: the first normal node c = op2(u0) + op3(u1) (not both ``none``);
* elements 4, 5, 6: the cell output = op4(u0) + op5(u1) + op6(c) (not all ``none``);
  normal ops {0 none, 1 skip, 2 conv1x1, 3 conv3x3, 4 conv5x5, 5 dil_conv3x3, 6 dil_conv5x5}.
  Cells >= 2 also add the (fixed, not searched) up-sampled node c of every earlier cell to their node c.

Discriminator cell (our reading of the code's encoding; methods.md gives the value ranges only):
* element 0 in {1..6}: node n1 = op0(x) (never ``none``);
* elements 1, 2: n2 = op1(x) + op2(n1), elements 3, 4: n3 = op3(x) + op4(n2) (each pair not both ``none``);
* element 5 in {-1..5}: the down-sampling op of the cell output, {avg_pool, max_pool, conv3x3, conv5x5,
  dil_conv3x3, dil_conv5x5}; -1 disables down-sampling (the optional path) and then element 6 is -1
  (inactive); element 6 in {0..5}: the down-sampling op of the cell's shortcut (x -> output).

Variants (``gan-g-digits``, ``gan-g-cifar``, ``gan-d-digits``, ``gan-d-cifar``): digits has 2 cells
(2x2 -> 8x8, one channel), CIFAR 3 cells (4x4 -> 32x32), as methods.md 5.6 reduces them.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from nastk.architecture import Architecture
from nastk.choices import Categorical, ChoiceModel, Condition
from nastk.errors import ArchitectureError
from nastk.options import Int, Option
from nastk.space import SearchSpace

UP_OPS = ("nearest", "bilinear", "deconv")
NORMAL_OPS = ("none", "skip", "conv1x1", "conv3x3", "conv5x5", "dil_conv3x3", "dil_conv5x5")
DOWN_OPS = ("avg_pool", "max_pool", "conv3x3", "conv5x5", "dil_conv3x3", "dil_conv5x5")
ROW = 7

#: per variant: cells, bottom width of G's first cell input, image size and channels
VARIANTS = {"digits": {"cells": 2, "bottom_width": 2, "image_size": 8, "channels": 1, "latent_per_cell": 32,
                       "width": 32},
            "cifar": {"cells": 3, "bottom_width": 4, "image_size": 32, "channels": 3, "latent_per_cell": 40,
                      "width": 64}}


def _matrix_str(rows: Sequence[Sequence[int]]) -> str:
    return "/".join(",".join(str(v) for v in row) for row in rows)


class _GanSpace(SearchSpace):
    """Shared codec and EAGAN's variation operators over a (cells x 7) matrix with validity rules."""

    variant = "digits"
    capabilities = frozenset({"supernet", "build"})

    @property
    def config(self) -> dict:
        return VARIANTS[self.variant]

    @property
    def cells(self) -> int:
        return self.config["cells"]

    def _row_choices(self, cell: int) -> list:
        raise NotImplementedError

    def choice_model(self) -> ChoiceModel:
        return ChoiceModel([c for cell in range(self.cells) for c in self._row_choices(cell)])

    def row_problem(self, row: Sequence) -> str:
        """Why one cell's row breaks the space's rules ('' when it does not)."""
        raise NotImplementedError

    # --- validity --------------------------------------------------------------------------------
    def _values(self, arch: Architecture):
        values = super()._values(arch)
        for cell, row in enumerate(self.rows(values)):
            problem = self.row_problem(row)
            if problem:
                raise ArchitectureError(f"{self.name} cell {cell + 1} ({','.join(map(str, row))}): {problem}")
        return values

    def is_valid(self, values) -> bool:
        try:
            self._values(self._arch(tuple(values)))
        except ArchitectureError:
            return False
        return True

    def rows(self, values) -> List[Tuple]:
        values = tuple(-1 if v is None else v for v in values)
        return [values[i * ROW:(i + 1) * ROW] for i in range(self.cells)]

    def matrix(self, arch: Architecture) -> List[List[int]]:
        """The genotype as EAGAN's (cells x 7) integer matrix (-1 for an inactive element)."""
        return [list(row) for row in self.rows(self._values(arch))]

    def from_matrix(self, rows: Sequence[Sequence[int]]) -> Architecture:
        flat = [int(v) for row in rows for v in row]
        model = self.get_choice_model()
        values = tuple(None if (v == -1 and model.choices[i].active_if is not None) else v for i, v in enumerate(flat))
        arch = self._arch(values)
        self._values(arch)
        return arch

    # --- codec -----------------------------------------------------------------------------------
    def to_str(self, arch: Architecture) -> str:
        return _matrix_str(self.matrix(arch))

    def from_str(self, text: str) -> Architecture:
        if not isinstance(text, str):
            raise ArchitectureError(f"{self.name}: expected a genotype string, got {text!r}")
        rows = text.strip().split("/")
        if len(rows) != self.cells:
            raise ArchitectureError(f"{self.name}: expected {self.cells} rows of {ROW} values separated by '/', "
                                    f"got {len(rows)} in {text!r}")
        try:
            matrix = [[int(v) for v in row.split(",")] for row in rows]
        except ValueError:
            raise ArchitectureError(f"{self.name}: genotype {text!r} holds a value that is not an integer") from None
        if any(len(row) != ROW for row in matrix):
            raise ArchitectureError(f"{self.name}: every row needs {ROW} values, got {text!r}")
        return self.from_matrix(matrix)

    # --- operators (EAGAN's, valid by rejection) -------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Architecture:
        model = self.get_choice_model()
        while True:
            values = model.sample(rng)
            if self.is_valid(values):
                return self._arch(values)

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> Architecture:
        """EAGAN's mutation: one random element of one random cell takes another valid value."""
        model = self.get_choice_model()
        values = list(self._values(arch))
        for _ in range(1000):
            candidate = model.mutate(values, rng)
            if self.is_valid(candidate) and candidate != tuple(values):
                return self._arch(candidate)
        raise ArchitectureError(f"{self.name}: no valid mutation of {self.to_str(arch)} found")

    def crossover(self, a: Architecture, b: Architecture, rng: np.random.Generator) -> Architecture:
        """EAGAN's crossover: ``a`` with one random element copied from ``b`` (``a`` itself when no copy is valid)."""
        model = self.get_choice_model()
        va, vb = list(self._values(a)), self._values(b)
        order = rng.permutation(len(va))
        for i in order:
            if vb[i] is None or vb[i] == va[i]:
                continue
            child = va.copy()
            child[i] = vb[i]
            child = list(model._complete(child, lambda choice: choice.sample(rng)))
            if self.is_valid(child):
                return self._arch(tuple(child))
        return a

    def neighbors(self, arch: Architecture) -> List[Architecture]:
        model = self.get_choice_model()
        return [self._arch(v) for v in model.neighbors(self._values(arch)) if self.is_valid(v)]


class GeneratorSpace(_GanSpace):
    SUPERNET_OPTIONS = (Option("width", Int(minimum=0), "channels of every generator cell (gf_dim; 0: the variant's)"),
                        Option("latent_per_cell", Int(minimum=0), "latent dimensions injected per cell (0: the variant's)"))

    def _row_choices(self, cell: int) -> list:
        return ([Categorical(f"c{cell + 1}_up{j}", tuple(range(len(UP_OPS)))) for j in range(2)]
                + [Categorical(f"c{cell + 1}_op{j}", tuple(range(len(NORMAL_OPS)))) for j in range(2, ROW)])

    def row_problem(self, row) -> str:
        if row[2] == 0 and row[3] == 0:
            return "edges 2 and 3 (the inputs of the first normal node) are both none"
        if row[4] == 0 and row[5] == 0 and row[6] == 0:
            return "edges 4, 5 and 6 (the inputs of the cell output) are all none"
        return ""

    def latent_dim(self, latent_per_cell: int = 0) -> int:
        return self.cells * (latent_per_cell or self.config["latent_per_cell"])

    def supernet(self, num_classes: int = 0, width: int = 0, latent_per_cell: int = 0):
        from search_spaces.gan_supernet import GeneratorSupernet

        return GeneratorSupernet(self, width=width or self.config["width"],
                                 latent_per_cell=latent_per_cell or self.config["latent_per_cell"])

    def build(self, arch: Architecture, num_classes: int = 10, width: int = 0, latent_per_cell: int = 0):
        """The stand-alone generator of ``arch`` (z of ``latent_dim`` -> images in [-1, 1])."""
        from search_spaces.gan_supernet import Generator

        return Generator(self.matrix(arch), self.config, width=width or self.config["width"],
                         latent_per_cell=latent_per_cell or self.config["latent_per_cell"])

    def cost(self, arch: Architecture, num_classes: int = 10, input_size: int = 0, **options):
        """Parameters (millions) of the stand-alone generator (``options``: width, latent_per_cell)."""
        from nastk.cost import count_parameters

        return {"params_m": count_parameters(self.build(arch, **options)) / 1e6}

    def fixed_discriminator(self):
        """EAGAN's fixed stage-1 discriminator for this variant's images (what a generator search trains against)."""
        from search_spaces.gan_supernet import FixedDiscriminator

        return FixedDiscriminator(self.config["channels"], self.config["image_size"])


class DiscriminatorSpace(_GanSpace):
    SUPERNET_OPTIONS = (Option("width", Int(minimum=0), "channels of every discriminator cell (0: the variant's)"),)

    def _row_choices(self, cell: int) -> list:
        c = f"c{cell + 1}"
        return ([Categorical(f"{c}_op0", tuple(range(1, len(NORMAL_OPS))))]
                + [Categorical(f"{c}_op{j}", tuple(range(len(NORMAL_OPS)))) for j in range(1, 5)]
                + [Categorical(f"{c}_down", tuple(range(-1, len(DOWN_OPS)))),
                   Categorical(f"{c}_shortcut", tuple(range(len(DOWN_OPS))),
                               active_if=Condition(f"{c}_down", tuple(range(len(DOWN_OPS)))))])

    def row_problem(self, row) -> str:
        if row[1] == 0 and row[2] == 0:
            return "edges 1 and 2 (the inputs of node 2) are both none"
        if row[3] == 0 and row[4] == 0:
            return "edges 3 and 4 (the inputs of node 3) are both none"
        return ""

    def supernet(self, num_classes: int = 0, width: int = 0):
        from search_spaces.gan_supernet import DiscriminatorSupernet

        return DiscriminatorSupernet(self, width=width or self.config["width"])

    def build(self, arch: Architecture, num_classes: int = 10, width: int = 0):
        from search_spaces.gan_supernet import Discriminator

        return Discriminator(self.matrix(arch), self.config, width=width or self.config["width"])

    def cost(self, arch: Architecture, num_classes: int = 10, input_size: int = 0, **options):
        """Parameters (millions) of the stand-alone discriminator (``options``: width)."""
        from nastk.cost import count_parameters

        return {"params_m": count_parameters(self.build(arch, **options)) / 1e6}


class DigitsGeneratorSpace(GeneratorSpace):
    name, variant = "gan-g-digits", "digits"


class CifarGeneratorSpace(GeneratorSpace):
    name, variant = "gan-g-cifar", "cifar"


class DigitsDiscriminatorSpace(DiscriminatorSpace):
    name, variant = "gan-d-digits", "digits"


class CifarDiscriminatorSpace(DiscriminatorSpace):
    name, variant = "gan-d-cifar", "cifar"


#: the generator and discriminator space of each data set
SPACES_OF = {"digits": ("gan-g-digits", "gan-d-digits"), "cifar10": ("gan-g-cifar", "gan-d-cifar")}
