"""Processes an embedded Ray leaves behind when its driver is killed, found and ended later.

An embedded Ray's own processes (GCS, raylet, monitor, dashboard) die with a killed driver (Ray
sets the parent-death signal on Linux), but two agents, children of the raylet, outlive it by
about a minute, still listening: they try to report the raylet's death to the dead GCS first.
Ray writes no PID files. What identifies them is the session folder they keep log files open in:
``<temp root>/session_<date>_<driver pid>``, under saverzoo's own temp root. A session whose
driver is gone is over, and every Ray process of this user still holding files in it is ended
(not a user's ``tail -f`` of its logs). The folders stay, for their logs.
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
RAY_PROGRAMS = ("raylet", "gcs_server")


def session_driver(session: Path) -> int | None:
    """The PID of the driver that started a Ray session folder, from its name."""
    match = _SESSION.match(session.name)
    return int(match.group(1)) if match else None


def _ray_process(entry: Path) -> bool:
    """Whether ``/proc/PID`` is one of this user's Ray processes (``ray::…`` agents and
    workers, the raylet, the GCS): a user's ``tail -f`` of a Ray log is not."""
    if entry.stat().st_uid != os.getuid():
        return False
    name = (entry / "comm").read_text().strip()
    return name.startswith("ray::") or name in RAY_PROGRAMS


def processes_using(folders: list[Path], *, ray_only: bool = False) -> dict[int, Path]:
    """This user's processes with a file open, or their command line, under one of
    ``folders``, each with that folder (Linux ``/proc``; none elsewhere). One scan of /proc."""
    prefixes = {str(folder.resolve()) + os.sep: folder for folder in folders}
    found: dict[int, Path] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        try:
            if ray_only and not _ray_process(entry):
                continue
            places = [
                (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ]
            places += [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:  # gone meanwhile, or another user's
            continue
        for prefix, folder in prefixes.items():
            if any(prefix in place for place in places):
                found[pid] = folder
                break
    return found


def end_orphans(root: Path) -> list[int]:
    """End the Ray processes of every session under ``root`` whose driver is gone; returns
    their PIDs."""
    sessions = sorted(root.glob("session_*")) if root.is_dir() else []
    over = [s for s in sessions if not s.is_symlink() and _over(s)]
    ended = []
    for pid in sorted(processes_using(over, ray_only=True)) if over else []:
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


def _over(session: Path) -> bool:
    driver = session_driver(session)
    return driver is not None and not alive(driver)
