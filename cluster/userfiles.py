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

from cluster.errors import InputError

MIB = 1 << 20


def read_bounded(path: Path, what: str, limit: int) -> bytes:
    """The bytes of the regular file ``path``, refused when it is not one or holds more than
    ``limit`` bytes; ``what`` names the option or file in errors (``--models @FILE``)."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer before it can be refused.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise InputError(f"{what}: cannot read {path} ({error.strerror or error})") from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise InputError(f"{what}: {path} is not a regular file")
    with os.fdopen(descriptor, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise InputError(f"{what}: {path} holds more than {limit / MIB:g} MiB; that is too large")
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
