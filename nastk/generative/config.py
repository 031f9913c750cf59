"""The options of an EAGAN run (methods.md 5), declared once for Python, config files and ``nastk gan``.

Light on purpose (no torch): the CLI builds its flags from :data:`FIELD_TYPES` and :data:`HELP`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Dict

from nastk.errors import ConfigError
from nastk.options import Bool, Float, Int, Text

GAN_DATASETS = ("digits", "cifar10")

SELECTIONS = ("eagan", "nsga2")
DEDUP = ("all", "random_only")
RESETS = ("all", "new_only")


@dataclass
class EaganConfig:
    """A two-stage EAGAN search (EAGAN-lite defaults for digits, methods.md 5.6) and its final training."""

    dataset: str = "digits"
    seed: int = 0
    population: int = 8
    #: reported Pareto candidates per round (EAGAN's num_selected)
    num_selected: int = 4
    batch_size: int = 64
    g_batch_factor: int = 2
    stage1_epochs: int = 12
    stage1_warmup: int = 4
    stage1_n_critic: int = 2
    stage2_epochs: int = 8
    stage2_warmup: int = 2
    stage2_n_critic: int = 5
    ga_interval: int = 2
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    #: generated images per IS / FID during the search
    eval_samples: int = 600
    selection: str = "eagan"
    dedup: str = "all"
    alias_generator_copies: bool = False
    reset: str = "all"
    #: final stand-alone training of the winning pair (D steps; G steps = D steps / n_critic)
    final_d_steps: int = 3000
    final_n_critic: int = 5
    final_lr_g: float = 1e-4
    final_lr_d: float = 2e-4
    final_ema: float = 0.999
    final_eval_every: int = 10
    #: cell widths (0: the space variant's)
    g_width: int = 0
    d_width: int = 0
    latent_per_cell: int = 0
    #: training images used (0: the whole training split; tests use a few)
    train_size: int = 0

    def __post_init__(self):
        for name, value_type in FIELD_TYPES.items():
            setattr(self, name, value_type.check(name, getattr(self, name), "the EAGAN options"))
        if self.num_selected > self.population:
            raise ConfigError(f"num_selected ({self.num_selected}) cannot exceed population ({self.population})")

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "EaganConfig":
        if not isinstance(data, dict):
            raise ConfigError("EAGAN options must be a mapping")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown EAGAN option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)

    @property
    def variant(self) -> str:
        return "digits" if self.dataset == "digits" else "cifar"

    @property
    def spaces(self):
        """(generator space, discriminator space) of the data set's variant."""
        from nastk.registry import get_space

        return get_space(f"gan-g-{self.variant}"), get_space(f"gan-d-{self.variant}")


#: the type and range of every field (flags and config files are checked with them)
FIELD_TYPES = {"dataset": Text(choices=GAN_DATASETS), "seed": Int(minimum=0), "population": Int(minimum=2),
               "num_selected": Int(minimum=1), "batch_size": Int(minimum=2), "g_batch_factor": Int(minimum=1),
               "stage1_epochs": Int(minimum=1), "stage1_warmup": Int(minimum=0), "stage1_n_critic": Int(minimum=1),
               "stage2_epochs": Int(minimum=0), "stage2_warmup": Int(minimum=0), "stage2_n_critic": Int(minimum=1),
               "ga_interval": Int(minimum=1), "lr_g": Float(above=0), "lr_d": Float(above=0),
               "eval_samples": Int(minimum=10), "selection": Text(choices=SELECTIONS), "dedup": Text(choices=DEDUP),
               "alias_generator_copies": Bool(), "reset": Text(choices=RESETS), "final_d_steps": Int(minimum=0),
               "final_n_critic": Int(minimum=1), "final_lr_g": Float(above=0), "final_lr_d": Float(above=0),
               "final_ema": Float(minimum=0, below=1), "final_eval_every": Int(minimum=1), "g_width": Int(minimum=0),
               "d_width": Int(minimum=0), "latent_per_cell": Int(minimum=0), "train_size": Int(minimum=0)}

#: one line of help per field (the CLI's flags)
HELP = {
    "dataset": "digits (8x8, 2 cells) or cifar10 (the shared 5k subset, 32x32, 3 cells)",
    "seed": "seeds every random draw of the run",
    "population": "individuals per population (EAGAN: 32)",
    "num_selected": "Pareto candidates reported per round (EAGAN: 8)",
    "batch_size": "D batch (the G batch is g_batch_factor times it)",
    "g_batch_factor": "G batch / D batch (EAGAN: 80 / 40 = 2)",
    "stage1_epochs": "stage 1 (G search) epochs (EAGAN: 200)",
    "stage1_warmup": "stage 1 warm-up epochs with a fresh random G per window (EAGAN: 40)",
    "stage1_n_critic": "stage 1 D steps per G step (EAGAN: 1)",
    "stage2_epochs": "stage 2 (D search) epochs; 0 skips stage 2",
    "stage2_warmup": "stage 2 warm-up epochs (random D per window, copies untouched)",
    "stage2_n_critic": "stage 2 D steps per G step (EAGAN: 5)",
    "ga_interval": "epochs between EA rounds (EAGAN: 10)",
    "lr_g": "search Adam learning rate of G (EAGAN: 2e-4)",
    "lr_d": "search Adam learning rate of D (EAGAN: 4e-5 stage 1, 2e-4 stage 2)",
    "eval_samples": "generated images per IS / FID during the search (EAGAN: 5000)",
    "selection": "survivor selection: eagan (merged fronts, no crowding) or nsga2 (fronts + crowding distance)",
    "dedup": "offspring duplicates rejected: all (default) or random_only (the released code)",
    "alias_generator_copies": "stage 2: the released code's aliasing G copies (comparison only)",
    "reset": "stage 2 weight resetting after a selection: all copies (default) or new_only",
    "final_d_steps": "D steps of the final stand-alone training of the winners (0: none)",
    "final_n_critic": "final training D steps per G step",
    "final_lr_g": "final training Adam learning rate of G",
    "final_lr_d": "final training Adam learning rate of D",
    "final_ema": "final training EMA decay of G per G step (EAGAN: 0.999)",
    "final_eval_every": "final training: score the EMA G every N epochs",
    "g_width": "generator cell width (0: the variant's, digits 32, cifar 64)",
    "d_width": "discriminator cell width (0: the variant's)",
    "latent_per_cell": "latent dimensions per cell (0: the variant's, digits 32, cifar 40)",
    "train_size": "training images used (0: all)",
}
