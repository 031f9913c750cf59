"""Plain JSON data from whatever numbers an evaluator, a proxy or a training step produced.

Journals, summaries and ``--format json`` output hold only dicts, lists, strings, numbers, booleans and
None. numpy scalars and arrays and torch tensors (what proxies and training loops naturally return)
become Python numbers and lists here, once, instead of failing at the write.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional


def plain(value: Any, nonfinite_as_none: bool = False, default: Optional[Callable[[Any], Any]] = None) -> Any:
    """``value`` as plain JSON data.

    ``nonfinite_as_none`` turns NaN and infinities into None (strict JSON has no NaN); ``default``
    converts any other type (e.g. ``str`` for paths); without it such a value raises ``TypeError``
    naming its type.
    """
    if isinstance(value, dict):
        return {str(key): plain(item, nonfinite_as_none, default) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item, nonfinite_as_none, default) for item in value]
    if isinstance(value, (str, bool)) or value is None:
        return value
    if isinstance(value, int):
        return int(value)  # an IntEnum or a bool subclass as its number
    if isinstance(value, float):
        return None if nonfinite_as_none and not math.isfinite(value) else float(value)
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy scalar or array, torch tensor
        if hasattr(value, "detach"):
            value = value.detach().cpu()
        return plain(value.tolist(), nonfinite_as_none, default)
    if default is not None:
        return default(value)
    raise TypeError(f"{type(value).__name__} is not plain JSON data")
