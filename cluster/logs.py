"""Logs of work that runs unattended: one format, the sweep and unit on each record, rotation.

Each module logs through ``logging.getLogger(__name__)``; what runs for one sweep wraps it in
``SweepLog`` so that every record says which sweep (and, where there is one, which unit) it is
about, in the message a person reads and as the record's ``sweep_id`` and ``unit`` attributes a
log collector can index. A process that runs with nobody watching (a background driver) writes
its records to a file that rotates, so a long-running service never fills the disk.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FILE_BYTES = 10 * 2**20  # a file this large is rotated
LOG_FILE_BACKUPS = 5  # rotated files kept beside it (.1 … .5)


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
        where = f"sweep {self.sweep_id}" + ("" if self.unit is None else f" unit {self.unit}")
        return f"{where}: {msg}", kwargs


def log_to_file(path: Path, level: int = logging.INFO) -> RotatingFileHandler:
    """Send this process's records at ``level`` and above to ``path``, rotated at
    ``LOG_FILE_BYTES`` with ``LOG_FILE_BACKUPS`` older files kept; the handler (to remove it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(
        path, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > level or root.level == logging.NOTSET:
        root.setLevel(level)
    return handler
