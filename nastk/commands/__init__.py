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
    """A YAML (or JSON) file holding a mapping; every way it can fail is one :class:`ConfigError` line."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a directory") from None
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not UTF-8 text (a binary file?)") from None
    except RecursionError:
        raise ConfigError(f"{what} {path} is nested too deeply") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{what} {path} is not valid YAML/JSON: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping of option names to values")
    return data
