"""Caches that prove they are whole: every ``.npz`` cache nastk writes records its row count, the sha256
of its own arrays and (where it was converted from a file) the sha256 of its source, and is checked
against them on load. Half a table, an altered value or a cache of another source is a
:class:`~nastk.errors.CorruptDataError` (the caller rebuilds or says so), never used silently.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from nastk.errors import CorruptDataError, DataError
from nastk.paths import atomic_write


def content_sha256(arrays: Dict[str, np.ndarray]) -> str:
    """A digest of named arrays (names, dtypes, shapes and bytes), independent of how they were saved."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def write_npz(path: Path, arrays: Dict[str, np.ndarray], meta: dict, rows: int,
              source_sha256: Optional[str] = None) -> None:
    """Save ``arrays`` with ``meta`` plus the integrity record, atomically."""
    integrity = {"rows": int(rows), "content_sha256": content_sha256(arrays), "source_sha256": source_sha256}
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(json.dumps({**meta, "integrity": integrity})), **arrays)
    with atomic_write(path) as handle:
        handle.write(buffer.getvalue())


def read_npz(path: Path, what: str, rows: Optional[int] = None,
             source_sha256: Optional[str] = None) -> Tuple[Dict[str, np.ndarray], dict]:
    """The arrays and meta of a cache written by :func:`write_npz`, after checking it is whole.

    ``rows`` and ``source_sha256``, when given, must match what the cache records.
    """
    try:
        # the file opened here: numpy 2.4's np.load(path) leaks its handle on a truncated zip
        with open(path, "rb") as handle, np.load(handle) as archive:
            meta = json.loads(str(archive["meta"]))
            arrays = {name: archive[name] for name in archive.files if name != "meta"}
    except DataError:
        raise
    except Exception as error:  # zip, npz and json errors all mean an unreadable file
        raise CorruptDataError(f"cannot read {what} {path}: {type(error).__name__}") from None
    integrity = meta.get("integrity") if isinstance(meta, dict) else None
    if not isinstance(integrity, dict):
        raise CorruptDataError(f"{what} {path} carries no integrity record (written by an older nastk?)")
    if content_sha256(arrays) != integrity.get("content_sha256"):
        raise CorruptDataError(f"{what} {path} fails its content checksum (altered or damaged)")
    if any(array.ndim == 0 or len(array) != integrity.get("rows") for array in arrays.values()):
        raise CorruptDataError(f"{what} {path} has arrays of another length than its {integrity.get('rows')} rows")
    if rows is not None and integrity.get("rows") != rows:
        raise CorruptDataError(f"{what} {path} holds {integrity.get('rows')} rows, expected {rows}")
    if source_sha256 is not None and integrity.get("source_sha256") != source_sha256:
        raise CorruptDataError(f"{what} {path} was converted from another source file")
    return arrays, meta
