"""What the sweep tests share: the seeded zoo they sweep and ways to watch a sweep's rows."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from db.arrays import from_npy
from db.models import Model, PredictionChunk, Sweep, SweepUnit
from db.session import session_factory

ARCHS = (
    "test_resnet",
    "test_efficientnet",
    "test_vit",
    "test_convnext",
    "test_byobnet",
    "test_nfnet",
)
MODELS = [f"seeded-{arch}" for arch in ARCHS]
SHARDS = 4
BUDGETS = (0.0, 0.1, 0.5, 1.0, 2.0)  # the default budgets, and the paper criterion beside them


# Failure tests run on PostgreSQL, the database a cluster's workers share; the equality and the
# bad-input tests run on both databases.
def on_postgres(test):
    return pytest.mark.postgres(
        pytest.mark.parametrize("database_url", ["postgres"], indirect=True)(test)
    )


def chunks(url: str) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray, object]]:
    """(model, shard) -> (top-5 classes, top-5 probabilities, when it was written)."""
    with session_factory(url).begin() as session:
        rows = session.execute(
            select(Model.name, PredictionChunk).join(Model, Model.id == PredictionChunk.model_id)
        ).all()
        return {
            (name, c.shard_index): (from_npy(c.topk_classes), from_npy(c.topk_probs), c.created_at)
            for name, c in rows
        }


def units(url: str, sweep_id: int = 1) -> list[SweepUnit]:
    with session_factory(url).begin() as session:
        rows = session.scalars(select(SweepUnit).where(SweepUnit.sweep_id == sweep_id)).all()
        session.expunge_all()
        return rows


def sweep_state(url: str, sweep_id: int = 1) -> str | None:
    with session_factory(url).begin() as session:
        sweep = session.get(Sweep, sweep_id)
        return sweep.state if sweep else None


def in_background(*args: str) -> subprocess.Popen:
    """The CLI in its own process (and process group), as a user's terminal would run it."""
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
    )


def alive(pid: int) -> bool:
    """Running (a zombie, ended but not yet reaped by this test process, is not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for(condition, timeout: float = 120.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def files_holding(folder: str | Path, secrets: list[str]) -> list[str]:
    """Files under ``folder`` that hold any of ``secrets`` (named with the secret's start)."""
    found = []
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_socket():
            content = path.read_bytes()
            found += [f"{path}: {s[:3]}…" for s in secrets if s.encode() in content]
    return found


def listening_addresses(pids: set[int]) -> list[str]:
    """The local addresses on which any of ``pids`` listens for TCP connections (``ss``)."""
    listed = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in listed.splitlines():
        owners = {int(pid) for pid in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            found.append(line.split()[3])
    return found


def on_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    return host.startswith(("127.", "::ffff:127.")) or host == "::1"
