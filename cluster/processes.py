"""Processes of this machine, by pid (a driver's, a shard copier's)."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """Whether a process with ``pid`` runs here (one of another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
