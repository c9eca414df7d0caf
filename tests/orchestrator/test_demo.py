"""`make demo` runs `saverzoo demo`: real digits, a trained zoo, a Ray sweep, best savers.

A reduced demo (three models, one epoch) is interrupted during its sweep and run again: the second
run finishes without duplicate rows, and its best savers agree with a brute force over every
operating point computed from the stored predictions.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from sqlalchemy import select

from db.models import SweepUnit
from db.session import session_factory
from tests.factories import brute_force_best_saving, row_counts, stored_zoo
from tests.orchestrator.sweeping import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.s3]
MODELS, SHARDS = 3, 6  # 719 validation digits in shards of 120


def demo(workdir, **popen):
    command = [
        sys.executable,
        "-m",
        "orchestrator",
        "demo",
        "--workdir",
        str(workdir),
        "--models",
        str(MODELS),
        "--epochs",
        "1",
    ]
    env = {**os.environ, "COLUMNS": "150"}
    return subprocess.Popen(
        command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen
    )


def sweep_running(url: str) -> bool:
    try:
        with session_factory(url).begin() as session:
            return session.scalar(select(SweepUnit.id).where(SweepUnit.state == "running"))
    except Exception:  # noqa: BLE001 - the database may not exist yet
        return False


def test_the_demo_survives_an_interrupted_sweep_and_finds_the_savers(tmp_path):
    workdir = tmp_path / "demo"
    url = f"sqlite:///{workdir / 'saverzoo.db'}"
    first = demo(workdir, start_new_session=True)
    wait_for(lambda: sweep_running(url), timeout=400, what="the demo's sweep")
    os.killpg(first.pid, signal.SIGKILL)  # interrupted mid-sweep, its Ray with it
    first.wait()

    second = demo(workdir)
    output, _ = second.communicate(timeout=600)

    assert second.returncode == 0, output
    counts = row_counts(url)
    assert counts["models"] == MODELS
    assert counts["prediction_chunks"] == MODELS * SHARDS  # nothing twice, nothing missing
    assert (workdir / "zoo.png").read_bytes().startswith(b"\x89PNG")
    zoo, accuracy = stored_zoo(url, "digits-val")
    assert len({round(a, 3) for a in accuracy.values()}) == MODELS  # they differ
    assert max(accuracy.values()) > 0.5  # chance is 0.1
    best = json.loads((workdir / "best-savers.json").read_text())
    assert any(row["saver"] for row in best)  # a non-empty best-saver table
    for row in best:
        expected = brute_force_best_saving(zoo, zoo.names.index(row["base"]))
        if row["saver"] is None:
            assert expected <= 1e-12, row
        else:
            assert row["saving"] == pytest.approx(expected, abs=1e-9), row
    assert "best savers" in output and "Query it yourself" in output


def test_demo_training_gives_the_same_weights_whatever_the_thread_count(tmp_path):
    import torch
    from safetensors.torch import load_file

    from orchestrator.demo.data import digits, train

    samples = digits()[0][:96]
    weights = []
    for threads in (1, 2):
        torch.set_num_threads(threads)  # the caller's count: training must not depend on it
        path = tmp_path / f"threads-{threads}.safetensors"
        train("resnet10t", samples, path, epochs=1)
        weights.append(load_file(str(path)))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
