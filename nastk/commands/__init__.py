"""Sub-commands of the ``nastk`` CLI, one module each (see :mod:`nastk.cli`)."""
import json
import sys


def print_json(obj) -> None:
    """Machine-readable output: one JSON object on stdout."""
    json.dump(obj, sys.stdout, indent=2, sort_keys=False, default=float)
    sys.stdout.write("\n")
