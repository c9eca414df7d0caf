"""The GPU measurement is one command, proven on the CPU at a tiny size before a GPU is lent."""

from __future__ import annotations

import json

import pytest

from bench.gpu import LIMITS, main


@pytest.mark.slow
def test_every_part_runs_on_the_cpu_and_reports_in_one_summary(tmp_path):
    code = main(["--out", str(tmp_path), "--device", "cpu", "--tiny"])

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [part["part"] for part in summary] == list(LIMITS)
    statuses = {part["part"]: part["status"] for part in summary}
    assert statuses == {**dict.fromkeys(LIMITS, "ok"), "oom": "skipped"}  # no OOM on a CPU
    assert code == 0
    results = {part["part"]: part["result"] for part in summary}
    assert all(check["pass"] for check in results["confirm"]["checks"].values())
    assert results["compile"]["unique_graphs"] <= 2 * len(results["compile"]["models"])
    assert [row["model"] for row in results["throughput"]["models"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.txt", "summary.json"]


def test_an_unknown_part_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--device", "cpu", "--parts", "confirm,nonsense"])
    assert "unknown part 'nonsense'" in capsys.readouterr().err
