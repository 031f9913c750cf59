"""The parallel run's study journal (``optuna_journal.log`` in the run folder), written by nastk's writer.

optuna's ``JournalFileBackend`` appends each operation as one JSON line with a buffered write. A write
that fails part way (no space left on device) leaves a torn line behind, the next append (another
worker's, or a ``--resume`` once space was freed) is glued to it, and from then on optuna refuses to
read the file: every later resume fails and the run folder is lost.

:class:`WholeLineJournalBackend` keeps optuna's format, reading and locking, and appends through
:func:`nastk.paths.append_bytes` under optuna's lock: a failed append is cut back off (the file keeps
whole lines only), a torn last line left by a worker killed mid-write is dropped before the next
append, and the ``OSError`` is a :class:`~nastk.errors.WriteError` naming the file and the cause. A
failed append is never applied to the study (optuna applies an operation only by reading it back), so
the trial it belonged to stays RUNNING and is re-queued like a killed worker's.

:func:`repair_journal` makes a file an older nastk left torn readable again, before a resume opens it.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional

from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import LOCK_FILE_SUFFIX, BaseJournalFileLock, get_lock_file

from nastk.errors import RunError
from nastk.paths import append_bytes, atomic_write, os_error_cause, write_error

#: How every optuna journal line starts (``JournalStorage._write_log`` puts ``op_code`` first).
LINE_START = b'{"op_code":'


class WholeLineJournalBackend(JournalFileBackend):
    """optuna's journal file backend whose appends are whole lines or nothing (see the module)."""

    def __init__(self, file_path: str, lock_obj: Optional[BaseJournalFileLock] = None) -> None:
        path = Path(file_path)
        if path.exists() and not path.is_file():
            raise RunError(f"cannot open study journal {path}: it is a folder, not a file")
        if not path.exists():
            append_bytes(path, b"")  # create it, an OSError as one line
        super().__init__(str(path), lock_obj)

    def append_logs(self, logs: List[Dict[str, Any]]) -> None:
        data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode("utf-8")
        try:
            with get_lock_file(self._lock):
                append_bytes(self._file_path, data)
        except OSError as error:  # the lock file itself could not be made
            raise write_error(self._file_path + LOCK_FILE_SUFFIX, error) from None


def repair_journal(path) -> int:
    """Make a study journal that a failed or killed append left torn readable again; returns the number
    of torn fragments removed (0: the file was whole and is not touched).

    A torn last line is cut. A torn fragment glued to the front of a later, whole line (what optuna's
    own backend leaves once a later append follows a failed one) is removed and that line kept. Damage
    of another kind is a :class:`~nastk.errors.RunError` naming the line. Call it only while nothing
    else writes the file (the coordinator holds the run folder's lock before any worker starts).
    """
    path = Path(path)
    if not path.exists():
        return 0
    try:
        data = path.read_bytes()
    except OSError as error:
        raise RunError(f"cannot read study journal {path}: {os_error_cause(path, error)}") from None
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    kept, fragments = [], int(bool(tail))
    for number, line in enumerate(lines, start=1):
        if _parses(line):
            kept.append(line)
            continue
        start = line.rfind(LINE_START)
        if start > 0 and _parses(line[start:]):
            kept.append(line[start:])
            fragments += 1
            continue
        raise RunError(f"study journal {path} line {number} is corrupt (not a torn write nastk can repair)")
    if fragments:
        warnings.warn(f"study journal {path}: removed {fragments} partly written line(s) left by a failed write")
        with atomic_write(path, "wb") as handle:
            handle.write(b"".join(line + b"\n" for line in kept))
    return fragments


def _parses(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, RecursionError):
        return False
