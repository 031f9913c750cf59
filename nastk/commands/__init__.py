"""Sub-commands of the ``nastk`` CLI, one module each (see :mod:`nastk.cli`)."""
import json
import sys
from pathlib import Path

from nastk.errors import ConfigError
from nastk.plain_data import plain


def print_json(obj) -> None:
    """Machine-readable output: one JSON object on stdout, always valid JSON (NaN and infinities,
    which ``json`` would write as the invalid ``NaN``, become null; numpy values become numbers)."""
    json.dump(json_safe(obj), sys.stdout, indent=2, sort_keys=False, allow_nan=False)
    sys.stdout.write("\n")


def json_safe(value):
    """``value`` with numpy scalars and arrays as Python numbers and lists, non-finite floats as None."""
    return plain(value, nonfinite_as_none=True, default=str)  # paths, devices and the like as text


def read_mapping(path: Path, what: str = "config file") -> dict:
    """A YAML (or JSON, for ``*.json``) file holding a mapping, within the size, depth and alias limits of
    :mod:`nastk.readers`; every way it can fail is one :class:`ConfigError` line."""
    from nastk.readers import read_mapping as read

    return read(path, what, ConfigError)
