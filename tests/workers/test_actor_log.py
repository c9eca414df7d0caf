"""A worker actor's records: each names the sweep and unit it was running; a unit's success is
DEBUG (a sweep has thousands), a failing model, a failed unit and an out-of-memory retry are
WARNING; and INFO records are kept in a process that nobody configured logging in (a Ray
worker's, whose standard error Ray keeps in its log files)."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest

from cluster.logs import RunningUnit
from cluster.ray_cluster import ray_api
from workers.device import Device, ShrinkingBatch
from workers.report import UnitReport
from workers.shards import ShardError

# Ray imported as a driver imports it, before workers.actor imports it bare: an embedded Ray
# that a later test starts in this process reads its single-machine setting at that import.
ray_api(embedded=True)

from workers.actor import run_logged, unit_log  # noqa: E402


def _messages(caplog, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def test_a_units_success_is_debug_and_each_failing_model_a_warning_naming_sweep_and_unit(
    caplog,
):
    report = UnitReport(3, stored=["a", "b"], skipped=["c"], failed={"d": "ModelRunError: nan"})
    report.samples, report.seconds = 1000, 1.25
    with caplog.at_level(logging.DEBUG, logger="workers.actor"):
        returned = run_logged(unit_log(7, 12), lambda: report, 3, 4)
    assert returned is report
    assert _messages(caplog, logging.DEBUG) == [
        "sweep 7 unit 12: shard 3: 4 models started",
        "sweep 7 unit 12: shard 3: 2 models stored, 1 there already, 1 failed, "
        "1000 samples in 1.25 s",
    ]
    assert _messages(caplog, logging.WARNING) == [
        "sweep 7 unit 12: shard 3: model d failed: ModelRunError: nan"
    ]
    assert {(r.sweep_id, r.unit) for r in caplog.records} == {(7, 12)}


def test_a_unit_that_raises_is_a_warning_with_its_error_line_and_is_raised_again(caplog):
    def unreadable() -> UnitReport:
        raise ShardError("shard s3://b/x-3.tar cannot be read: permission denied\nmore detail")

    with caplog.at_level(logging.INFO, logger="workers.actor"), pytest.raises(ShardError):
        run_logged(unit_log(7, 12), unreadable, 3, 1)
    assert _messages(caplog, logging.WARNING) == [
        "sweep 7 unit 12: shard 3 failed: ShardError: shard s3://b/x-3.tar cannot be read: "
        "permission denied"
    ]
    assert not _messages(caplog, logging.DEBUG)  # INFO kept: a unit's start is not


def test_an_out_of_memory_retry_logged_deep_in_the_worker_names_the_unit_it_ran_for(caplog):
    running = RunningUnit()
    caplog.handler.addFilter(running)
    try:
        with running.running(7, 12):
            ShrinkingBatch(8, Device("cpu")).shrink("resnet50")
        ShrinkingBatch(8, Device("cpu")).shrink("resnet50")  # between units: as it was
    finally:
        caplog.handler.removeFilter(running)
    during, after = [r for r in caplog.records if r.name == "workers.device"]
    assert during.getMessage() == (
        "sweep 7 unit 12: resnet50: out of device memory at batch size 8, now 6"
    )
    assert (during.sweep_id, during.unit, during.levelname) == (7, 12, "WARNING")
    assert after.getMessage() == "resnet50: out of device memory at batch size 8, now 6"


def test_a_process_nobody_configured_logging_in_keeps_info_records_on_stderr():
    script = textwrap.dedent(
        """
        import logging
        from cluster.logs import SweepLog, log_to_stderr
        log = logging.getLogger("workers.actor")
        log.info("dropped: logging's last resort keeps warnings only")
        log_to_stderr(logging.INFO)
        SweepLog(log, 7).for_unit(12).info("kept")
        log.debug("below the level")
        """
    )
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    lines = ran.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].endswith(" INFO workers.actor: sweep 7 unit 12: kept")


def test_without_a_sweep_a_units_records_name_only_its_shard(caplog):
    with caplog.at_level(logging.DEBUG, logger="workers.actor"):
        run_logged(unit_log(None, None), lambda: UnitReport(5), 5, 0)
    assert _messages(caplog, logging.DEBUG)[0] == "shard 5: 0 models started"
