"""An explicit benchmark protocol: which dataset, split, training length and source a number comes from.

NAS-Bench-201 users are routinely misled by silent defaults (12- vs 200-epoch results; ``cifar10``,
trained on train+valid, vs ``cifar10-valid``, trained on train only). Here every benchmark number
carries its protocol, and impossible combinations fail early with a message saying what to use.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from nastk.errors import ConfigError

DATASETS = ("cifar10-valid", "cifar10", "cifar100", "ImageNet16-120")
SPLITS = ("train", "valid", "test")
EPOCHS = (12, 200)


@dataclass(frozen=True)
class BenchmarkProtocol:
    """Where a number of any benchmark table comes from; each benchmark validates its own values."""

    dataset: str
    split: str
    epochs: int
    #: Source column family (e.g. ``nb201api``, ``nats``, ``official``); None lets the table pick its
    #: documented default for this (dataset, split, epochs), which is then recorded in results.
    family: Optional[str] = None

    @property
    def key(self) -> str:
        """``dataset/split/epochs[/family]``, the table column name."""
        base = f"{self.dataset}/{self.split}/{self.epochs}"
        return f"{base}/{self.family}" if self.family else base

    def to_dict(self):
        return {"dataset": self.dataset, "split": self.split, "epochs": self.epochs, "family": self.family}

    def __str__(self) -> str:
        return self.key


@dataclass(frozen=True)
class Protocol(BenchmarkProtocol):
    """An NB201 protocol: rejects datasets, splits and epochs that NB201 does not have."""

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ConfigError(f"unknown NB201 dataset {self.dataset!r}; choose from {', '.join(DATASETS)}")
        if self.split not in SPLITS:
            raise ConfigError(f"unknown split {self.split!r}; choose from {', '.join(SPLITS)}")
        try:
            epochs = int(self.epochs)
        except (TypeError, ValueError):
            raise ConfigError(f"epochs must be 12 or 200, got {self.epochs!r}") from None
        if epochs not in EPOCHS:
            raise ConfigError(f"NB201 has results after 12 or 200 epochs, not {self.epochs!r}")
        object.__setattr__(self, "epochs", epochs)
        if self.dataset == "cifar10" and self.split == "valid":
            raise ConfigError(
                "NB201's 'cifar10' is trained on train+valid and has no validation split; "
                "use dataset 'cifar10-valid' (trained on train, validated on x-valid)"
            )

    @classmethod
    def parse(cls, text: str) -> "Protocol":
        """Parse ``dataset/split/epochs[/family]``, e.g. ``cifar10-valid/valid/12``."""
        parts = text.split("/")
        if len(parts) not in (3, 4):
            raise ConfigError(f"protocol {text!r} must be dataset/split/epochs[/family], e.g. cifar10/test/200")
        return cls(parts[0], parts[1], parts[2], parts[3] if len(parts) == 4 else None)

    def with_family(self, family: str) -> "Protocol":
        return Protocol(self.dataset, self.split, self.epochs, family)
