"""A fitted accuracy predictor as an evaluator (kind ``accuracy-predictor``, target ``PATH``): EQ-Net's conditional
accuracy predictor (CQAP, methods.md 11B) guiding any nastk strategy.

EQ-Net scores many configurations of its trained supernet after adaptive BN on held-out training images, fits an
MLP on their per-layer bits, and lets a genetic search maximise the prediction under an average-bit budget. Here
:func:`fit_from_supernet` does the first two for a finished ``nastk supernet train`` run: configurations drawn by
the space's :meth:`~search_spaces.quantized.QuantizedSpace.sample_spread` (average bits over the whole range),
scored by the supernet evaluator on the run's held-out training images (exactly what ``--evaluator
supernet:RUN_DIR`` returns), some kept aside for the predictor's Kendall tau; the predictor, with every labelled
configuration, is written into the run folder (:data:`FILE_NAME`), so :func:`refit` fits other inputs or sizes on
the same labels without scoring again. The search is then a plain ``nastk search``::

    nastk search --space quant:mobilenet@largest --strategy nsga2 \\
        --evaluator accuracy-predictor:RUN_DIR/accuracy_predictor.json --constraint 'avg_bits<=4'

The predictor is scikit-learn's ``MLPRegressor`` (ReLU, Adam, L2 ``alpha``) on the standardised accuracy. Its
inputs (``features``): ``onehot``, CQAP's, one-hot positions of every choice with more than one option; or
``ordinal``, the space's own encoding (an ordered choice's position scaled to [0, 1]), which shares what it
learns about 3 and 5 bits with 4. The file is JSON (layer weights as lists of numbers, float64 written exactly),
so reading it runs no code; prediction is the MLP's forward pass in numpy, the numbers scikit-learn's ``predict``
gives. numpy and scikit-learn load inside the functions: the CLI imports this module to build its help.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from nastk.architecture import Architecture
from nastk.errors import ConfigError, CorruptDataError, DataError, MissingDataError
from nastk.evaluator import Evaluator, Result

KIND = "nastk-accuracy-predictor"
FORMAT_VERSION = 1
#: where :func:`fit_from_supernet` writes the predictor in the supernet's run folder
FILE_NAME = "accuracy_predictor.json"
FEATURES = ("onehot", "ordinal")
#: the metric (and objective) of the evaluator's results: a prediction, not a measured accuracy
METRIC = "predicted_accuracy"


def features_of(space, archs: Sequence[Architecture], kind: str):
    """The predictor's input rows of ``archs`` (float64): ``onehot`` or ``ordinal`` (module docstring)."""
    import numpy as np

    if kind not in FEATURES:
        raise ConfigError(f"predictor features must be one of {', '.join(FEATURES)}, got {kind!r}")
    if kind == "ordinal":
        return np.stack([space.encode(arch) for arch in archs]).astype(np.float64)
    model = space.get_choice_model()
    varied = [(i, choice) for i, choice in enumerate(model.choices) if len(choice.options) > 1]
    rows = np.zeros((len(archs), sum(len(choice.options) for _, choice in varied)))
    for row, arch in zip(rows, archs):
        values, offset = space._values(arch), 0
        for i, choice in varied:
            if values[i] is not None:
                row[offset + choice.position(values[i])] = 1.0
            offset += len(choice.options)
    return rows


@dataclass
class AccuracyPredictor:
    """A fitted MLP over one space's architectures: ``predict(archs)`` in the accuracy's own units."""

    space: str
    features: str
    weights: List[Any]  # numpy arrays, (inputs, outputs) per layer
    biases: List[Any]
    target_mean: float
    target_std: float
    #: how it was fitted: sizes, hyper-parameters, source run, held-out Kendall tau, the labelled configurations
    fit: Dict[str, Any] = field(default_factory=dict)

    def predict(self, archs: Sequence[Architecture]):
        """Predicted accuracies of ``archs`` (architectures of :attr:`space`)."""
        import numpy as np

        from nastk.registry import get_space

        space = get_space(self.space)
        wrong = [arch for arch in archs if not isinstance(arch, Architecture) or arch.space != self.space]
        if wrong:
            raise ConfigError(f"this accuracy predictor scores architectures of {self.space}, got {wrong[0]!r}"[:300])
        hidden = features_of(space, archs, self.features)
        for weight, bias in zip(self.weights[:-1], self.biases[:-1]):
            hidden = np.maximum(hidden @ weight + bias, 0.0)
        out = (hidden @ self.weights[-1] + self.biases[-1])[:, 0]
        return out * self.target_std + self.target_mean

    def save(self, path) -> Path:
        """Write the predictor as JSON, atomically."""
        from nastk.paths import write_file
        from nastk.plain_data import plain

        content = {"nastk": KIND, "format": FORMAT_VERSION, "space": self.space, "features": self.features,
                   "weights": [w.tolist() for w in self.weights], "biases": [b.tolist() for b in self.biases],
                   "target": {"mean": self.target_mean, "std": self.target_std}, "fit": plain(self.fit)}
        return write_file(Path(path), json.dumps(content))

    @classmethod
    def load(cls, path) -> "AccuracyPredictor":
        """The predictor :meth:`save` wrote; a missing, foreign or damaged file is one nastk error."""
        import numpy as np

        path = Path(path)
        if not path.is_file():
            raise MissingDataError(f"no accuracy predictor at {path} (fit one with "
                                   f"nastk.evaluators.accuracy_predictor.fit_from_supernet)")
        try:
            content = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise CorruptDataError(f"cannot read accuracy predictor {path} ({type(error).__name__})") from None
        if not isinstance(content, dict) or content.get("nastk") != KIND:
            raise DataError(f"{path} is not a nastk accuracy predictor")
        if content.get("format") != FORMAT_VERSION:
            raise DataError(f"{path} is an accuracy predictor of format {content.get('format')!r}; this nastk reads "
                            f"format {FORMAT_VERSION} (fit it again)")
        try:
            weights = [np.asarray(w, dtype=np.float64) for w in content["weights"]]
            biases = [np.asarray(b, dtype=np.float64) for b in content["biases"]]
            shapes_fit = all(w.ndim == 2 and b.shape == (w.shape[1],) for w, b in zip(weights, biases)) and all(
                a.shape[1] == b.shape[0] for a, b in zip(weights, weights[1:]))
            if not weights or len(weights) != len(biases) or not shapes_fit or weights[-1].shape[1] != 1:
                raise ValueError("layer shapes")
            predictor = cls(str(content["space"]), str(content["features"]), weights, biases,
                            float(content["target"]["mean"]), float(content["target"]["std"]), dict(content["fit"]))
        except (KeyError, TypeError, ValueError) as error:
            raise CorruptDataError(f"accuracy predictor {path} is incomplete or inconsistent ({error})") from None
        if predictor.features not in FEATURES:
            raise CorruptDataError(f"accuracy predictor {path} names unknown features {predictor.features!r}")
        return predictor

    def summary(self) -> str:
        fit = self.fit
        tau = fit.get("kendall_tau")
        return (f"MLP {tuple(fit.get('hidden', ()))} on {self.features} features of {fit.get('train_size')} "
                f"{self.space} configurations" + (f"; Kendall tau {tau:.3f} on {fit.get('test_size')} held-out ones"
                                                  if isinstance(tau, float) else ""))


def fit_predictor(space, archs: Sequence[Architecture], accuracies: Sequence[float], features: str = "onehot",
                  hidden: Sequence[int] = (200, 200), alpha: float = 1e-2, seed: int = 0,
                  max_iter: int = 2000) -> AccuracyPredictor:
    """An MLP fitted on ``archs``' measured ``accuracies`` (any units; predictions come back in them)."""
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor
    from threadpoolctl import threadpool_limits

    y = np.asarray(accuracies, dtype=np.float64)
    if len(archs) != len(y) or len(y) < 2 or not np.isfinite(y).all():
        raise ConfigError(f"a predictor needs at least 2 configurations with finite accuracies, one each; got "
                          f"{len(archs)} configurations and {len(y)} accuracies")
    hidden = tuple(int(h) for h in hidden)
    if not hidden or min(hidden) < 1:
        raise ConfigError(f"hidden layer sizes must be positive integers, got {hidden}")
    x = features_of(space, archs, features)
    mean, std = float(y.mean()), float(y.std()) or 1.0
    model = MLPRegressor(hidden_layer_sizes=hidden, alpha=alpha, max_iter=max_iter, random_state=seed)
    # one BLAS thread: a few hundred rows gain nothing from more, and on busy cores they cost ~10x
    with warnings.catch_warnings(), threadpool_limits(1):  # a fixed iteration budget is the recipe, not a failure
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, (y - mean) / std)
    fit = {"train_size": len(y), "hidden": list(hidden), "alpha": alpha, "seed": seed, "max_iter": max_iter,
           "iterations": int(model.n_iter_), "final_loss": float(model.loss_)}
    return AccuracyPredictor(space.name, features, [np.array(w) for w in model.coefs_],
                             [np.array(b) for b in model.intercepts_], mean, std, fit)


def fit_from_supernet(run_dir, *, train_size: int = 200, test_size: int = 50, seed: int = 0, device=None,
                      eval_size: Optional[int] = None, bn_calibration: Optional[int] = None,
                      features: str = "onehot", hidden: Sequence[int] = (200, 200), alpha: float = 1e-2,
                      path=None) -> AccuracyPredictor:
    """Fit a predictor on a trained ``quant:`` supernet's held-out child accuracies and write it to ``path``
    (default: ``RUN_DIR/accuracy_predictor.json``).

    ``train_size + test_size`` distinct configurations drawn by the space's ``sample_spread`` (seeded) are scored
    by :class:`~nastk.evaluators.supernet.SupernetEvaluator` on the run's held-out training images (``eval_size``
    of them, default all; BN recalibrated on ``bn_calibration`` training batches, default the evaluator's); the
    first ``train_size`` fit the MLP, the rest give its Kendall tau (recorded in the file's ``fit``). ``device``:
    where the supernet runs (None: torch's default device)."""
    import numpy as np

    from nastk.evaluators.supernet import SupernetEvaluator
    from nastk.oneshot.trainer import load_trained
    from nastk.registry import get_space

    if int(train_size) < 2 or int(test_size) < 0:
        raise ConfigError(f"train_size must be >= 2 and test_size >= 0, got {train_size} and {test_size}")
    if features not in FEATURES:  # checked before the (long) scoring
        raise ConfigError(f"predictor features must be one of {', '.join(FEATURES)}, got {features!r}")
    _, trained, _ = load_trained(run_dir, device)  # a folder that is no finished run: its own one-line error
    space = get_space(trained.space)
    if not hasattr(space, "sample_spread"):
        raise ConfigError(f"an accuracy predictor is fitted on a quant:SPACE supernet's configurations; {run_dir} "
                          f"is a supernet over {space.name}")
    rng = np.random.default_rng(seed)
    archs: List[Architecture] = []
    for _ in range(100 * (train_size + test_size)):
        arch = space.sample_spread(rng)
        if arch not in archs:
            archs.append(arch)
        if len(archs) == train_size + test_size:
            break
    else:
        raise ConfigError(f"{space.name} has fewer than {train_size + test_size} distinct configurations to fit on")
    evaluator = SupernetEvaluator(space, run_dir, eval_size=eval_size, split="held_out",
                                  bn_calibration=bn_calibration, device=device)
    started = time.perf_counter()
    accuracies = [evaluator.evaluate(arch).value for arch in archs]
    scoring_s = time.perf_counter() - started
    labelled = list(zip(archs, accuracies))
    predictor = fit_labelled(space, labelled[:train_size], labelled[train_size:], features, hidden, alpha, seed)
    predictor.fit.update({"source": {"run_dir": str(run_dir), **evaluator.describe(), "images": len(evaluator.x)},
                          "sampler": "sample_spread", "scoring_s": round(scoring_s, 2)})
    predictor.save(Path(run_dir) / FILE_NAME if path is None else path)
    return predictor


def fit_labelled(space, train: Sequence[Tuple[Architecture, float]], test: Sequence[Tuple[Architecture, float]],
                 features: str = "onehot", hidden: Sequence[int] = (200, 200), alpha: float = 1e-2,
                 seed: int = 0) -> AccuracyPredictor:
    """:func:`fit_predictor` on the ``(architecture, accuracy)`` pairs of ``train``, its Kendall tau on ``test``;
    both lists are recorded in the predictor's ``fit`` (so it can be refitted without scoring again)."""
    import numpy as np

    from nastk.metrics import kendall_tau

    predictor = fit_predictor(space, [a for a, _ in train], [acc for _, acc in train], features, hidden, alpha, seed)
    predicted = predictor.predict([a for a, _ in test]) if test else np.array([])
    tau = kendall_tau(predicted, [acc for _, acc in test]) if len(test) > 1 else float("nan")
    predictor.fit.update({
        "test_size": len(test), "kendall_tau": tau if np.isfinite(tau) else None,  # None: < 2 labels, or all equal
        "train": [[arch.to_str(), float(acc)] for arch, acc in train],
        "test": [[arch.to_str(), float(acc), float(p)] for (arch, acc), p in zip(test, predicted)]})
    return predictor


def refit(predictor: AccuracyPredictor, **settings) -> AccuracyPredictor:
    """A predictor fitted on the labelled configurations ``predictor`` records, with :func:`fit_labelled`'s
    ``settings`` (``features``, ``hidden``, ``alpha``, ``seed``) changed: no supernet scoring."""
    from nastk.registry import get_space

    unknown = sorted(set(settings) - {"features", "hidden", "alpha", "seed"})
    if unknown:
        raise ConfigError(f"refit changes features, hidden, alpha or seed, not {', '.join(unknown)}")
    space, fit = get_space(predictor.space), predictor.fit
    train = [(space.from_str(arch), acc) for arch, acc in fit["train"]]
    test = [(space.from_str(arch), acc) for arch, acc, _ in fit["test"]]
    options = {"features": predictor.features, "hidden": fit["hidden"], "alpha": fit["alpha"], "seed": fit["seed"],
               **settings}
    fitted = fit_labelled(space, train, test, **options)
    fitted.fit.update({key: fit[key] for key in ("source", "sampler", "scoring_s") if key in fit})
    return fitted


class AccuracyPredictorEvaluator(Evaluator):
    """EQ-Net's accuracy predictor (``predicted_accuracy``, higher is better) from a file ``fit_from_supernet`` wrote.

    The prediction is computed in numpy on the host whatever ``device`` says."""

    objective = METRIC
    target, target_metavar = "path", "PATH"

    def __init__(self, space, path, seed: int = 0, device=None):
        self.space, self.path = space, Path(path)
        self.predictor = AccuracyPredictor.load(self.path)
        if self.predictor.space != space.name:
            raise ConfigError(f"accuracy predictor {self.path} scores {self.predictor.space} configurations, not "
                              f"the searched space {space.name}")

    @classmethod
    def fingerprint(cls, config: Dict[str, Any]) -> Optional[str]:
        """The predictor file's sha256 (a missing file is refused when the evaluator is built)."""
        from nastk.paths import sha256_of

        path = Path(config[cls.target])
        return f"sha256:{sha256_of(path)}" if path.is_file() else None

    def evaluate(self, arch: Architecture) -> Result:
        started = time.perf_counter()
        value = float(self.predictor.predict([arch])[0])
        return Result({METRIC: value}, cost_s=time.perf_counter() - started, objective=METRIC,
                      protocol={"predictor": str(self.path)})

    def describe(self) -> Dict[str, Any]:
        return {"evaluator": "accuracy-predictor", "objective": f"predicted accuracy: {self.predictor.summary()}",
                "path": str(self.path), "source": self.predictor.fit.get("source", {}).get("run_dir")}

