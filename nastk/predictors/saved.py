"""A fitted predictor on disk: ``nastk proxies fit parzc --save PATH`` writes one, the ``parzc`` evaluator
(:mod:`nastk.evaluators.predictor`) scores new architectures with it.

The file is a torch ``.pt`` file that ``torch.load(weights_only=True)`` reads (tensors, dicts, lists,
strings and numbers only, so loading one runs no code from it). It holds everything needed to score
an architecture exactly as the fit scored its held-out architectures::

    {"nastk": "parzc-predictor", "format": 1,
     "variant": "parzc", "model": {"config": "small", <ParZCConfig fields>} or "mlp", "in_features": 294,
     "state_dict": {name: tensor}, "scaler": {"mean": float64 tensor, "std": float64 tensor},
     "features": LayerwisePool.protocol(): statistics, format, seed, batch_size, dataset, C, N, slots,
                 pool_seed, layout ("compact"), width,
     "fit": {"dataset", "protocols" (train/eval labels), "pool_size", "train_size", "seed", "train" (the
             TrainConfig), "mc_samples", "held_out", "kendall", "spearman", "pearson",
             "mean_predictive_std", "final_train_loss"},
     "content_sha256": sha256 of the tensors and of every other entry}

A file that is missing, not a nastk predictor, of another format version or damaged is one
:mod:`nastk.errors` error, never a traceback.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Tuple, Union

import numpy as np
import torch

from nastk.devices import HOST, resolve_device
from nastk.errors import ConfigError, CorruptDataError, DataError, MissingDataError
from nastk.integrity import content_sha256
from nastk.paths import atomic_write
from nastk.plain_data import plain
from nastk.predictors.experiment import FittedPredictor, build_model
from nastk.predictors.layerwise_features import EXTRACTION_KEYS
from nastk.predictors.fitting import FeatureScaler, predict

KIND = "parzc-predictor"
FORMAT_VERSION = 1
#: What the feature protocol must name for a new architecture's x_zc to be computed as the pool's.
FEATURE_KEYS = EXTRACTION_KEYS + ("statistics", "layout", "width")
#: The parts of a fit's report a saved predictor keeps (how it was trained and how well it ranked).
FIT_KEYS = ("protocols", "pool_size", "train_size", "seed", "train", "held_out", "kendall", "spearman", "pearson",
            "mean_predictive_std", "final_train_loss")


@dataclass
class SavedPredictor:
    """A loaded predictor: the model on its device, the training split's scaler and the records."""

    path: Path
    variant: str
    model_config: Union[str, Dict[str, object]]
    model: torch.nn.Module
    scaler: FeatureScaler
    features: Dict[str, object]
    fit: Dict[str, object]
    sha256: str

    def predict(self, x_raw: np.ndarray, ops: np.ndarray, mc_samples: int = 20,
                seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
        """(mean, std) of the predicted scores of raw x_zc rows (as :func:`layerwise_features.features_of`
        gives them) and op indices, scaled with the training split's statistics. ``seed`` fixes the
        Monte-Carlo draws, so a row's prediction does not depend on the other rows."""
        x_raw = np.asarray(x_raw, dtype=np.float64)
        if x_raw.ndim != 2 or x_raw.shape[1] != self.features["width"]:
            raise ConfigError(f"predictor {self.path} takes rows of {self.features['width']} layer-wise values, "
                              f"got an array of shape {x_raw.shape}")
        return predict(self.model, self.scaler.transform(x_raw), ops, mc_samples, seed=seed)

    def summary(self) -> str:
        """One readable line: what was trained on what, and how well it ranked the held-out architectures."""
        fit = self.fit
        size = "" if isinstance(self.model_config, str) else f" ({self.model_config.get('config')})"
        return (f"{self.variant}{size} trained on {fit['train_size']} {fit['dataset']} architectures; "
                f"held-out Kendall {fit['kendall']:.3f} on {fit['held_out']}")


def check_destination(path: Union[str, Path]) -> Path:
    """``path`` if a predictor can be written there; checked before any work so a refused command writes nothing."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--save {path} is a folder; name a file in it, e.g. {path / 'parzc.pt'}")
    existing = path.absolute().parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write --save {path}: {existing} is not a writable folder")
    return path


def save_predictor(path: Union[str, Path], fitted: FittedPredictor) -> Path:
    """Write ``fitted`` to ``path`` atomically (see the module docstring for the content)."""
    missing = [key for key in FEATURE_KEYS if key not in fitted.features]
    if missing:
        raise ConfigError(f"this predictor's inputs do not record how they were computed ({', '.join(missing)} "
                          "missing); only predictors fitted on a layer-wise pool can be saved")
    meta = {"variant": fitted.report["variant"], "model": fitted.report["model"],
            "in_features": int(fitted.features["width"]), "features": dict(fitted.features),
            "fit": {"dataset": fitted.dataset, "mc_samples": int(fitted.mc_samples),
                    **{key: fitted.report[key] for key in FIT_KEYS}}}
    meta = plain(meta)  # numpy numbers and tuples as the Python numbers and lists the file gives back
    state = {name: tensor.detach().cpu() for name, tensor in fitted.model.state_dict().items()}
    scaler = {name: torch.from_numpy(values) for name, values in fitted.scaler.state_dict().items()}
    content = {"nastk": KIND, "format": FORMAT_VERSION, **meta, "state_dict": state, "scaler": scaler,
               "content_sha256": _digest(state, scaler, meta)}
    buffer = io.BytesIO()
    torch.save(content, buffer)
    path = Path(path)
    with atomic_write(path) as handle:  # an OSError is a WriteError naming the path and the cause
        handle.write(buffer.getvalue())
    return path


def load_predictor(path: Union[str, Path], device=None) -> SavedPredictor:
    """The predictor :func:`save_predictor` wrote, checked whole (on the host), its model in eval mode on
    ``device`` (None: torch's default device, :func:`nastk.devices.resolve_device`)."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"no saved predictor at {path} "
                               "(write one with `nastk proxies fit parzc ... --save PATH`)")
    try:
        content = torch.load(path, map_location=HOST, weights_only=True)
    except Exception as error:  # zip, pickle and tensor errors all mean a file torch cannot read safely
        raise CorruptDataError(f"cannot read saved predictor {path} ({type(error).__name__}): it is damaged or not "
                               "a file written by `nastk proxies fit parzc --save`") from None
    if not isinstance(content, dict) or content.get("nastk") != KIND:
        raise DataError(f"{path} is not a nastk predictor (one written by `nastk proxies fit parzc --save`)")
    if content.get("format") != FORMAT_VERSION:
        raise DataError(f"{path} is a nastk predictor of format version {content.get('format')!r}; this nastk reads "
                        f"version {FORMAT_VERSION} (refit it with `nastk proxies fit parzc --save`)")
    try:
        meta = {key: content[key] for key in ("variant", "model", "in_features", "features", "fit")}
        state, scaler = content["state_dict"], content["scaler"]
        if content["content_sha256"] != _digest(state, scaler, meta):
            raise CorruptDataError(f"saved predictor {path} fails its content checksum (altered or damaged)")
        missing = [key for key in FEATURE_KEYS if key not in meta["features"]]
        if missing:
            raise CorruptDataError(f"saved predictor {path} does not say how its inputs were computed "
                                   f"({', '.join(missing)} missing)")
        model_config = meta["model"]
        fields = {} if isinstance(model_config, str) else {k: v for k, v in model_config.items() if k != "config"}
        name = "small" if isinstance(model_config, str) else model_config["config"]
        model = build_model(meta["variant"], int(meta["in_features"]), name, **fields)
        model.load_state_dict(state)
        features_scaler = FeatureScaler.from_state_dict({key: value.numpy() for key, value in scaler.items()})
    except DataError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
        raise CorruptDataError(f"saved predictor {path} is incomplete or inconsistent "
                               f"({type(error).__name__})") from None
    model.to(resolve_device(device)).eval()
    return SavedPredictor(path, meta["variant"], model_config, model, features_scaler, meta["features"], meta["fit"],
                          content["content_sha256"])


def _digest(state: Dict[str, torch.Tensor], scaler: Dict[str, torch.Tensor], meta: Dict[str, object]) -> str:
    """sha256 of the tensors (names, dtypes, shapes, bytes) and of the plain entries."""
    arrays = {**{f"state/{name}": tensor.numpy() for name, tensor in state.items()},
              **{f"scaler/{name}": tensor.numpy() for name, tensor in scaler.items()}}
    return hashlib.sha256((content_sha256(arrays) + json.dumps(meta, sort_keys=True)).encode()).hexdigest()
