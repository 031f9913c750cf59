"""Where nastk finds shared benchmark data and keeps its converted caches.

* ``NASTK_DATA`` points at the benchmark data folder (the project's CI uses ``../shared/benchmarks``).
* ``NASTK_CACHE`` overrides the cache folder for converted tables; by default it is
  ``benchmarks_data/cache`` in a source checkout, else ``~/.cache/nastk``.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

from nastk.errors import CorruptDataError, MissingDataError, RunError

try:
    import fcntl
except ImportError:  # no flock (Windows): run folders are not protected against a second writer
    fcntl = None

_CHECKOUT_ROOT = Path(__file__).resolve().parent.parent


def data_root(explicit: Optional[str] = None) -> Path:
    """The benchmark data folder: ``explicit``, else ``$NASTK_DATA``, else ``../shared/benchmarks``."""
    for candidate in (explicit, os.environ.get("NASTK_DATA")):
        if candidate:
            return Path(candidate).expanduser()
    return _CHECKOUT_ROOT.parent / "shared" / "benchmarks"


def data_file(relative: str, explicit_root: Optional[str] = None) -> Path:
    """A file under the data folder; raises :class:`MissingDataError` saying how to point at it."""
    path = data_root(explicit_root) / relative
    if not path.is_file():
        raise MissingDataError(
            f"benchmark data file {path} not found; set NASTK_DATA to the folder holding {relative}"
        )
    return path


def cache_root() -> Path:
    if os.environ.get("NASTK_CACHE"):
        root = Path(os.environ["NASTK_CACHE"]).expanduser()
    elif (_CHECKOUT_ROOT / "benchmarks_data").is_dir() and os.access(_CHECKOUT_ROOT / "benchmarks_data", os.W_OK):
        root = _CHECKOUT_ROOT / "benchmarks_data" / "cache"
    else:
        root = Path.home() / ".cache" / "nastk"
    root.mkdir(parents=True, exist_ok=True)
    return root


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


_verified: dict = {}  # (path, size, mtime) -> sha256 already checked in this process


def verify_sha256(path: Path, expected: str) -> None:
    """Raise :class:`CorruptDataError` unless ``path`` has this sha256 (hashed once per process and version)."""
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if _verified.get(key) == expected:
        return
    actual = sha256_of(path)
    if actual != expected:
        raise CorruptDataError(f"{path} has sha256 {actual[:12]}..., expected {expected[:12]}...; the file is corrupt or a different release")
    _verified[key] = expected


@contextmanager
def atomic_write(path: Path, mode: str = "wb") -> Iterator:
    """Write to a temporary file beside ``path`` and rename it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make results unreadable to others
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


LOCK_FILE = ".nastk.lock"
_held_locks: dict = {}  # resolved folder -> [open lock file, holders in this process]


def lock_folder(directory: Path) -> Callable[[], None]:
    """Take the OS lock that makes this process the folder's only writer; returns the release function.

    The lock (``flock`` on ``.nastk.lock``) dies with its process, so a killed run never leaves a stale
    lock behind. A second run of the same folder in this process shares it (a resume in the same
    interpreter is sequential); another process gets a :class:`RunError` naming the holder.
    """
    key = str(Path(directory).resolve())
    if key in _held_locks:
        _held_locks[key][1] += 1
    else:
        handle = open(Path(directory) / LOCK_FILE, "a+")
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                raise RunError(f"run folder {directory} is in use by {holder}; wait for it to finish "
                               f"(or stop it) before running or resuming it again") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"nastk process {os.getpid()}\n")
        handle.flush()
        _held_locks[key] = [handle, 1]
    released = False

    def release() -> None:
        nonlocal released
        if released or key not in _held_locks:
            return
        released = True
        _held_locks[key][1] -= 1
        if _held_locks[key][1] == 0:
            _held_locks.pop(key)[0].close()

    return release


def folder_in_use(directory: Path) -> bool:
    """Whether a live process holds the folder's lock (read-only check: the lock is not taken)."""
    path = Path(directory) / LOCK_FILE
    if fcntl is None or not path.is_file():
        return False
    if str(Path(directory).resolve()) in _held_locks:
        return True
    with open(path, "r") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return False
