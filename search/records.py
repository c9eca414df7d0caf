"""Read the TinySaver seed code's evaluation records.

``DIR/{model}_test.npz`` holds ``label`` (N, 1) int, ``preds`` (E, N, k) int and ``confs`` (E, N, k)
float (exit 0 is the model's own head); ``DIR/complexity_info.json`` maps each model to
``{flops, macs, params, acc}``. Everything is validated before anything is returned, so an import
either takes every model or none: model names (from the file names) are valid names, costs finite
positive numbers, labels and predicted classes indices that the database stores as they are
(``0..MAX_CLASSES-1``; a predicted class of -1 with probability 0 is "no prediction", as saverzoo's
own exports write for an image that did not decode), at least one sample and one class per
sample, and sample keys that appear once. ``acc`` is not read: saverzoo measures accuracy from the
predictions themselves.

A records folder is user input, so reading it is bounded before anything large is read:

* every file must be a regular file (a FIFO would block the read, a device never end it);
* ``complexity_info.json`` is read up to ``MAX_COMPLEXITY_BYTES`` and parsed as strict JSON: no
  NaN or Infinity, and only numbers a float holds;
* each ``.npz`` is checked from its zip directory and its arrays' npy headers before any array is
  decompressed: a handful of members, plain numeric arrays in C order, ``N <= MAX_SAMPLES``,
  ``k <= MAX_TOP_K``, and the size each header claims equal to the member's size in the zip;
* the memory the read will hold is computed from those headers and refused above
  ``MAX_RECORDS_BYTES`` (see ``_memory_needed``).

Every refusal is one ``RecordsError`` line that names the file and what is wrong, never the
file's content.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from numpy.lib import format as npy

from cluster import validate
from cluster.errors import InputError
from cluster.userfiles import open_regular, read_bounded

RECORD_SUFFIX = "_test.npz"
COMPLEXITY_FILE = "complexity_info.json"
# Costs below this are taken as already in GMACs (no ImageNet model has under 100k MACs).
RAW_COUNT_FLOOR = 1e5
# A model's entry is about 100 bytes: 4 MiB holds tens of thousands of models.
MAX_COMPLEXITY_BYTES = 4 * 2**20
# A float holds integers of up to 308 digits; longer ones cannot be costs.
MAX_INTEGER_DIGITS = 308
# saverzoo keeps the top 5 classes of a sample; a top-1000 is already every class of ImageNet.
MAX_TOP_K = 1000
# A sample key is a file's path inside its shard.
MAX_KEY_CHARS = validate.MAX_RELATIVE_PATH
# What reading may hold at once (see _memory_needed): a zoo of 1,000 models on ImageNet's 50,000
# validation images at top-5 needs 1.4 GiB; a larger zoo is imported a folder at a time.
MAX_RECORDS_BYTES = 2 * 2**30
# An npz holds label, preds, confs and keys; a few more arrays are ignored, not thousands.
MAX_ZIP_MEMBERS = 64
MAX_ZIP_DIRECTORY_BYTES = 2**20
MAX_NPY_HEADER_BYTES = 10_000  # numpy's own limit for a header it parses
# Arrays are decompressed and converted this many bytes at a time.
CHUNK_BYTES = 2**24
# Each sample key is held as a Python string in a list and, while checked, in a set.
KEY_OBJECT_BYTES = 128
# int16 classes (every storable class fits) and float32 probabilities: the database's own types.
HELD_BYTES_PER_PREDICTION = 2 + 4
_ZIP_END = struct.Struct("<4s4H2LH")
_ZIP64_END = struct.Struct("<4sQ2H2L4Q")
_ZIP64_LOCATOR_SIZE = 20


class RecordsError(InputError):
    """The records directory cannot be imported; the message names the file and the fix."""


@dataclass(frozen=True)
class ModelRecords:
    name: str
    gmacs: float
    params_m: float | None
    topk_classes: np.ndarray  # (N, k) int16 of exit 0
    topk_probs: np.ndarray  # (N, k) float32 of exit 0


@dataclass(frozen=True)
class Records:
    labels: np.ndarray  # (N,) int64
    models: list[ModelRecords]
    keys: list[str] | None = None  # sample keys when the files carry them (saverzoo's exports)

    @property
    def num_samples(self) -> int:
        return len(self.labels)


# ----- files: regular ones only, read with a bound ------------------------------------------------
def _open_regular(path: Path) -> IO[bytes]:
    return open_regular(path, "records", RecordsError)


def _read_bounded(path: Path, limit: int) -> bytes:
    return read_bounded(path, "records", limit, RecordsError)


# ----- complexity_info.json -----------------------------------------------------------------------
class _BadNumber(ValueError):
    """A JSON number saverzoo refuses; the message says which kind, never its digits."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumber("a number too large for a float")
    return value


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INTEGER_DIGITS:
        raise _BadNumber(f"an integer of {digits:,} digits")
    return int(text)


def _no_constant(name: str) -> float:
    # json passes only its own words here: NaN, Infinity or -Infinity.
    raise _BadNumber(f"{name}, which is not a finite number")


def _parse_json(data: bytes, path: Path) -> object:
    try:
        text = data.decode("utf-8")
        return json.loads(
            text, parse_float=_finite_float, parse_int=_bounded_int, parse_constant=_no_constant
        )
    except UnicodeDecodeError as error:
        raise RecordsError(f"{path} is not UTF-8 text (byte {error.start:,})") from None
    except json.JSONDecodeError as error:  # its message may quote the file: the position only
        raise RecordsError(
            f"{path} is not valid JSON (line {error.lineno}, column {error.colno})"
        ) from None
    except _BadNumber as error:
        raise RecordsError(f"{path} holds {error}; write every cost as a finite number") from None
    except RecursionError:
        raise RecordsError(f"{path} nests deeper than a map of models to costs") from None


def _load_complexity(directory: Path) -> dict[str, dict]:
    path = directory / COMPLEXITY_FILE
    if not os.path.lexists(path):
        raise RecordsError(f"{path} is missing; it must map each model to its macs and params")
    info = _parse_json(_read_bounded(path, MAX_COMPLEXITY_BYTES), path)
    if not isinstance(info, dict):
        raise RecordsError(f"{path} must be a JSON object mapping model names to their costs")
    return info


def _to_giga(values: dict[str, float]) -> dict[str, float]:
    """MAC counts become GMACs; a file already in GMACs (all values small) is kept as it is."""
    if values and max(values.values()) < RAW_COUNT_FLOOR:
        return dict(values)
    return {name: value / 1e9 for name, value in values.items()}


def _check(check, value, what: str, *args):
    """A ``cluster.validate`` check whose refusal is a ``RecordsError``."""
    try:
        return check(value, what, *args)
    except RecordsError:
        raise
    except InputError as error:
        raise RecordsError(str(error)) from None


def _costs(directory: Path, complexity: dict[str, dict], names: list[str]):
    """Each model's GMACs and millions of parameters (None: not given) from complexity_info."""
    where = directory / COMPLEXITY_FILE
    unknown = [n for n in names if not isinstance(complexity.get(n), dict)]
    if unknown:
        raise RecordsError(f"{where} has no numeric macs for {', '.join(unknown)}")
    macs, params = {}, {}
    for name in names:
        info = complexity[name]
        macs[name] = _check(_positive, info.get("macs"), f"{where}: macs of {name!r}")
        value = info.get("params")
        if value is not None:
            value = _check(_positive, value, f"{where}: params of {name!r}") / 1e6
        params[name] = value
    gmacs = _to_giga(macs)
    vanished = [n for n in names if not gmacs[n] > 0]  # a raw count too small to survive / 1e9
    if vanished:
        raise RecordsError(f"{where}: macs must be positive for {', '.join(vanished)}")
    return gmacs, params


def _positive(value: object, what: str) -> float:
    return validate.number(value, what, low=0.0, low_open=True)


# ----- npz files: their layout from the zip directory and the npy headers -------------------------
@dataclass(frozen=True)
class _Array:
    """One array of an npz as its npy header describes it."""

    member: str
    offset: int  # where the data starts: the npy header's size
    shape: tuple[int, ...]
    dtype: np.dtype


@dataclass(frozen=True)
class _Layout:
    """What one records file holds, known from its headers alone."""

    path: Path
    label: _Array
    preds: _Array
    confs: _Array
    keys: _Array | None

    @property
    def samples(self) -> int:
        return self.preds.shape[-2]

    @property
    def top_k(self) -> int:
        return self.preds.shape[-1]


# What a broken zip or npz raises while its directory or a header is read.
_UNREADABLE = (
    OSError,
    ValueError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    RuntimeError,
    NotImplementedError,
    struct.error,
)


def _zip_directory(file: IO[bytes], path: Path) -> tuple[int, int]:
    """How many members the zip's directory lists and its size, from its end record alone.

    zipfile reads the whole directory into objects; a directory of millions of members would
    cost gigabytes before a single header could be checked."""
    size = file.seek(0, os.SEEK_END)
    start = max(0, size - _ZIP_END.size - 0xFFFF - _ZIP64_LOCATOR_SIZE - _ZIP64_END.size)
    file.seek(start)
    tail = file.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _ZIP_END.size:
        raise RecordsError(
            f"{path} is not a readable npz file (it has no zip directory); write it with "
            "numpy.savez"
        )
    members, directory = _ZIP_END.unpack_from(tail, at)[4:6]
    zip64 = at - _ZIP64_LOCATOR_SIZE - _ZIP64_END.size
    if zip64 >= 0 and tail[zip64 : zip64 + 4] == b"PK\x06\x06":
        # zipfile may take its numbers from this record instead: both must pass.
        members64, directory64 = _ZIP64_END.unpack_from(tail, zip64)[7:9]
        members, directory = max(members, members64), max(directory, directory64)
    return members, directory


def _check_zip_directory(file: IO[bytes], path: Path) -> None:
    file.seek(0)
    if file.read(len(npy.MAGIC_PREFIX)) == npy.MAGIC_PREFIX:
        raise RecordsError(
            f"{path} is a single .npy array, not an .npz archive of label, preds and confs; "
            "write it with numpy.savez"
        )
    members, size = _zip_directory(file, path)
    if members > MAX_ZIP_MEMBERS or size > MAX_ZIP_DIRECTORY_BYTES:
        raise RecordsError(
            f"{path}: its zip directory lists {members:,} members in {size:,} bytes; an npz of "
            f"records holds a few arrays (at most {MAX_ZIP_MEMBERS} members, "
            f"{MAX_ZIP_DIRECTORY_BYTES:,} bytes)"
        )
    file.seek(0)


def _read_exact(member: IO[bytes], size: int, where: str) -> bytes:
    parts, left = [], size
    while left > 0:
        part = member.read(min(left, CHUNK_BYTES))
        if not part:
            raise RecordsError(f"{where} ends {left:,} bytes before its header says")
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _npy_header(member: IO[bytes], where: str) -> tuple[int, tuple, bool, np.dtype]:
    """The data's offset, shape, Fortran order and dtype, from header bytes read with a bound."""
    magic = _read_exact(member, npy.MAGIC_LEN, where)
    version = npy.read_magic(io.BytesIO(magic))
    readers = {(1, 0): (2, npy.read_array_header_1_0), (2, 0): (4, npy.read_array_header_2_0)}
    if version not in readers:
        raise RecordsError(f"{where} is in npy format {version}; write it with numpy.savez")
    width, reader = readers[version]
    length_field = _read_exact(member, width, where)
    length = int.from_bytes(length_field, "little")
    if length > MAX_NPY_HEADER_BYTES:
        raise RecordsError(f"{where} has an npy header of {length:,} bytes; numpy writes ~128")
    header = _read_exact(member, length, where)
    with warnings.catch_warnings():  # a header written by Python 2 is read, without a word
        warnings.simplefilter("ignore")
        shape, fortran, dtype = reader(io.BytesIO(length_field + header))
    return npy.MAGIC_LEN + width + length, tuple(shape), fortran, dtype


def _array(archive: zipfile.ZipFile, name: str, path: Path) -> _Array | None:
    """The array ``name`` of the npz from its header, checked to be what its member holds."""
    try:
        info = archive.getinfo(f"{name}.npy")
    except KeyError:
        return None
    where = f"{path}: {name}"
    try:
        with archive.open(info) as member:
            offset, shape, fortran, dtype = _npy_header(member, where)
    except RecordsError:
        raise
    except Exception as error:  # noqa: BLE001
        # numpy parses the header as a Python literal, and a hostile one raises whatever that
        # parser raises; the messages quote the header, so the error's kind says enough.
        raise RecordsError(
            f"{where} has no readable npy header ({type(error).__name__}); write it with "
            "numpy.savez"
        ) from None
    array = _Array(info.filename, offset, shape, dtype)
    _check_array(array, fortran, info.file_size, where)
    return array


def _shape(shape: tuple[int, ...]) -> str:
    """A header's shape as a message may show it: the numbers, unless absurdly long."""
    text = str(shape)
    return text if len(text) <= 80 else f"of {len(shape)} axes with {len(text):,} digits"


def _check_array(array: _Array, fortran: bool, member_size: int, where: str) -> None:
    dtype = array.dtype
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise RecordsError(f"{where} must be a plain array of numbers or text, not {dtype.kind!r}")
    if dtype.itemsize == 0 or not 1 <= len(array.shape) <= 3 or min(array.shape) < 0:
        raise RecordsError(f"{where} must have 1 to 3 axes of items; its header says otherwise")
    if fortran:
        raise RecordsError(f"{where} is stored in Fortran order; save it C-ordered")
    claimed = array.offset + math.prod(array.shape) * dtype.itemsize
    if claimed != member_size:
        raise RecordsError(
            f"{where}: its header claims shape {_shape(array.shape)} of {dtype.str} "
            f"({claimed:,} bytes) but its zip member holds {member_size:,} bytes"
        )


def _layout_of(archive: zipfile.ZipFile, path: Path) -> _Layout:
    arrays = {name: _array(archive, name, path) for name in ("label", "preds", "confs", "keys")}
    missing = sorted(name for name in ("label", "preds", "confs") if arrays[name] is None)
    if missing:
        raise RecordsError(f"{path} lacks the arrays {missing}")
    label, preds, confs, keys = (arrays[n] for n in ("label", "preds", "confs", "keys"))
    assert label is not None and preds is not None and confs is not None  # none is missing
    _check_predictions(preds, confs, path)
    samples = preds.shape[-2]
    if label.dtype.kind not in "iu" or preds.dtype.kind not in "iu":
        raise RecordsError(f"{path}: label and preds must be integer class indices")
    if confs.dtype.kind not in "fiu":
        raise RecordsError(f"{path}: confs must be real numbers, not {confs.dtype}")
    if len(label.shape) > 2 or math.prod(label.shape) != samples:
        raise RecordsError(f"{path}: {math.prod(label.shape)} labels but predictions for {samples}")
    if keys is not None:
        _check_keys(keys, samples, path)
    return _Layout(path, label, preds, confs, keys)


def _check_predictions(preds: _Array, confs: _Array, path: Path) -> None:
    if len(preds.shape) not in (2, 3) or preds.shape != confs.shape:
        raise RecordsError(
            f"{path}: preds and confs must both be (exits, N, k); got {_shape(preds.shape)} "
            f"and {_shape(confs.shape)}"
        )
    if math.prod(preds.shape) == 0:
        raise RecordsError(
            f"{path}: preds has shape {_shape(preds.shape)}; it needs at least one exit, sample "
            "and class"
        )
    _check(validate.integer, preds.shape[-2], f"{path}: N", 1, validate.MAX_SAMPLES)
    if preds.shape[-1] > MAX_TOP_K:
        raise RecordsError(
            f"{path}: preds keeps the top {preds.shape[-1]:,} classes of each sample; records "
            f"keep at most the top {MAX_TOP_K}"
        )


def _check_keys(keys: _Array, samples: int, path: Path) -> None:
    if keys.dtype.kind != "U" or len(keys.shape) != 1:
        raise RecordsError(f"{path}: keys must be a list of text, one key a sample")
    if keys.shape[0] != samples:
        raise RecordsError(f"{path}: {keys.shape[0]} keys but {samples} labels")
    if keys.dtype.itemsize // 4 > MAX_KEY_CHARS:
        raise RecordsError(
            f"{path}: keys are up to {keys.dtype.itemsize // 4:,} characters long; a sample key "
            f"has at most {MAX_KEY_CHARS}"
        )


@dataclass
class _Open:
    """An npz opened as a regular file, its directory checked, and its layout."""

    file: IO[bytes]
    archive: zipfile.ZipFile
    layout: _Layout

    def close(self) -> None:
        self.archive.close()
        self.file.close()


def _open_npz(path: Path) -> _Open:
    file = _open_regular(path)
    try:
        _check_zip_directory(file, path)
        archive = zipfile.ZipFile(file)
    except RecordsError:
        file.close()
        raise
    except _UNREADABLE as error:
        file.close()
        raise RecordsError(
            f"{path} is not a readable npz file ({type(error).__name__}); write it with numpy.savez"
        ) from None
    try:
        return _Open(file, archive, _layout_of(archive, path))
    except BaseException:
        archive.close()
        file.close()
        raise


def _read_layout(path: Path) -> _Layout:
    """What a records file holds, from its zip directory and npy headers alone."""
    opened = _open_npz(path)
    opened.close()
    return opened.layout


# ----- memory: what reading holds, known before reading -------------------------------------------
def _memory_needed(layouts: list[_Layout]) -> int:
    """Bytes ``read_records`` holds for these files at most, from their headers alone.

    An import stores every model or none, so every model's exit 0 is held until the last file is
    read: int16 classes and float32 probabilities, 6 bytes a sample and top-k slot, for every
    model. The labels (int64) and the sample keys (an array, and a Python string each) are held
    once; the file being read adds its own labels and keys. Predictions are decompressed and
    converted ``CHUNK_BYTES`` at a time, so a file's own dtypes (int64 classes, float64
    probabilities) and its other exits cost a few chunks, not a copy of the file.
    """
    samples = layouts[0].samples
    predictions = sum(layout.samples * layout.top_k for layout in layouts)
    label_bytes = max(layout.label.dtype.itemsize for layout in layouts)
    key_bytes = max((layout.keys.dtype.itemsize for layout in layouts if layout.keys), default=0)
    held = HELD_BYTES_PER_PREDICTION * predictions + samples * 8
    if key_bytes:
        held += samples * (key_bytes + KEY_OBJECT_BYTES)
    reading = samples * (label_bytes + 8 + key_bytes) + 4 * CHUNK_BYTES
    return held + reading


def _check_memory(directory: Path, layouts: list[_Layout]) -> None:
    needed = _memory_needed(layouts)
    if needed <= MAX_RECORDS_BYTES:
        return
    predictions = sum(layout.samples * layout.top_k for layout in layouts)
    how = (
        "split the models into several folders and import them one after another into the "
        "same --dataset"
        if len(layouts) > 1
        else "keep fewer top classes a sample (saverzoo keeps 5)"
    )
    models = f"{len(layouts)} models" if len(layouts) > 1 else "one model"
    raise RecordsError(
        f"{directory}: the records of {models} ({predictions:,} top-k predictions on "
        f"{layouts[0].samples:,} samples) need {needed / 2**30:.1f} GiB in memory, more than the "
        f"{MAX_RECORDS_BYTES / 2**30:g} GiB saverzoo reads at once; {how}"
    )


# ----- npz files: their arrays, read within the layout --------------------------------------------
def _chunks(archive: zipfile.ZipFile, array: _Array, count: int, where: str) -> Iterator:
    """(start, items) of the array's first ``count`` items in C order, a chunk at a time."""
    step = max(1, CHUNK_BYTES // array.dtype.itemsize)
    with archive.open(array.member) as member:
        _read_exact(member, array.offset, where)  # the header, checked already
        for start in range(0, count, step):
            size = min(step, count - start)
            data = _read_exact(member, size * array.dtype.itemsize, where)
            yield start, np.frombuffer(data, dtype=array.dtype)


def _whole(archive: zipfile.ZipFile, array: _Array, where: str) -> np.ndarray:
    whole = np.empty(math.prod(array.shape), array.dtype)
    for start, items in _chunks(archive, array, len(whole), where):
        whole[start : start + len(items)] = items
    return whole


def _labels(archive: zipfile.ZipFile, layout: _Layout) -> np.ndarray:
    labels = _whole(archive, layout.label, f"{layout.path}: label")
    _check(validate.class_indices, labels, f"{layout.path}: label")
    return labels.astype(np.int64)


def _probabilities(archive: zipfile.ZipFile, layout: _Layout) -> np.ndarray:
    """Exit 0's confs as float32, each chunk checked to be probabilities."""
    probs = np.empty(layout.samples * layout.top_k, np.float32)
    where = f"{layout.path}: confs"
    for start, items in _chunks(archive, layout.confs, len(probs), where):
        part = probs[start : start + len(items)]
        with np.errstate(all="ignore"):  # a float64 beyond float32 becomes inf: refused below
            part[...] = items
        if not (part.min() >= 0 and part.max() <= 1):  # NaN fails both comparisons
            raise RecordsError(f"{layout.path}: confs must be probabilities in [0, 1]")
    return probs.reshape(layout.samples, layout.top_k)


def _class_range(classes: np.ndarray, probs: np.ndarray) -> tuple:
    """The lowest and highest class, "no prediction" (-1 at probability 0) counted as class 0."""
    low, high = classes.min(), classes.max()
    if low >= 0:
        return low, high
    predicted = (classes != -1) | (probs != 0)
    if predicted.all():
        return low, high
    return np.min(classes, where=predicted, initial=0), np.max(classes, where=predicted, initial=0)


def _classes(archive: zipfile.ZipFile, layout: _Layout, probs: np.ndarray) -> np.ndarray:
    """Exit 0's preds as int16, checked as a whole to be classes the database stores."""
    classes = np.empty(probs.size, np.int16)
    flat = probs.reshape(-1)
    lows, highs = [], []
    for start, items in _chunks(archive, layout.preds, len(classes), f"{layout.path}: preds"):
        low, high = _class_range(items, flat[start : start + len(items)])
        lows.append(low)
        highs.append(high)
        classes[start : start + len(items)] = items  # a class beyond int16 is refused below
    span = np.array([min(lows), max(highs)], dtype=layout.preds.dtype)
    _check(validate.class_indices, span, f"{layout.path}: preds")
    return classes.reshape(probs.shape)


def _keys(archive: zipfile.ZipFile, layout: _Layout) -> np.ndarray | None:
    if layout.keys is None:
        return None
    return _whole(archive, layout.keys, f"{layout.path}: keys")


@dataclass(frozen=True)
class _FileRecords:
    labels: np.ndarray
    classes: np.ndarray
    probs: np.ndarray
    keys: np.ndarray | None


def _load_npz(path: Path, expected: _Layout) -> _FileRecords:
    opened = _open_npz(path)
    try:
        if opened.layout != expected:
            raise RecordsError(f"{path} changed while it was read; import it again")
        archive = opened.archive
        labels = _labels(archive, expected)
        probs = _probabilities(archive, expected)
        return _FileRecords(
            labels, _classes(archive, expected, probs), probs, _keys(archive, expected)
        )
    except RecordsError:
        raise
    except _UNREADABLE as error:
        raise RecordsError(f"{path} is not a readable npz file ({type(error).__name__})") from None
    finally:
        opened.close()


# ----- the folder ---------------------------------------------------------------------------------
def _same_samples(layouts: list[_Layout]) -> None:
    first = layouts[0]
    for layout in layouts[1:]:
        if layout.samples != first.samples:
            raise RecordsError(
                f"{layout.path} has N={layout.samples} but {first.path} has N={first.samples}"
            )


def _record_files(directory: Path) -> tuple[list[Path], list[str]]:
    files = sorted(directory.glob(f"*{RECORD_SUFFIX}"))
    if not files:
        raise RecordsError(f"{directory} has no *{RECORD_SUFFIX} files")
    names = [
        _check(validate.name, f.name[: -len(RECORD_SUFFIX)], f"model name (from {f.name})")
        for f in files
    ]
    return files, names


def _keys_list(keys: np.ndarray | None, path: Path) -> list[str] | None:
    if keys is None:
        return None
    result = keys.tolist()
    _check(validate.unique_keys, result, f"{path}")
    return result


def read_records(directory: Path) -> Records:
    """Every model of a records directory, checked to share the same samples and labels.

    Every file's layout is checked, and the memory the read needs, before any array is read."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RecordsError(f"{directory} is not a directory of TinySaver records")
    complexity = _load_complexity(directory)
    files, names = _record_files(directory)
    gmacs, params = _costs(directory, complexity, names)
    layouts = [_read_layout(path) for path in files]
    _same_samples(layouts)
    _check_memory(directory, layouts)
    first = _load_npz(files[0], layouts[0])
    keys = _keys_list(first.keys, files[0])
    models = []
    for path, name, layout in zip(files, names, layouts, strict=True):
        loaded = first if path == files[0] else _load_npz(path, layout)
        _same_as_first(loaded, first, path, files[0])
        models.append(ModelRecords(name, gmacs[name], params[name], loaded.classes, loaded.probs))
    return Records(labels=first.labels, models=models, keys=keys)


def _same_as_first(loaded: _FileRecords, first: _FileRecords, path: Path, first_path: Path) -> None:
    if loaded is first:
        return
    same_keys = (loaded.keys is None and first.keys is None) or (
        loaded.keys is not None
        and first.keys is not None
        and np.array_equal(loaded.keys, first.keys)
    )
    if not same_keys:
        raise RecordsError(f"{path} has other sample keys than {first_path}")
    if not np.array_equal(loaded.labels, first.labels):
        raise RecordsError(f"{path} has other labels than {first_path} for the same samples")
