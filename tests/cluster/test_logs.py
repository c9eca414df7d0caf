"""A sweep's records name the sweep and unit; a log file rotates."""

import logging

from cluster.logs import LOG_FILE_BACKUPS, SweepLog, log_to_file


def test_each_record_names_its_sweep_and_unit_in_text_and_attributes(caplog):
    log = SweepLog(logging.getLogger("saverzoo.test"), sweep_id=7)
    with caplog.at_level(logging.INFO, logger="saverzoo.test"):
        log.info("started %d workers", 4)
        log.for_unit(12).warning("retried: %s", "worker lost")
    first, second = caplog.records
    assert first.getMessage() == "sweep 7: started 4 workers"
    assert (first.sweep_id, first.unit) == (7, None)
    assert second.getMessage() == "sweep 7 unit 12: retried: worker lost"
    assert (second.sweep_id, second.unit, second.levelname) == (7, 12, "WARNING")


def test_a_log_file_rotates_and_keeps_a_bounded_number_of_old_files(tmp_path):
    handler = log_to_file(tmp_path / "driver.log")
    handler.maxBytes = 2_000  # small, so that a thousand records rotate it several times
    try:
        log = logging.getLogger("saverzoo.test.rotation")
        for i in range(1_000):
            log.info("record %04d %s", i, "x" * 40)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["driver.log"] + [f"driver.log.{n}" for n in range(1, LOG_FILE_BACKUPS + 1)]
    assert all((tmp_path / f).stat().st_size <= 2_100 for f in files)
    assert "record 0999" in (tmp_path / "driver.log").read_text()
