"""Where nastk finds shared benchmark data and keeps its converted caches.

* ``NASTK_DATA`` points at the benchmark data folder (the project's CI uses ``../shared/benchmarks``).
* ``NASTK_CACHE`` overrides the cache folder for converted tables; by default it is
  ``benchmarks_data/cache`` in a source checkout, else ``~/.cache/nastk``.

It also holds the one writer of every output file: :func:`atomic_write` (a temporary file beside the
target, fsynced, renamed into place), :func:`append_lines` (whole lines appended and fsynced, all or
nothing) and :func:`save_figure`. An ``OSError`` of any of them is a :class:`~nastk.errors.WriteError`
of one line naming the path and what is wrong with it (read-only file system, no space left, a path
component that is a file, a target that is a folder, permission denied), and nothing half-written is
left: no temporary file, no partial line, no folder the writer made. Caches are optional:
:func:`write_cache` skips a cache that cannot be written with a one-line note on stderr.
"""
from __future__ import annotations

import atexit
import errno
import hashlib
import io
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, List, Optional, Union

from nastk.errors import CorruptDataError, MissingDataError, RunError, WriteError

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
    """The cache folder (not created here: the writer makes it when a cache is first written, and a
    folder that cannot be made only means nothing is cached)."""
    if os.environ.get("NASTK_CACHE"):
        return Path(os.environ["NASTK_CACHE"]).expanduser()
    if (_CHECKOUT_ROOT / "benchmarks_data").is_dir() and os.access(_CHECKOUT_ROOT / "benchmarks_data", os.W_OK):
        return _CHECKOUT_ROOT / "benchmarks_data" / "cache"
    return Path.home() / ".cache" / "nastk"


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


# --- the one writer ------------------------------------------------------------------------------------
#: What is wrong with a path, by errno, in the words of a one-line error.
_CAUSES = {getattr(errno, name): cause for name, cause in (
    ("EROFS", "read-only file system"),
    ("ENOSPC", "no space left on device"),
    ("EDQUOT", "disk quota exceeded"),
    ("EFBIG", "file too large for its file system"),
    ("EACCES", "permission denied"),
    ("EPERM", "permission denied (operation not permitted)"),
    ("EISDIR", "it is a folder"),
    ("ENAMETOOLONG", "file name too long"),
    ("ELOOP", "too many levels of symbolic links"),
    ("EIO", "input/output error"),
    ("EMFILE", "too many open files"),
    ("ENFILE", "too many open files"),
) if hasattr(errno, name)}


def os_error_cause(path, error: OSError) -> str:
    """What ``error`` (raised working on ``path``) says is wrong, in words: a component that is a file
    is named, a target that is a folder says so."""
    code = getattr(error, "errno", None)
    if code in (errno.ENOTDIR, errno.EEXIST):
        blocker = _file_in_the_way(Path(path))
        if blocker is not None:
            return f"{blocker} is a file, not a folder"
    if code in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST) and Path(path).is_dir():
        return "it is a folder"
    if code in _CAUSES:
        return _CAUSES[code]
    text = error.strerror or str(error) or type(error).__name__
    return text[:1].lower() + text[1:]


def write_error(path, error: OSError, verb: str = "write") -> WriteError:
    """The one-line :class:`WriteError` for an ``OSError`` raised writing ``path``."""
    return WriteError(f"cannot {verb} {path}: {os_error_cause(path, error)}", path, getattr(error, "errno", None))


def _file_in_the_way(path: Path) -> Optional[Path]:
    """The outermost component of ``path`` (``path`` itself included) that exists and is not a folder."""
    for candidate in [*reversed(path.parents), path]:
        if os.path.lexists(candidate) and not candidate.is_dir():
            return candidate
    return None


def _make_folders(folder: Path) -> List[Path]:
    """Create ``folder`` and its missing parents; returns the folders made, outermost first (an
    ``OSError`` removes those made so far before it propagates)."""
    missing = []
    for candidate in [folder, *folder.parents]:
        if candidate.is_dir():
            break
        missing.append(candidate)
    made: List[Path] = []
    try:
        for candidate in reversed(missing):
            try:
                os.mkdir(candidate)
            except FileExistsError:
                if candidate.is_dir():  # made meanwhile by another process
                    continue
                raise
            made.append(candidate)
    except OSError:
        _remove_folders(made)
        raise
    return made


def _remove_folders(made: List[Path]) -> None:
    for folder in reversed(made):
        try:
            os.rmdir(folder)
        except OSError:
            return


def make_folder(folder) -> Path:
    """``mkdir -p`` whose failure is one :class:`WriteError` line naming the folder and the cause."""
    folder = Path(folder)
    try:
        _make_folders(folder)
    except OSError as error:
        raise write_error(folder, error, "create folder") from None
    return folder


def check_writable(path) -> Path:
    """The :class:`WriteError` that writing ``path`` would end in, raised before any work is done and
    without writing anything: ``path`` is a folder, a component of it is a file, or the nearest existing
    folder cannot be written (read-only file system, permissions). A full disk shows only when writing."""
    path = Path(path)
    if path.is_dir():
        raise WriteError(f"cannot write {path}: it is a folder", path, errno.EISDIR)
    blocker = _file_in_the_way(path.parent)
    if blocker is not None:
        raise WriteError(f"cannot write {path}: {blocker} is a file, not a folder", path, errno.ENOTDIR)
    existing = next(folder for folder in [path.absolute().parent, *path.absolute().parents] if folder.is_dir())
    if not os.access(existing, os.W_OK | os.X_OK):
        read_only = hasattr(os, "statvfs") and os.statvfs(existing).f_flag & getattr(os, "ST_RDONLY", 1)
        code = errno.EROFS if read_only else errno.EACCES
        raise WriteError(f"cannot write {path}: {_CAUSES[code]}" + ("" if read_only else f" in {existing}"),
                         path, code)
    return path


class _Sink(io.FileIO):
    """The file under a writer's buffer: every byte goes through ``os.write``, and the first ``OSError``
    is kept, because serialisers (``torch.save``) turn it into an error of their own."""

    error: Optional[OSError] = None

    def write(self, data) -> int:
        try:
            return os.write(self.fileno(), data)
        except OSError as error:
            self.error = self.error or error
            raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path, mode: str = "wb") -> Iterator:
    """Write ``path`` whole or not at all: the caller writes to a temporary file beside it (``mode``
    "wb", or "w" for UTF-8 text), which is fsynced and renamed into place only when the block ends.

    Missing parent folders are made. Any ``OSError`` (read-only file system, no space left, a parent
    that is a file, a target that is a folder, permission denied) becomes a :class:`WriteError` of one
    line naming the path and the cause, with the temporary file and the folders this call made removed.
    An exception of the caller's own leaves the same nothing behind and propagates unchanged.
    """
    path = Path(path)
    if path.is_dir():
        raise WriteError(f"cannot write {path}: it is a folder", path, errno.EISDIR)
    try:
        made = _make_folders(path.parent)
    except OSError as error:
        raise write_error(path, error) from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    except OSError as error:
        _remove_folders(made)
        raise write_error(path, error) from None
    if hasattr(os, "fchmod"):
        try:
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would make results unreadable to others
        except OSError:  # a file system without modes: the file is still written
            pass
    sink = _Sink(fd, "wb")
    buffered = io.BufferedWriter(sink)
    handle = buffered if "b" in mode else io.TextIOWrapper(buffered, encoding="utf-8")

    def discard() -> None:
        for closable in (handle, sink):
            try:
                closable.close()
            except Exception:  # the write already failed; closing may fail the same way
                pass
        try:
            os.unlink(tmp)
        except OSError:
            pass
        _remove_folders(made)

    try:
        yield handle
    except BaseException:
        discard()
        if sink.error is not None:  # the caller's serialiser failed because a write did
            raise write_error(path, sink.error) from None
        raise
    try:
        if sink.error is not None:  # a write failed and the caller went on: the file is not whole
            raise sink.error
        handle.flush()
        os.fsync(fd)
        handle.close()
        os.replace(tmp, path)
    except OSError as error:
        discard()
        raise write_error(path, sink.error or error) from None
    _sync_folder(path.parent)


def write_file(path, data: Union[bytes, str]) -> Path:
    """``data`` (bytes, or text as UTF-8) as the whole content of ``path``, through :func:`atomic_write`."""
    with atomic_write(path, "wb") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def _sync_folder(folder: Path) -> None:
    """fsync a folder so a rename in it survives a power cut (best effort: not every system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def append_lines(path, lines: Union[str, Iterable[str]]) -> None:
    """Append ``lines`` (one string or several, without their newlines) to ``path`` and fsync them."""
    lines = [lines] if isinstance(lines, str) else list(lines)
    append_bytes(path, "".join(line + "\n" for line in lines).encode("utf-8"))


def append_bytes(path, data: bytes) -> None:
    """Append whole lines ``data`` to ``path`` (a journal) and fsync: all of them or none.

    A write that fails part way (no space left) is cut back off, so the file keeps only whole lines and
    the next append (after space is freed) starts on a fresh line; a torn last line left by a writer
    killed mid-write is dropped before appending, never glued to the new line. An ``OSError`` is a
    :class:`WriteError` naming the path and the cause. One appender at a time: the caller holds the
    file's lock (the run folder's, or optuna's journal lock).
    """
    path = Path(path)
    if path.is_dir():
        raise WriteError(f"cannot write {path}: it is a folder", path, errno.EISDIR)
    existed = os.path.lexists(path)
    try:
        made = _make_folders(path.parent)
    except OSError as error:
        raise write_error(path, error) from None
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as error:
        _remove_folders(made)
        raise write_error(path, error) from None
    size = None
    try:
        size = os.fstat(fd).st_size
        whole = _whole_lines_end(fd, size)
        if whole != size:
            os.ftruncate(fd, whole)
            size = whole
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as error:
        try:
            if size is not None:
                os.ftruncate(fd, size)  # shrinking needs no space
                os.fsync(fd)
            if not existed and os.fstat(fd).st_size == 0:
                os.unlink(path)
                _remove_folders(made)
        except OSError:
            pass
        raise write_error(path, error) from None
    finally:
        os.close(fd)


def _whole_lines_end(fd: int, size: int, chunk: int = 4096) -> int:
    """The length of the file's whole lines: ``size`` when it ends in a newline (or is empty), else the
    offset just past its last newline."""
    if size == 0:
        return 0
    os.lseek(fd, size - 1, os.SEEK_SET)  # appends still go to the end (O_APPEND)
    if os.read(fd, 1) == b"\n":
        return size
    end = size
    while end > 0:
        start = max(0, end - chunk)
        os.lseek(fd, start, os.SEEK_SET)
        block = os.read(fd, end - start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def save_figure(fig, path, **options) -> Path:
    """A matplotlib figure written through :func:`atomic_write` (format from the file's suffix)."""
    path = Path(path)
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format=path.suffix.lstrip(".").lower() or "png", **options)
    return path


def note(message: str) -> None:
    """One line (a warning of the ``nastk`` logger, on stderr) about something nastk skipped and went on without."""
    from nastk.log import LOGGER

    LOGGER.warning(f"nastk: note: {' '.join(message.split())}")


def write_cache(write: Callable[[], Any], what: str, consequence: str = "") -> bool:
    """Run ``write``, the writer of a cache. Caches are optional: one that cannot be written (a
    :class:`WriteError`) is skipped with a one-line note on stderr; returns whether it was written."""
    try:
        write()
    except WriteError as error:
        note(f"{what} not cached ({error}){'; ' + consequence if consequence else ''}")
        return False
    return True


LOCK_FILE = ".nastk.lock"
#: the run folders claimed since the command started, first first (the CLI's Ctrl-C line names the first one)
CLAIMED: list = []
_held_locks: dict = {}  # resolved folder -> [open lock file, holders in this process]


@atexit.register
def _close_held_locks() -> None:
    """The process ends: its locks go with it; closing the files says so instead of a ResourceWarning."""
    while _held_locks:
        _held_locks.popitem()[1][0].close()


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
