"""A driver's records: in the background, to a log file of its own that rotates (its output,
where a crash's traceback lands, in a file apart); in a terminal, warnings on standard error,
one line each."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict
from logging.handlers import RotatingFileHandler
from pathlib import Path

import pytest

from db.models import Dataset, Sweep
from db.schema import ensure_schema
from db.session import session_factory
from orchestrator.cli.sweep import driver_log
from orchestrator.sweeps.store import SweepOptions
from tests.factories import saverzoo

NO_RAY = "127.0.0.2:9"  # a loopback port where nothing answers (discard)


def _queued_sweep(url: str) -> int:
    ensure_schema(url)
    with session_factory(url).begin() as session:
        dataset = Dataset(name="tiny", num_samples=0, num_classes=2)
        session.add(dataset)
        session.flush()
        sweep = Sweep(
            dataset_id=dataset.id,
            submitted_by="test",
            model_patterns=[],
            models=[],
            options=asdict(SweepOptions()),
            state="queued",
        )
        session.add(sweep)
        session.flush()
        return sweep.id


def _sweep_row(url: str, sweep_id: int) -> tuple[str, str | None]:
    with session_factory(url).begin() as session:
        sweep = session.get(Sweep, sweep_id)
        return sweep.state, sweep.error


@pytest.mark.slow
def test_a_background_driver_logs_to_its_own_file_and_its_output_goes_apart(
    use_database, tmp_path, monkeypatch
):
    from cluster.settings import get_settings
    from orchestrator.sweeps.launch import start_in_background

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    sweep_id = _queued_sweep(use_database)

    said = start_in_background(get_settings(), sweep_id, NO_RAY)

    folder = tmp_path / "data" / "saverzoo" / "sweeps"
    log, output = folder / f"sweep-{sweep_id}.log", folder / f"sweep-{sweep_id}.out"
    assert f"(log: {log};" in said and output.name in said
    deadline = time.monotonic() + 120
    while _sweep_row(use_database, sweep_id)[0] == "queued" and time.monotonic() < deadline:
        time.sleep(0.1)
    state, error = _sweep_row(use_database, sweep_id)
    assert state == "failed" and error.startswith(f"no Ray cluster answers at {NO_RAY}")
    while "error:" not in _read(output) and time.monotonic() < deadline:  # the process ends
        time.sleep(0.1)
    [record] = _read(log).splitlines()
    assert f" ERROR orchestrator.cli.sweep: sweep {sweep_id}: {error}" in record
    assert f"error: {error}" in _read(output)  # what it said on its standard error
    assert "Traceback" not in _read(output)


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_a_drivers_log_file_rotates(tmp_path):
    log = logging.getLogger("orchestrator.sweeps.driver")
    with driver_log(tmp_path / "sweep-3.log"):
        [handler] = [h for h in logging.getLogger().handlers if isinstance(h, RotatingFileHandler)]
        handler.maxBytes = 2_000  # small, so that a thousand records rotate it several times
        for unit in range(1_000):
            log.info("sweep 3 unit %d: retried: worker lost", unit)
    assert handler not in logging.getLogger().handlers  # the command's end removes it
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["sweep-3.log"] + [f"sweep-3.log.{n}" for n in range(1, 6)]
    assert "sweep 3 unit 999: retried" in (tmp_path / "sweep-3.log").read_text()
    assert "sweep 3 unit 0:" not in "".join((tmp_path / f).read_text() for f in files)


def test_in_a_terminal_a_drivers_warnings_reach_stderr_one_line_each(capsys):
    from cluster.logs import SweepLog

    log = SweepLog(logging.getLogger("orchestrator.sweeps.driver"), 3)
    with driver_log(None):
        log.for_unit(12).warning("retried: worker lost (node 10.0.0.7 died)\nsecond line")
        log.info("an INFO record stays out of a terminal")
        try:
            raise ConnectionError("refused")
        except ConnectionError:
            log.exception("saver search failed")
    log.warning("after the driver: not this handler's")
    assert capsys.readouterr().err.splitlines() == [
        "warning: sweep 3 unit 12: retried: worker lost (node 10.0.0.7 died)",
        "error: sweep 3: saver search failed (ConnectionError('refused'))",
    ]


def test_a_log_file_without_wait_is_refused_in_one_line(use_database, tmp_path):
    refused = saverzoo("sweep", "resume", "1", "--log-file", tmp_path / "x.log")
    assert refused.exit_code == 1
    assert refused.stderr.startswith("error: --log-file is where a driver running here logs")
    assert len(refused.stderr.splitlines()) == 1
    assert not (tmp_path / "x.log").exists()


@pytest.mark.parametrize("kind", ["folder", "fifo", "below a file"])
def test_a_log_file_that_cannot_be_a_file_is_refused_before_anything_runs(
    use_database, tmp_path, kind
):
    if kind == "folder":
        target = tmp_path / "logs"
        target.mkdir()
        expected = "is a directory"  # typer's own check (dir_okay=False)
    elif kind == "fifo":
        target = tmp_path / "pipe.log"
        os.mkfifo(target)
        expected = f"--log-file: {target} is a FIFO, not a file"  # a writer would block
    else:
        (tmp_path / "plain").write_text("x")
        target = tmp_path / "plain" / "sweep.log"
        expected = f"--log-file {tmp_path / 'plain'} is a file"

    refused = saverzoo("sweep", "resume", "1", "--wait", "--log-file", target)

    assert refused.exit_code == 1, refused.output
    assert refused.stderr.startswith("error: ") and expected in refused.stderr
    assert len(refused.stderr.splitlines()) == 1
