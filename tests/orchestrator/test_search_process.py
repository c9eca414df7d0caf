"""The sweep's saver search runs in a process of its own: what the driver hands it is searched
once, a failure is reported rather than raised, and it never outlives its driver."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict
from pathlib import Path

from sqlalchemy import delete, func, select

from db.models import BestSaver, ChainResult, Dataset, Model, PairResult, Sweep
from db.schema import ensure_schema
from db.session import session_factory
from orchestrator.sweeps.search_process import BackgroundSearch
from orchestrator.sweeps.store import SweepOptions
from tests.factories import records_dir, saverzoo, saverzoo_json, small_zoo


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


def _sweep(url: str, **fields) -> int:
    """A sweep of every model of 'val', as its driver's claim leaves it: running."""
    with session_factory(url).begin() as session:
        dataset = session.scalar(select(Dataset).where(Dataset.name == "val"))
        names = list(session.scalars(select(Model.name)))
        sweep = Sweep(
            dataset_id=dataset.id,
            submitted_by="test",
            model_patterns=["*"],
            models=names,
            options=asdict(SweepOptions()),
            state="running",
            **fields,
        )
        session.add(sweep)
        session.flush()
        return sweep.id


def _keep_margin_pairs(url: str, keep: bool = True) -> None:
    """'val' keeps pairs on the margin confidence too (top-1 minus top-2 probability); its
    records hold each model's top-1 alone, so its search fails, naming a model and the fix."""
    with session_factory(url).begin() as session:
        dataset = session.scalar(select(Dataset).where(Dataset.name == "val"))
        dataset.confidence_signals = ["margin", "max"] if keep else ["max"]


def test_a_failing_search_is_logged_and_recorded_where_sweep_status_shows_it(
    use_database, tmp_path, caplog
):
    ids, _ = _imported_unsearched(tmp_path, use_database)
    sweep_id = _sweep(use_database)
    _keep_margin_pairs(use_database)

    with caplog.at_level(logging.INFO):
        search = BackgroundSearch(session_factory(use_database), "val", sweep_id=sweep_id)
        search.stored(ids)
        search.close()

    assert search.error is not None
    assert search.error.startswith("InputError: model ")
    assert "has only its top-1 probability stored" in search.error
    # The child's record, written by this process's handlers, names the sweep.
    [record] = [r for r in caplog.records if "saver search failed" in r.getMessage()]
    assert record.getMessage() == (
        f"sweep {sweep_id}: saver search failed: {search.error}; it searches nothing more"
    )
    assert (record.levelname, record.sweep_id, record.name) == (
        "WARNING",
        sweep_id,
        "orchestrator.sweeps.search_process",
    )
    shown = saverzoo("sweep", "status", str(sweep_id))
    assert shown.exit_code == 0, shown.output
    [line] = [line for line in shown.stderr.splitlines() if "saver search" in line]
    assert line == (
        f"warning: the saver search failed during this sweep: {search.error}; once its cause is "
        "fixed, `saverzoo savers refresh --dataset val` computes the pairs it missed"
    )
    assert saverzoo_json("sweep", "status", str(sweep_id))["search_error"] == search.error

    _keep_margin_pairs(use_database, keep=False)  # the cause fixed, the sweep resumed
    again = BackgroundSearch(session_factory(use_database), "val", sweep_id=sweep_id)
    again.stored(ids)
    again.close()
    assert again.error is None and again.searched == set(ids)
    assert saverzoo_json("sweep", "status", str(sweep_id))["search_error"] is None
    assert "saver search" not in saverzoo("sweep", "status", str(sweep_id)).stderr


def test_a_killed_search_process_is_recorded_in_its_sweep(use_database, tmp_path):
    ids, _ = _imported_unsearched(tmp_path, use_database)
    sweep_id = _sweep(use_database)
    search = BackgroundSearch(session_factory(use_database), "val", sweep_id)
    os.kill(search._process.pid, signal.SIGKILL)  # as the kernel's out-of-memory killer does
    search._process.wait()
    search.stored(ids)  # finds nobody to read it
    search.close()
    assert search.error == "the search process was killed (SIGKILL)"
    assert saverzoo_json("sweep", "status", str(sweep_id))["search_error"] == search.error


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (not a zombie awaiting its reaper)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
