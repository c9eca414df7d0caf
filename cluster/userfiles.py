"""Reading a file a user names: a regular file, at most so many bytes, or one line saying why.

A name can point anywhere: ``/dev/zero`` never ends, a FIFO blocks its reader, a folder has no
bytes. Each of them is refused before anything is read, and a regular file is read only up to its
limit. Errors name the file and never quote its content (it may be a file the user did not mean
to show, such as ``/etc/shadow``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO

from cluster.errors import InputError

MIB = 1 << 20


def _kind(mode: int) -> str:
    kinds = [
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _require_regular(mode: int, path: Path, what: str, error: type[InputError]) -> None:
    if not stat.S_ISREG(mode):
        raise error(f"{what}: {path} is {_kind(mode)}, not a file; name a regular file")


def open_regular(path: Path, what: str, error: type[InputError] = InputError) -> IO[bytes]:
    """``path`` opened for reading if it is a regular file, else ``error`` naming what it is.

    The kind is checked before opening (opening a device may act) and again on the open file
    (the name may be swapped in between); O_NONBLOCK keeps a FIFO's open from waiting."""
    try:
        _require_regular(os.stat(path).st_mode, path, what, error)
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as failure:
        raise error(f"{what}: cannot read {path} ({failure.strerror or failure})") from None
    try:
        _require_regular(os.fstat(descriptor).st_mode, path, what, error)
    except InputError:
        os.close(descriptor)
        raise
    return os.fdopen(descriptor, "rb")


def read_bounded(path: Path, what: str, limit: int, error: type[InputError] = InputError) -> bytes:
    """The bytes of the regular file ``path``, refused when it is not one or holds more than
    ``limit`` bytes; ``what`` names the option or file in errors (``--models @FILE``)."""
    with open_regular(path, what, error) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise error(f"{what}: {path} is larger than {limit:,} bytes; that is too large")
    return data


def read_text_bounded(path: Path, what: str, limit: int) -> str:
    """``read_bounded`` as UTF-8 text, refused (without quoting it) when it is not."""
    try:
        return read_bounded(path, what, limit).decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{what}: {path} is not UTF-8 text (byte {error.start})") from None


def output_folder(path: Path, what: str = "--out") -> Path:
    """``path`` if a folder can be made there (it may exist as one), refused in one line when it
    or a folder above it is a file: checked before any work, so a refusal writes nothing."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                where = "is a file" if candidate == path else f"is below the file {candidate}"
                raise InputError(f"{what} {path} {where}; give a folder (it is made if missing)")
            if not os.access(candidate, os.W_OK | os.X_OK):
                raise InputError(f"{what} {path}: cannot write in {candidate}; give another folder")
            return path
    return path


def output_file(path: Path, what: str) -> Path:
    """``path`` if a file can be written there: refused in one line when it exists as anything
    but a regular file (a folder, a FIFO that would block its writer, a device) or when its
    folder cannot be made or written in. Checked before any work."""
    if path.exists() or path.is_symlink():
        try:
            _require_regular(os.stat(path).st_mode, path, what, InputError)
        except FileNotFoundError:  # a dangling link: written through, which the user may not mean
            raise InputError(f"{what}: {path} is a link to nothing; name a regular file") from None
        if not os.access(path, os.W_OK):
            raise InputError(f"{what}: cannot write {path}; name another file")
        return path
    output_folder(path.parent, what)
    return path
