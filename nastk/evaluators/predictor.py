"""A saved ParZC predictor as an evaluator (kind ``parzc``, target ``PATH``): an NB201 architecture's predicted score from
its layer-wise zero-cost statistics, so any query strategy can search with a learned proxy.

The statistics are those of the predictor's training pool, by construction: an architecture the cached
layer-wise pool holds is read from it; any other is computed with the pool's recorded protocol (seed,
batch, network size) on the CPU whatever ``device`` says, so the numbers match the pool's; ``device``
runs the predictor. Monte-Carlo draws are seeded per pass, so a score does not depend on which other
architectures are scored with it. The cost is the seconds the statistics took (the cache's record for
a cached row) plus the prediction's. torch and numpy load inside the methods: the CLI imports this
module to build its help.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from nastk.architecture import Architecture
from nastk.errors import ConfigError
from nastk.evaluator import Evaluator, Result
from nastk.options import Int, Option


class ParZCEvaluator(Evaluator):
    """A saved ParZC predictor's mean score (``parzc``, higher is better) and its Monte-Carlo spread.

    ``evaluate(arch)`` returns both (``parzc``, ``parzc_std``)."""

    objective = "parzc"
    target = "path"
    target_metavar = "PATH"
    reports_benchmark = True
    OPTIONS = (Option("mc_samples", Int(minimum=1), "forward passes averaged per prediction"),)

    def __init__(self, space, path, seed: int = 0, device=None, mc_samples: int = 20):
        """``device`` runs the predictor; None: torch's default device (:func:`nastk.devices.resolve_device`)."""
        from nastk.devices import check_device, resolve_device
        from nastk.predictors import layerwise_features
        from nastk.predictors.saved import load_predictor

        if space.name != "nb201":
            raise ConfigError(f"the parzc evaluator scores NB201 architectures (its layer-wise statistics exist for "
                              f"nb201 only), not architectures of space {space.name!r}")
        device = resolve_device(device)
        check_device(str(device))
        self.space, self.path, self.seed, self.device = space, Path(path), seed, device
        # checked here too: an API caller's mc_samples=0 is one line, not a silent single pass
        self.mc_samples = 20 if mc_samples is None else self.OPTIONS[0].check(mc_samples)
        self.predictor = load_predictor(self.path, device)
        self.extractor = layerwise_features.extractor_for(self.predictor.features)
        #: the per-layer proxies the predictor was fitted on (ParZC's three unless it says otherwise)
        self.statistics = tuple(self.predictor.features.get("statistics") or layerwise_features.STATISTICS)
        self.pool, self.cached_rows = self._cached_pool()

    def _cached_pool(self):
        """The cached layer-wise pool of the predictor's protocol and its rows by product code, if there is one."""
        from nastk.predictors import layerwise_features as lw

        features = self.predictor.features
        path = lw.cache_path(features["seed"], features["batch_size"], features["C"], features["N"],
                             statistics=self.statistics)
        if not path.is_file():
            return None, {}
        pool = lw.load_pool(path)
        if any(pool.meta.get(key) != features[key] for key in lw.EXTRACTION_KEYS):
            return None, {}
        return pool, {int(code): row for row, code in enumerate(pool.codes)}

    @classmethod
    def fingerprint(cls, config: Dict[str, Any]):
        """The saved predictor file's sha256 (a missing file is refused when the evaluator is built)."""
        from nastk.paths import sha256_of

        path = Path(config[cls.target])
        return f"sha256:{sha256_of(path)}" if path.is_file() else None

    def evaluate(self, arch: Architecture) -> Result:
        return self.evaluate_many([arch])[0]

    def evaluate_many(self, archs: Sequence[Architecture], progress: bool = False) -> List[Result]:
        """The results of many architectures with one batched prediction (the same numbers as one at a time);
        ``progress`` shows a line (or bar) per architecture whose statistics are read or computed."""
        import numpy as np

        from nastk.predictors.layerwise_features import features_of
        from nastk.predictors.parzc import op_indices
        from nastk.progress import Progress

        if not archs:
            return []
        ops = op_indices(self.space, archs)  # also refuses architectures of another space
        statistics = []
        with Progress(len(archs), "parzc", "architectures", enabled=progress) as bar:
            for arch in archs:
                statistics.append(self._statistics(arch))
                bar.update()
        x_raw = features_of({name: np.stack([values[name] for values, _, _ in statistics]) for name in self.statistics},
                            self.predictor.features["layout"], self.statistics)
        started = time.perf_counter()
        mean, std = self.predictor.predict(x_raw, ops, self.mc_samples, seed=self.seed)
        prediction_s = (time.perf_counter() - started) / len(archs)
        protocol = self.protocol()
        return [Result({"parzc": float(m), "parzc_std": float(s)}, cost_s=seconds + prediction_s, objective="parzc",
                       protocol={**protocol, "layerwise": source})
                for m, s, (_, seconds, source) in zip(mean, std, statistics)]

    def _statistics(self, arch: Architecture) -> Tuple[Dict[str, Any], float, str]:
        """One architecture's slotted statistics, the seconds they took, and whether they were cached or computed."""
        row = self.cached_rows.get(int(self.space.code(arch)))
        if row is not None:
            return {name: self.pool.values[name][row] for name in self.statistics}, float(self.pool.seconds[row]), "cached"
        started = time.perf_counter()
        values = self.extractor(arch)
        return values, time.perf_counter() - started, "computed"

    def protocol(self) -> Dict[str, Any]:
        return {"predictor": str(self.path), "predictor_sha256": self.predictor.sha256[:16],
                "variant": self.predictor.variant, "mc_samples": self.mc_samples, "seed": self.seed,
                "features": dict(self.predictor.features)}

    def describe(self) -> Dict[str, Any]:
        return {"evaluator": "parzc",
                "objective": f"ParZC's predicted score, mean of {self.mc_samples} Monte-Carlo passes, of "
                             f"{self.predictor.summary()} ({self.path})",
                "path": str(self.path), "device": str(self.device), "mc_samples": self.mc_samples,
                "fit": dict(self.predictor.fit)}
