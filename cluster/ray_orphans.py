"""Processes an embedded Ray leaves behind when its driver is killed, found and ended later.

An embedded Ray's own processes (GCS, raylet, monitor, dashboard) die with a killed driver (Ray
sets the parent-death signal on Linux), but two agents, children of the raylet, outlive it by
about a minute, still listening: they try to report the raylet's death to the dead GCS first.
Ray writes no PID files. What identifies them is the session folder they keep log files open in:
``<temp root>/session_<date>_<driver pid>``, under saverzoo's own temp root. A session whose
driver is gone is over, and every process still holding files in it is ended.
"""

from __future__ import annotations

import logging
import os
import re
import signal
from pathlib import Path

from cluster.processes import alive

logger = logging.getLogger(__name__)

_SESSION = re.compile(r"^session_.*_(\d+)$")


def session_driver(session: Path) -> int | None:
    """The PID of the driver that started a Ray session folder, from its name."""
    match = _SESSION.match(session.name)
    return int(match.group(1)) if match else None


def processes_using(folder: Path) -> set[int]:
    """PIDs of this user's processes with a file open, or their command line, under
    ``folder`` (Linux ``/proc``; an empty set elsewhere)."""
    prefix = str(folder.resolve()) + os.sep
    found = set()
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        try:
            if prefix in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace"
            ):
                found.add(pid)
                continue
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd).startswith(prefix):
                    found.add(pid)
                    break
        except OSError:  # gone meanwhile, or another user's
            continue
    return found


def end_orphans(root: Path) -> list[int]:
    """End every process of a session under ``root`` whose driver is gone; returns their PIDs."""
    ended = []
    for session in sorted(root.glob("session_*")) if root.is_dir() else []:
        driver = session_driver(session)
        if session.is_symlink() or driver is None or alive(driver):
            continue
        for pid in sorted(processes_using(session)):
            try:
                os.kill(pid, signal.SIGKILL)
                ended.append(pid)
            except OSError:
                continue
    if ended:
        logger.warning(
            "ended %d processes an earlier embedded Ray left behind: %s", len(ended), ended
        )
    return ended
