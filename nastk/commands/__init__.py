"""Sub-commands of the ``nastk`` CLI, one module each (see :mod:`nastk.cli`)."""
import json
import math
import sys


def print_json(obj) -> None:
    """Machine-readable output: one JSON object on stdout, always valid JSON (NaN and infinities,
    which ``json`` would write as the invalid ``NaN``, become null; numpy values become numbers)."""
    json.dump(json_safe(obj), sys.stdout, indent=2, sort_keys=False, allow_nan=False)
    sys.stdout.write("\n")


def json_safe(value):
    """``value`` with numpy scalars and arrays as Python numbers and lists, non-finite floats as None."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy scalar or array
        return json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)  # paths, devices and the like
