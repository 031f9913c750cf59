"""Read the official NAS-Bench-201 benchmark file into nastk's column table.

The official ``NAS-Bench-201-v1_0-e61699.pth`` / ``NAS-Bench-201-v1_1-096897.pth`` is a
``torch.save``-d dict (``meta_archs``, ``arch2infos``, ``evaluated_indexes``) of several GB holding
every training curve of every seed. nastk only needs a few final numbers per architecture, so this
module reads the file once through the official ``nas_201_api`` (its own ``ArchResults`` objects,
so seed averaging and split names are exactly the API's) and returns plain float columns;
:mod:`nastk.benchmarks.nb201` writes them into its compact cache and never touches the ``.pth`` again.

Column keys (all float64, NaN where the file has no value):

* ``{dataset}/{split}/{epochs}/official``: final-epoch top-1 accuracy in percent, mean over seeds;
* ``{dataset}/train_time_s/{epochs}/official``: the API's ``train-all-time`` (sum of the per-epoch
  training times over all epochs, mean over seeds);
* ``{dataset}/params_m``, ``{dataset}/flops_m``: from the 200-epoch record's compute costs.

Loading: torch >= 2.6 loads with ``weights_only=True`` by default, which refuses the arbitrary
pickled objects some official files contain. We try that safe mode first and only fall back to a
full unpickle when the caller opts in with ``trust_pickle=True`` (CLI ``--trust-pickle``).
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from nastk.errors import CorruptDataError, MissingDataError

DATASETS = ("cifar10-valid", "cifar10", "cifar100", "ImageNet16-120")
EPOCHS = ("12", "200")
#: (dataset, nastk split) -> the set name inside NB201 (NB201 paper conventions; cifar10 has no valid).
SETS = {
    ("cifar10-valid", "train"): "train", ("cifar10-valid", "valid"): "x-valid", ("cifar10-valid", "test"): "ori-test",
    ("cifar10", "train"): "train", ("cifar10", "test"): "ori-test",
    ("cifar100", "train"): "train", ("cifar100", "valid"): "x-valid", ("cifar100", "test"): "x-test",
    ("ImageNet16-120", "train"): "train", ("ImageNet16-120", "valid"): "x-valid", ("ImageNet16-120", "test"): "x-test",
}
KEYS = ("meta_archs", "arch2infos", "evaluated_indexes")


def _first_line(error: BaseException) -> str:
    kind = type(error).__name__ if type(error).__module__ == "builtins" else type(error).__module__ + "." + type(error).__name__
    text = str(error).strip().splitlines()
    return f"{kind}: {text[0]}" if text else kind


def _load(path: Path, trust_pickle: bool) -> dict:
    """torch.load the file safely (weights_only) unless the caller trusts it; errors become DataErrors."""
    import torch

    try:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            if "weights only" not in str(error).lower():
                raise
            if not trust_pickle:
                raise CorruptDataError(
                    f"{path} needs trust_pickle=True (CLI flag --trust-pickle): it contains arbitrary pickled "
                    "objects, which can run code when loaded, so load it only if you trust its source") from None
            data = torch.load(path, map_location="cpu", weights_only=False)
    except (CorruptDataError, MemoryError):
        raise
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, KeyError, ...
        raise CorruptDataError(f"cannot read {path} as a torch file: {_first_line(error)}") from None
    if not isinstance(data, dict) or not all(key in data for key in KEYS):
        found = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise CorruptDataError(f"{path} is not an official NAS-Bench-201 file: expected a dict with keys "
                               f"{', '.join(KEYS)}, found {found}")
    return data


def _value(x) -> float:
    return np.nan if x is None else float(x)


def read_official(path, trust_pickle: bool = False) -> Tuple[List[str], Dict[str, np.ndarray]]:
    """Returns (arch_strs in the file's index order, columns)."""
    from nas_201_api import NASBench201API

    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingDataError(f"official NAS-Bench-201 file {path} not found")
    data = _load(path, trust_pickle)
    try:
        api = NASBench201API(data, verbose=False)
    except Exception as error:  # the API checks its structure with asserts
        raise CorruptDataError(f"{path} has an unexpected NAS-Bench-201 structure: {_first_line(error)}") from None
    finally:
        del data  # the API deep-copied it; do not hold the file twice
    arch_strs = [str(arch) for arch in api.meta_archs]

    n = len(arch_strs)
    keys = ([f"{dataset}/{split}/{epochs}/official" for epochs in EPOCHS for dataset, split in SETS]
            + [f"{dataset}/train_time_s/{epochs}/official" for epochs in EPOCHS for dataset in DATASETS]
            + [f"{dataset}/{cost}" for dataset in DATASETS for cost in ("params_m", "flops_m")])
    columns = {key: np.full(n, np.nan) for key in keys}
    for index in range(n):
        by_hp = api.arch2infos_dict.pop(index, None)  # pop: free each architecture once read
        if by_hp is None:  # not evaluated in this file
            continue
        try:
            for epochs in EPOCHS:
                results = by_hp[epochs]  # an ArchResults: all seeds of all datasets for this schedule
                for (dataset, split), setname in SETS.items():
                    try:
                        info = results.get_metrics(dataset, setname, iepoch=None, is_random=False)
                    except KeyError:  # dataset or set absent for this architecture
                        continue
                    columns[f"{dataset}/{split}/{epochs}/official"][index] = _value(info["accuracy"])
                    if split == "train":
                        columns[f"{dataset}/train_time_s/{epochs}/official"][index] = _value(info["all_time"])
                    if split == "train" and epochs == "200":
                        # get_compute_costs' params/flops (seed means), without its latency/time bookkeeping
                        runs = list(results.query(dataset).values())
                        columns[f"{dataset}/params_m"][index] = np.mean([_value(run.params) for run in runs])
                        columns[f"{dataset}/flops_m"][index] = np.mean([_value(run.flop) for run in runs])
        except Exception as error:
            raise CorruptDataError(f"{path}: unreadable results for architecture {index} "
                                   f"({arch_strs[index]}): {_first_line(error)}") from None
    return arch_strs, columns
