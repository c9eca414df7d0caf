"""The sweep's saver search runs in a process of its own: what the driver hands it is searched
once, a failure is reported rather than raised, and it never outlives its driver."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from sqlalchemy import delete, func, select

from db.models import BestSaver, ChainResult, Model, PairResult
from db.schema import ensure_schema
from db.session import session_factory
from orchestrator.sweeps.search_process import BackgroundSearch
from tests.factories import records_dir, saverzoo, small_zoo


def _imported_unsearched(tmp_path: Path, url: str) -> tuple[list[int], int]:
    """A dataset's complete models with their search results deleted; the pair count before."""
    result = saverzoo("records", "import", records_dir(tmp_path, small_zoo(5)), "--dataset", "val")
    assert result.exit_code == 0, result.output
    with session_factory(url).begin() as session:
        pairs = session.scalar(select(func.count()).select_from(PairResult))
        for table in (ChainResult, BestSaver, PairResult):
            session.execute(delete(table))
        ids = list(session.scalars(select(Model.id).order_by(Model.id)))
    return ids, pairs


def test_the_models_handed_over_are_searched_once_each(use_database, tmp_path):
    ids, pairs_before = _imported_unsearched(tmp_path, use_database)
    assert pairs_before > 0
    sessions = session_factory(use_database)
    search = BackgroundSearch(sessions, "val")
    search.stored(ids[:2])
    search.stored(ids[2:])
    search.stored(ids)  # handed over again: searched already
    search.close()
    assert search.error is None
    assert search.searched == set(ids)
    with sessions.begin() as session:
        assert session.scalar(select(func.count()).select_from(PairResult)) == pairs_before


def test_a_failing_search_is_reported_and_the_driver_goes_on(use_database, tmp_path):
    ensure_schema(use_database)
    search = BackgroundSearch(session_factory(use_database), "no-such-dataset")
    search.stored([1, 2])
    search.close()
    assert search.searched == set()
    assert "no-such-dataset" in (search.error or "")


def test_the_search_ends_quietly_with_its_driver_and_keeps_the_password_off_its_command_line(
    tmp_path,
):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}?secret=hunter2-password"
    driver = textwrap.dedent(
        f"""
        import os, signal
        from db.session import session_factory
        from orchestrator.sweeps.search_process import BackgroundSearch
        search = BackgroundSearch(session_factory({url!r}), "val")
        print(search._process.pid, flush=True)
        input()  # until the test has read the child's command line
        search.stored([1])  # its answer will find nobody to read it
        os.kill(os.getpid(), signal.SIGKILL)  # the driver dies without closing anything
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", driver],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    child = int(parent.stdout.readline())
    command_line = Path(f"/proc/{child}/cmdline").read_bytes()
    assert b"hunter2" not in command_line
    _, errors = parent.communicate("\n", timeout=60)  # returns once the child closed stderr
    deadline = time.monotonic() + 30
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(child)
    assert "Traceback" not in errors


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (not a zombie awaiting its reaper)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
