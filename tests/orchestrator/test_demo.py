"""`make demo` runs `saverzoo demo`: it must work end to end on a fresh work directory."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.factories import row_counts


@pytest.mark.slow
def test_demo_runs_end_to_end_in_its_work_directory(tmp_path):
    workdir = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "demo", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "best savers" in done.stdout and "paper criterion" in done.stdout
    assert (workdir / "curve.png").read_bytes().startswith(b"\x89PNG")
    counts = row_counts(f"sqlite:///{workdir / 'saverzoo.db'}")
    assert counts["models"] == 12 and counts["pair_results"] == 66 * 6
