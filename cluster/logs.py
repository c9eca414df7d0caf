"""Logs of work that runs unattended: one format, the sweep and unit on each record, rotation.

Each module logs through ``logging.getLogger(__name__)``; what runs for one sweep wraps it in
``SweepLog`` so that every record says which sweep (and, where there is one, which unit) it is
about, in the message a person reads and as the record's ``sweep_id`` and ``unit`` attributes a
log collector can index. A process that runs with nobody watching (a background driver) writes
its records to a file that rotates, so a long-running service never fills the disk.

Where records go, by process:

* a driver in a terminal: warnings and errors on standard error, one line each;
* a driver in the background (``sweep resume N --wait --log-file PATH``): ``log_to_file``;
* a worker actor: ``log_to_stderr`` (Ray keeps a worker's standard error in its log files on
  the worker's node), with ``RunningUnit`` naming the unit on the records of modules that know
  no sweep (an out-of-memory retry in ``workers.device``);
* the search process: its records travel to the driver's process over the pipe it answers on,
  and the driver's handlers write them (one process writes a log file).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FILE_BYTES = 10 * 2**20  # a file this large is rotated
LOG_FILE_BACKUPS = 5  # rotated files kept beside it (.1 … .5)


def where(sweep_id: int, unit: int | None = None) -> str:
    """How a record names its sweep and unit: ``sweep 3`` or ``sweep 3 unit 12``."""
    return f"sweep {sweep_id}" + ("" if unit is None else f" unit {unit}")


class SweepLog(logging.LoggerAdapter[logging.Logger]):
    """A module's logger for one sweep (and optionally one of its units)."""

    def __init__(self, logger: logging.Logger, sweep_id: int, unit: int | None = None) -> None:
        super().__init__(logger, {"sweep_id": sweep_id, "unit": unit})
        self.sweep_id, self.unit = sweep_id, unit

    def for_unit(self, unit: int) -> SweepLog:
        """The same logger, each record also naming ``unit``."""
        return SweepLog(self.logger, self.sweep_id, unit)

    def process(
        self, msg: object, kwargs: MutableMapping[str, Any]
    ) -> tuple[object, MutableMapping[str, Any]]:
        kwargs["extra"] = {"sweep_id": self.sweep_id, "unit": self.unit, **kwargs.get("extra", {})}
        return f"{where(self.sweep_id, self.unit)}: {msg}", kwargs


class RunningUnit(logging.Filter):
    """A handler's filter that names the unit a process is running on the records of modules
    that know no sweep (``workers.device``'s out-of-memory retry); records of a ``SweepLog``
    already name theirs and pass unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.sweep_id: int | None = None
        self.unit: int | None = None

    @contextmanager
    def running(self, sweep_id: int | None, unit: int | None) -> Iterator[None]:
        """Records logged meanwhile name ``sweep_id`` and ``unit`` (None: no sweep, unchanged)."""
        self.sweep_id, self.unit = sweep_id, unit
        try:
            yield
        finally:
            self.sweep_id = self.unit = None

    def filter(self, record: logging.LogRecord) -> bool:
        if self.sweep_id is not None and getattr(record, "sweep_id", None) is None:
            record.sweep_id, record.unit = self.sweep_id, self.unit
            record.msg = f"{where(self.sweep_id, self.unit)}: {record.msg}"
        return True


def log_to_file(path: Path, level: int = logging.INFO) -> RotatingFileHandler:
    """Send this process's records at ``level`` and above to ``path``, rotated at
    ``LOG_FILE_BYTES`` with ``LOG_FILE_BACKUPS`` older files kept; the handler (to remove it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(
        path, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter(FORMAT))
    _add_to_root(handler, level)
    return handler


def log_to_stderr(level: int = logging.INFO) -> list[logging.Handler]:
    """The handlers of a process that runs unattended inside another's machinery (a Ray worker):
    its root logger's own, if it has any (a Ray job's ``LoggingConfig``), else a new one that
    writes records at ``level`` and above to standard error. Without it such a process keeps only
    warnings: logging's last resort, at the root logger's default level, WARNING."""
    root = logging.getLogger()
    if root.handlers:
        return list(root.handlers)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    _add_to_root(handler, level)
    return [handler]


def _add_to_root(handler: logging.Handler, level: int) -> None:
    handler.setLevel(level)
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > level or root.level == logging.NOTSET:
        root.setLevel(level)
