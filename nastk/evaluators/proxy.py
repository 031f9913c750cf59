"""Zero-cost proxy evaluation of architectures of any space, with an on-disk cache.

Every network is built right after ``torch.manual_seed(seed)``, so its initial weights (and hence
every proxy value) depend only on (architecture, seed, build options), not on what ran before or on
the device. Scores are cached in a JSON-lines file keyed by (space, proxy, the proxy's definition version,
architecture, dataset, batch size, seed, build options); the file is rewritten atomically, so an interrupted run loses at
most the last unflushed architectures and resumes from the rest.
"""
from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from nastk.architecture import Architecture
from nastk.errors import CorruptDataError
from nastk.evaluator import Evaluator, Result
from nastk.options import Int, Option, Text
from nastk.paths import atomic_write, note, write_cache
from nastk.proxies import get_proxy
from nastk.space import SearchSpace


class ProxyCache:
    """Proxy scores on disk, one JSON object per line, each carrying the checksum of its own content;
    ``flush`` rewrites the file atomically. A line that is damaged, altered or of the wrong shape is
    dropped with a warning (its score is computed again), never used."""

    def __init__(self, path: Optional[Union[str, Path]]):
        self.path = Path(path) if path else None
        self.records: Dict[Tuple, Dict[str, Any]] = {}
        self._dirty = False
        if self.path and self.path.is_dir():  # caches are optional: scoring goes on without it
            note(f"proxy cache {self.path} is a folder, not a file; scores are not cached "
                 f"(name a file, e.g. {self.path / 'scores.jsonl'})")
            self.path = None
        if self.path and self.path.is_file():
            try:
                lines = self.path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as error:
                raise CorruptDataError(f"cannot read proxy cache {self.path}: {type(error).__name__}") from None
            dropped = 0
            for line in filter(str.strip, lines):
                record = _verified_record(line)
                if record is None:
                    dropped += 1
                    continue
                self.records[self._key(record)] = record
            if dropped:
                warnings.warn(f"proxy cache {self.path}: dropped {dropped} damaged or altered line(s); "
                              f"their scores are computed again")
                self._dirty = True

    @staticmethod
    def _key(record: Dict[str, Any]) -> Tuple:
        return (record["space"], record["proxy"], record.get("version", 1), record["arch"], record["dataset"],
                record["batch_size"], record["seed"], record.get("build", ""))

    def get(self, **key) -> Optional[Dict[str, Any]]:
        return self.records.get(self._key(key))

    def put(self, record: Dict[str, Any]) -> None:
        self.records[self._key(record)] = record
        self._dirty = True

    def flush(self) -> None:
        if not (self.path and self._dirty):
            return

        def write() -> None:
            with atomic_write(self.path, "w") as handle:
                for record in self.records.values():
                    handle.write(json.dumps({**record, "sha": _record_sha(record)}) + "\n")

        if write_cache(write, "proxy scores", "scoring goes on without the cache"):
            self._dirty = False
        else:  # tried once: a cache that cannot be written is skipped from here on
            self.path = None


def _record_sha(record: Dict[str, Any]) -> str:
    content = json.dumps({k: v for k, v in record.items() if k != "sha"}, sort_keys=True)
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def _verified_record(line: str) -> Optional[Dict[str, Any]]:
    """The record of one cache line, or None when it does not parse, lacks a key or fails its checksum."""
    try:
        record = json.loads(line)
        ProxyCache._key(record)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None
    score = record.get("score", "")
    if not (score is None or isinstance(score, (int, float))) or record.get("sha") != _record_sha(record):
        return None
    record.pop("sha")
    return record


class ProxyScorer:
    """Scores architectures of one space on one fixed batch; shared by the evaluator and batch scoring.

    ``device``: where networks are scored (None: where they are built, the CPU)."""

    def __init__(self, space: SearchSpace, dataset: str = "cifar10", batch_size: int = 64, seed: int = 0,
                 device: Optional[str] = None, num_classes: Optional[int] = None, cache_path=None,
                 build_options: Optional[Dict[str, Any]] = None):
        from nastk.datasets import load_dataset  # torch, loaded only when scoring starts

        data = load_dataset(dataset)
        batch_size = batch_size or 64  # configs may carry an explicit None
        self.space, self.dataset, self.batch_size, self.seed, self.device = space, dataset, batch_size, seed, device
        self.num_classes = num_classes or data.num_classes
        self.batch = data.batch(batch_size, seed)
        # Options equal to the space's own network's are dropped, so that network's scores have one cache
        # key whether its options are spelled out (a run config's ``build``) or not.
        own = {option.name: option.default for option in space.build_options(full_size=True)}
        self.build_options = {k: v for k, v in (build_options or {}).items() if k not in own or own[k] != v}
        self.cache = ProxyCache(cache_path)

    def _key(self, proxy: str, arch_str: str) -> Dict[str, Any]:
        return {"space": self.space.name, "proxy": proxy, "version": get_proxy(proxy).version, "arch": arch_str,
                "dataset": self.dataset,
                "batch_size": self.batch_size, "seed": self.seed,
                "build": json.dumps(self.build_options, sort_keys=True) if self.build_options else ""}

    def score(self, arch: Architecture, proxies: Sequence[str]) -> Dict[str, Dict[str, Any]]:
        """``{proxy: {"score": float, "seconds": float}}``, computing only what the cache lacks."""
        arch_str = self.space.to_str(arch)
        for name in proxies:
            get_proxy(name)  # unknown names fail before any work
        missing = [name for name in proxies if self.cache.get(**self._key(name, arch_str)) is None]
        if missing:
            import torch

            from nastk.proxies import compute_proxies

            torch.manual_seed(self.seed)
            model = self.space.build(arch, self.num_classes, **self.build_options)
            result = compute_proxies(model, self.batch, missing, device=self.device, seed=self.seed)
            for name in missing:
                seconds = result.seconds[get_proxy(name).pass_name]
                self.cache.put({**self._key(name, arch_str), "score": result.scores[name], "seconds": seconds})
        return {name: self.cache.get(**self._key(name, arch_str)) for name in proxies}

    def protocol(self) -> Dict[str, Any]:
        return {"dataset": self.dataset, "batch_size": self.batch_size, "seed": self.seed,
                "num_classes": self.num_classes, "build": self.build_options,
                "init": "torch.manual_seed(seed) before build"}


class ProxyEvaluator(Evaluator):
    """One zero-cost proxy of the freshly initialised network (higher is better).

    By default it scores the space's own (full-size) network, the published proxies' protocol;
    ``build_options`` (``--C 8 --N 1`` for NB201) score another size."""

    target, target_metavar = "proxy", "NAME"
    reports_benchmark = True
    builds_networks = full_size_networks = True
    OPTIONS = (Option("dataset", Text(), "images of the scoring batch (cifar10, digits); also the benchmark "
                                         "dataset the winner is reported on"),
               Option("batch_size", Int(minimum=1), "images in the one scoring batch"))

    def __init__(self, space: SearchSpace, proxy: str, dataset: str = "cifar10", batch_size: int = 64, seed: int = 0,
                 device: Optional[str] = None, num_classes: Optional[int] = None, cache_path=None,
                 build_options: Optional[Dict[str, Any]] = None):
        from nastk.proxies.compute import plan_proxies

        plan_proxies([proxy])  # a user's proxy (package.module:function) checked before any search
        self.spec = get_proxy(proxy)
        self.proxy = self.objective = proxy
        self.scorer = ProxyScorer(space, dataset, batch_size, seed, device, num_classes, cache_path, build_options)

    def evaluate(self, arch: Architecture) -> Result:
        record = self.scorer.score(arch, [self.proxy])[self.proxy]
        self.scorer.cache.flush()
        score = record["score"] if self.spec.higher_is_better else -record["score"]
        return Result({self.proxy: score}, cost_s=float(record["seconds"]), objective=self.proxy,
                      protocol={"proxy": self.proxy, **self.scorer.protocol()})

    def describe(self) -> Dict[str, Any]:
        return {"evaluator": "proxy", "proxy": self.proxy, **self.scorer.protocol()}


@dataclass
class ScoredArchitectures:
    """``scores[proxy][i]`` is the value of architecture ``arch_strs[i]`` (NaN where it failed)."""

    arch_strs: List[str]
    scores: Dict[str, np.ndarray]
    seconds: Dict[str, np.ndarray]


def score_architectures(space: SearchSpace, archs: Sequence[Architecture], proxies: Sequence[str],
                        dataset: str = "cifar10", batch_size: int = 64, seed: int = 0, device: Optional[str] = None,
                        num_classes: Optional[int] = None, cache_path=None,
                        build_options: Optional[Dict[str, Any]] = None, progress: bool = True,
                        flush_every_s: float = 30.0) -> ScoredArchitectures:
    """All ``proxies`` of every architecture, each network built once and scored with shared passes."""
    from nastk.progress import Progress

    scorer = ProxyScorer(space, dataset, batch_size, seed, device, num_classes, cache_path, build_options)
    scores = {name: np.full(len(archs), np.nan) for name in proxies}
    seconds = {name: np.full(len(archs), np.nan) for name in proxies}
    last_flush = time.monotonic()
    bar = Progress(len(archs), "proxies", "architectures scored", enabled=progress)
    try:
        for i, arch in enumerate(archs):
            for name, record in scorer.score(arch, proxies).items():
                scores[name][i], seconds[name][i] = record["score"], record["seconds"]
            bar.update()
            if time.monotonic() - last_flush > flush_every_s:
                scorer.cache.flush()
                last_flush = time.monotonic()
    finally:
        bar.close()
        scorer.cache.flush()
    return ScoredArchitectures([space.to_str(a) for a in archs], scores, seconds)
