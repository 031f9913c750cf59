"""The one way nastk reads files back: JSON and YAML documents (config files, run folders, journal lines)
and ``.npz`` image sets, each checked before anything uses it.

Documents have limits: a maximum size (:data:`MAX_CONFIG_BYTES` for configs, :data:`MAX_DOCUMENT_BYTES`
for a run folder's JSON, :data:`MAX_LINE_BYTES` for a journal line), a maximum nesting depth
(:data:`MAX_DEPTH`) and, for YAML, a bound on what aliases expand to (:data:`MAX_YAML_EXPANSION`: a
"billion laughs" file is refused after composing its few nodes, before anything is built from it, and an
alias that contains itself is refused). Every way a read can fail is one error of the caller's class
(:class:`~nastk.errors.ConfigError` for configs, :class:`~nastk.errors.RunError` for run folders) naming
the file and the problem.

Image sets (:func:`read_image_set`) are read without pickles; the archive (zip structure, CRC), the keys,
dtypes, ranks and shapes (from each array's header, before its data is read) and the label range are
checked, and anything wrong is one :class:`~nastk.errors.CorruptDataError` line.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Type

from nastk.errors import ConfigError, CorruptDataError, MissingDataError, NastkError

#: a config file (YAML or JSON; options of a search or a supernet run)
MAX_CONFIG_BYTES = 1 << 20
#: one JSON document of a run folder (summary.json holds a trajectory row per evaluation)
MAX_DOCUMENT_BYTES = 64 << 20
#: one line of a journal (an evaluation record, a decision)
MAX_LINE_BYTES = 1 << 20
#: lists and mappings inside one another; nastk's own files nest fewer than 10 levels
MAX_DEPTH = 64
#: YAML: nodes plus scalar characters of the document with every alias expanded (what a 1 MiB file
#: without aliases could hold at most)
MAX_YAML_EXPANSION = 1 << 20


class Unreadable(ValueError):
    """Why some text is not a document nastk accepts (the reader adds the file's name)."""


def _size(amount: int) -> str:
    return f"{amount >> 20} MiB" if amount >= 1 << 20 else f"{amount >> 10} KiB"


# --- JSON ------------------------------------------------------------------------------------------
def loads(data, max_depth: int = MAX_DEPTH, max_bytes: Optional[int] = MAX_LINE_BYTES) -> Any:
    """One JSON value from ``data`` (bytes or str), within the limits; :class:`Unreadable` says why not."""
    if max_bytes is not None and len(data) > max_bytes:
        raise Unreadable(f"is larger than {_size(max_bytes)}")
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise Unreadable("is not UTF-8 text (a binary file?)") from None
    try:
        value = json.loads(data)
    except RecursionError:
        raise Unreadable(f"nests more than {max_depth} levels deep") from None
    except json.JSONDecodeError as error:
        where = f"line {error.lineno}, column {error.colno}" if "\n" in data.strip() else f"column {error.colno}"
        raise Unreadable(f"is not valid JSON: {error.msg.removesuffix(' at')} ({where})") from None
    except ValueError as error:  # e.g. an integer of more digits than Python converts
        raise Unreadable(f"is not valid JSON ({str(error).splitlines()[0][:80]})") from None
    if depth(value, max_depth) > max_depth:
        raise Unreadable(f"nests more than {max_depth} levels deep")
    return value


def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deeply lists and mappings nest in ``value`` (a scalar: 0), counted without recursion and
    stopping once it exceeds ``limit``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def read_json(path, what: str, error: Type[NastkError] = ConfigError, max_bytes: int = MAX_DOCUMENT_BYTES,
              mapping: bool = True) -> Any:
    """The JSON document in ``path`` (a mapping unless ``mapping=False``); every way it can fail is one
    ``error`` naming ``what`` and the file."""
    path = Path(path)
    value = _parse(path, what, error, max_bytes, lambda raw: loads(raw, max_bytes=None))
    return _mapping(value, path, what, error) if mapping else value


def _read_bytes(path: Path, what: str, error, max_bytes: int) -> bytes:
    try:
        if not path.exists():
            raise error(f"{what} {path} not found")
        if path.is_dir():
            raise error(f"{what} {path} is a directory")
        if not path.is_file():
            raise error(f"{what} {path} is not a regular file")
        with open(path, "rb") as handle:
            raw = handle.read(max_bytes + 1)
    except OSError as failure:
        raise error(f"cannot read {what} {path}: {failure.strerror or failure}") from None
    if len(raw) > max_bytes:
        raise error(f"{what} {path} is larger than {_size(max_bytes)}; not a file nastk wrote or reads")
    return raw


def _parse(path: Path, what: str, error, max_bytes: int, parse) -> Any:
    raw = _read_bytes(path, what, error, max_bytes)
    try:
        return parse(raw)
    except Unreadable as reason:
        raise error(f"{what} {path} {reason}") from None


def _mapping(value: Any, path: Path, what: str, error) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise error(f"{what} {path} must hold a mapping (of option names to values), not a {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    return {list: "list", str: "string", type(None): "null"}.get(type(value), type(value).__name__)


# --- YAML ------------------------------------------------------------------------------------------
def read_yaml(path, what: str = "config file", error: Type[NastkError] = ConfigError,
              max_bytes: int = MAX_CONFIG_BYTES, mapping: bool = True) -> Any:
    """The YAML (or JSON) document in ``path`` (a mapping unless ``mapping=False``), read safely (no
    Python objects) within the size, depth and alias-expansion limits; a file named ``*.json`` is read as
    JSON. Every way it can fail is one ``error`` naming ``what`` and the file."""
    path = Path(path)
    parse = (lambda raw: loads(raw, max_bytes=None)) if path.suffix.lower() == ".json" else yaml_loads
    value = _parse(path, what, error, max_bytes, parse)
    return _mapping(value, path, what, error) if mapping else value


def read_mapping(path, what: str = "config file", error: Type[NastkError] = ConfigError) -> Dict[str, Any]:
    """A config file holding a mapping (YAML, or JSON for ``*.json``): :func:`read_yaml`."""
    return read_yaml(path, what, error)


def yaml_loads(data, max_depth: int = MAX_DEPTH, max_expansion: int = MAX_YAML_EXPANSION) -> Any:
    """One YAML document from ``data`` (bytes or str), safely and within the limits."""
    import yaml

    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise Unreadable("is not UTF-8 text (a binary file?)") from None
    loader = _bounded_loader(yaml)(data)
    loader.max_depth, loader.max_expansion = max_depth, max_expansion
    try:
        return loader.get_single_data()
    except Unreadable:
        raise
    except RecursionError:
        raise Unreadable(f"nests more than {max_depth} levels deep") from None
    except yaml.YAMLError as failure:
        raise Unreadable(f"is not valid YAML/JSON: {_first_line(failure)}") from None
    except (ValueError, TypeError, OverflowError) as failure:  # a value no Python type holds (2001-02-30, 10**5000)
        raise Unreadable(f"is not valid YAML/JSON: {_first_line(failure)}") from None
    finally:
        loader.dispose()


def _first_line(failure: Exception) -> str:
    return (str(failure).strip().splitlines() or [type(failure).__name__])[0][:120]


_LOADER = None


def _bounded_loader(yaml):
    """PyYAML's safe loader with a depth bound while composing and, before anything is constructed, a check
    of what the document's aliases expand to (memoised per node, so a bomb costs its few nodes)."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER

    class BoundedLoader(yaml.SafeLoader):
        max_depth, max_expansion, _level = MAX_DEPTH, MAX_YAML_EXPANSION, 0

        def compose_node(self, parent, index):
            self._level += 1
            try:
                if self._level > self.max_depth + 1:  # collections nested max_depth deep, then a scalar
                    raise Unreadable(f"nests more than {self.max_depth} levels deep")
                return super().compose_node(parent, index)
            finally:
                self._level -= 1

        def compose_document(self):
            node = super().compose_document()
            _check_expansion(node, yaml, self.max_depth, self.max_expansion)
            return node

    _LOADER = BoundedLoader
    return _LOADER


def _check_expansion(root, yaml, max_depth: int, max_expansion: int) -> None:
    """Refuse a composed YAML document whose aliases expand it beyond ``max_expansion`` (nodes plus scalar
    characters) or ``max_depth`` levels, or that contains itself. Iterative, memoised by node."""
    if root is None:
        return
    done: Dict[int, Tuple[int, int]] = {}  # id(node) -> (expanded size, expanded depth)
    open_ = set()  # nodes whose children are being measured: the current path
    stack = [(root, False)]
    while stack:
        node, children_measured = stack.pop()
        key = id(node)
        if isinstance(node, yaml.ScalarNode):
            done[key] = (1 + len(node.value), 0)
            continue
        children = ([child for pair in node.value for child in pair] if isinstance(node, yaml.MappingNode)
                    else list(node.value))
        if children_measured:
            size = 1 + sum(done[id(child)][0] for child in children)
            level = 1 + max((done[id(child)][1] for child in children), default=0)
            open_.discard(key)
            done[key] = (size, level)
            if size > max_expansion:
                raise Unreadable(f"expands (through its aliases) to more than {max_expansion:,} values and characters")
            if level > max_depth:
                raise Unreadable(f"nests (through its aliases) more than {max_depth} levels deep")
            continue
        if key in done:
            continue
        if key in open_:
            raise Unreadable("holds an alias that refers to a mapping or list containing it")
        open_.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in done)


# --- .npz image sets -------------------------------------------------------------------------------
IMAGE_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass
class ImageArrays:
    """An image set as stored: uint8 NHWC images (3 channels), integer labels 0..num_classes-1."""

    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any
    num_classes: int


def read_arrays(path, what: str, keys, optional=()) -> Dict[str, Any]:
    """Arrays ``keys`` (and ``optional`` ones where present) of an ``.npz`` archive, read without pickles.

    Each array's header is read first: an object array (pickles) or one whose header claims more data than
    the archive holds is refused before its data is read. A damaged archive (not a zip, truncated, a CRC
    that fails) or a missing key is one :class:`CorruptDataError` line naming the file.
    """
    import zipfile

    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{what} {path} not found")
    arrays = {}
    try:
        with zipfile.ZipFile(path) as archive:
            members = {name[:-4]: name for name in archive.namelist() if name.endswith(".npy")}
            missing = [key for key in keys if key not in members]
            if missing:
                held = ", ".join(sorted(members)[:8]) or "no arrays"
                raise CorruptDataError(f"{what} {path} lacks {', '.join(missing)} (it holds {held})")
            for key in list(keys) + [k for k in optional if k in members]:
                info = archive.getinfo(members[key])
                with archive.open(info) as member:
                    shape, dtype = _npy_header(member, np)
                if dtype.hasobject:
                    raise CorruptDataError(f"{what} {path} holds Python objects in {key!r} (pickled data is never "
                                           f"loaded); store plain numeric arrays")
                if math.prod(shape) * dtype.itemsize > info.file_size:
                    raise CorruptDataError(f"{what} {path}: {key!r} claims shape {shape} of {dtype}, more than the "
                                           f"{info.file_size} bytes stored")
                with archive.open(info) as member:
                    arrays[key] = np.lib.format.read_array(member, allow_pickle=False)
                    member.read()  # to the end of the member: its CRC is checked
    except NastkError:
        raise
    except Exception as failure:  # zip, zlib and npy-format errors all mean a damaged archive
        reason = _first_line(failure)
        raise CorruptDataError(f"{what} {path} is damaged ({type(failure).__name__}: {reason})") from None
    return arrays


def _npy_header(member, np) -> Tuple[Tuple[int, ...], Any]:
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise ValueError(f"npy format version {version} is not supported")
    return tuple(int(n) for n in shape), dtype


def read_image_set(path, what: str = "image file") -> ImageArrays:
    """An image set in the CIFAR subset's layout, checked before use: ``x_train``/``x_test`` uint8 NHWC with
    3 channels and square images of one size, ``y_train``/``y_test`` integer labels, one per image, in
    0..K-1. K is the length of ``class_names`` when the file has it; otherwise max label + 1, and every
    class 0..K-1 must have training images (a stray label such as 57 among 0..9 is refused, not trained as
    47 empty classes). A :class:`CorruptDataError` line otherwise."""
    import numpy as np

    arrays = read_arrays(path, what, IMAGE_KEYS, optional=("class_names",))

    def refuse(problem: str, layout: bool = True):
        hint = (" (expected x_train/x_test uint8 N x H x W x 3, y_train/y_test integer labels 0..classes-1)"
                if layout else "")
        raise CorruptDataError(f"{what} {path}: {problem}{hint}")

    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 4 or x.shape[3] != 3:
            refuse(f"x_{split} has shape {x.shape}")
        if x.dtype != np.uint8:
            refuse(f"x_{split} holds {x.dtype}")
        if x.shape[1] != x.shape[2] or x.shape[1] < 1:
            refuse(f"x_{split} images are {x.shape[1]} x {x.shape[2]}, not square")
        if y.ndim != 1 or len(y) != len(x):
            refuse(f"y_{split} has shape {y.shape} for {len(x)} images")
        if y.dtype.kind not in "iu":
            refuse(f"y_{split} holds {y.dtype}, not integer labels")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:] and len(arrays["x_test"]):
        refuse(f"training images are {arrays['x_train'].shape[1:]} but test images {arrays['x_test'].shape[1:]}")
    if not len(arrays["x_train"]):
        refuse("x_train holds no images")
    y_train, y_test = arrays["y_train"].astype(np.int64), arrays["y_test"].astype(np.int64)
    names = arrays.get("class_names")
    if names is not None and names.ndim != 1:
        refuse(f"class_names has shape {names.shape}, not one name per class", layout=False)
    classes = len(names) if names is not None else int(y_train.max()) + 1
    for split, y in (("train", y_train), ("test", y_test)):
        if len(y) and (y.min() < 0 or y.max() >= classes):
            wrong = sorted({int(v) for v in y[(y < 0) | (y >= classes)]})
            shown = ", ".join(map(str, wrong[:5])) + (" ..." if len(wrong) > 5 else "")
            refuse(f"y_{split} holds label{'s' if len(wrong) > 1 else ''} {shown} outside 0..{classes - 1}"
                   + ("" if names is not None else " (labels count from 0)"), layout=False)
    if names is None:  # the classes are 0..max label: each must have training images
        stray = ("a stray label? a file whose classes may be empty names them all in class_names")
        if classes > len(y_train):
            refuse(f"y_train holds label {classes - 1} but only {len(y_train)} images, so some of the classes "
                   f"0..{classes - 1} have none ({stray})", layout=False)
        empty = np.flatnonzero(np.bincount(y_train, minlength=classes) == 0)
        if len(empty):
            shown = ", ".join(map(str, empty[:5])) + (" ..." if len(empty) > 5 else "")
            refuse(f"y_train has no image of class {shown} of 0..{classes - 1} ({stray})", layout=False)
    return ImageArrays(arrays["x_train"], y_train, arrays["x_test"], y_test, classes)
