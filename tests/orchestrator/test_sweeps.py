"""Sweeps on real Ray (local, CPU): the chunks in-process evaluation stores, whatever dies."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import func, select

from db.models import Sweep
from db.session import session_factory
from tests.factories import image_folder, row_counts, saverzoo, saverzoo_json
from tests.orchestrator.sweeping import (
    BUDGETS,
    MODELS,
    SHARDS,
    alive,
    chunks,
    files_holding,
    in_background,
    listening_addresses,
    on_loopback,
    on_postgres,
    sweep_state,
    units,
    wait_for,
)

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_a_sweep_stores_what_in_process_evaluation_stores(sweep_dataset, use_database):
    swept = saverzoo(
        "sweep",
        "submit",
        "--models",
        "seeded-*",
        "--dataset",
        "tiny",
        "--wait",
        "--batch-size",
        "4",
    )
    assert swept.exit_code == 0, swept.output
    assert "sweep 1: done" in swept.stdout
    by_sweep = chunks(use_database)
    best_by_sweep = saverzoo_json("savers", "best", "--dataset", "tiny")
    counts = row_counts(use_database)
    assert set(by_sweep) == {(m, s) for m in MODELS for s in range(SHARDS)}

    local = saverzoo("evaluate", "--models", "seeded-*", "--dataset", "tiny", "--batch-size", "4")
    assert local.exit_code == 0, local.output

    in_process = chunks(use_database)
    for key, (classes, probs, _) in by_sweep.items():
        assert (in_process[key][0][:, 0] == classes[:, 0]).all(), key
        np.testing.assert_allclose(in_process[key][1], probs, rtol=1e-4, atol=1e-7)
    best = saverzoo_json("savers", "best", "--dataset", "tiny")
    assert [(r["base"], r["saver"]) for r in best] == [
        (r["base"], r["saver"]) for r in best_by_sweep
    ]
    assert row_counts(use_database) == counts  # replaced, never duplicated
    status = saverzoo_json("sweep", "status", "1")
    assert status["state"] == "done" and status["units"]["failed"] == 0
    assert all(m["shards_done"] == SHARDS for m in status["models"].values())


@on_postgres
def test_a_killed_worker_loses_only_its_unit_which_is_redone(sweep_dataset, use_database):
    driver = in_background(
        "sweep",
        "submit",
        "--models",
        "seeded-*",
        "--dataset",
        "tiny",
        "--wait",
        "--batch-size",
        "2",
        "--bundle-gmacs",
        "0",
    )
    running = wait_for(
        lambda: [u for u in units(use_database) if u.state == "running" and u.worker],
        what="a running unit",
    )
    victim = running[0]
    os.kill(int(victim.worker.rsplit(":", 1)[1]), signal.SIGKILL)

    output, _ = driver.communicate(timeout=300)
    assert driver.returncode == 0, output
    assert sweep_state(use_database) == "done"
    stored = chunks(use_database)
    assert set(stored) == {(m, s) for m in MODELS for s in range(SHARDS)}  # no gap
    assert row_counts(use_database)["prediction_chunks"] == len(MODELS) * SHARDS  # no duplicate
    lost = [u for u in units(use_database) if u.error and "worker lost" in u.error]
    assert lost and all(u.state == "done" and u.attempts >= 2 for u in lost)


@on_postgres
def test_a_model_that_always_fails_ends_failed_and_the_others_complete(sweep_dataset, use_database):
    (sweep_dataset / "test_vit.safetensors").unlink()  # registered, but its weights are gone

    result = saverzoo(
        "sweep",
        "submit",
        "--models",
        "seeded-*",
        "--dataset",
        "tiny",
        "--wait",
        "--max-attempts",
        "2",
    )

    assert result.exit_code == 1
    assert "sweep 1: failed" in result.stdout
    assert "seeded-test_vit" in result.stderr and "does not exist" in result.stderr
    failed = [u for u in units(use_database) if u.state == "failed"]
    assert failed and all(u.models == ["seeded-test_vit"] and u.attempts == 2 for u in failed)
    stored = chunks(use_database)
    others = [m for m in MODELS if m != "seeded-test_vit"]
    assert set(stored) == {(m, s) for m in others for s in range(SHARDS)}


@on_postgres
def test_a_resumed_sweep_computes_only_the_missing_chunks(sweep_dataset, use_database):
    driver = in_background(
        "sweep",
        "submit",
        "--models",
        "seeded-*",
        "--dataset",
        "tiny",
        "--wait",
        "--batch-size",
        "2",
        "--bundle-gmacs",
        "0",
    )
    wait_for(lambda: sum(u.state == "done" for u in units(use_database)) >= 3, what="3 units")
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and its embedded Ray die together
    driver.wait()
    workers = {int(u.worker.rsplit(":", 1)[1]) for u in units(use_database) if u.worker}
    wait_for(lambda: not any(alive(pid) for pid in workers), what="the workers to end")
    before = chunks(use_database)
    assert 3 <= len(before) < len(MODELS) * SHARDS

    resumed = saverzoo("sweep", "resume", "1", "--wait")

    assert resumed.exit_code == 0, resumed.output
    after = chunks(use_database)
    assert set(after) == {(m, s) for m in MODELS for s in range(SHARDS)}
    assert all(after[key][2] == written for key, (_, _, written) in before.items())  # kept
    planned = sum(len(u.models) for u in units(use_database))
    assert planned == len(MODELS) * SHARDS - len(before)  # only the missing work was run
    assert sweep_state(use_database) == "done"
    pairs = len(MODELS) * (len(MODELS) - 1) // 2  # every model searched, whoever wrote its chunks
    assert row_counts(use_database)["pair_results"] == pairs * (len(BUDGETS) + 1)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models", "nothing-like-this*", "--dataset", "tiny"], "matches no timm model"),
        (["--models", "seeded-*", "--dataset", "nope"], "nope"),
        (
            ["--models", "seeded-*", "--dataset", "tiny", "--ray-address", "127.0.0.2:1"],
            "no Ray cluster answers at 127.0.0.2:1",
        ),
        (["--models", "seeded-*", "--dataset", "tiny", "--mode", "quick"], "fast or reference"),
        # Each worker is given one GPU, which it sees as cuda:0: an index names no GPU there.
        (
            ["--models", "seeded-*", "--dataset", "tiny", "--device", "cuda:1"],
            "--device cuda:1: each of a sweep's workers has a GPU of its own; use --device cuda",
        ),
    ],
)
def test_bad_input_fails_in_one_line_and_leaves_no_sweep(
    sweep_dataset, use_database, args, message
):
    result = saverzoo("sweep", "submit", *args, "--wait")

    assert result.exit_code == 1
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    with session_factory(use_database).begin() as session:
        assert session.scalar(select(func.count()).select_from(Sweep)) == 0


def test_an_object_store_that_refuses_credentials_leaves_no_sweep(
    use_s3, use_database, tmp_path, monkeypatch
):
    image_folder(tmp_path / "src", classes=2, per_class=2)
    made = saverzoo(
        "datasets",
        "make-shards",
        tmp_path / "src",
        "--out",
        "s3://sweeps/tiny",
        "--name",
        "remote",
        "--shard-size",
        "2",
    )
    assert made.exit_code == 0, made.output
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")

    result = saverzoo(
        "sweep",
        "submit",
        "--models",
        "test_resnet",
        "--random-weights",
        "--dataset",
        "remote",
        "--wait",
    )

    assert result.exit_code == 1
    assert "refused" in result.stderr
    with session_factory(use_database).begin() as session:
        assert session.scalar(select(func.count()).select_from(Sweep)) == 0


@on_postgres
def test_without_wait_the_driver_runs_in_the_background_and_can_be_cancelled(
    sweep_dataset, use_database, tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # where the driver's log goes
    submitted = saverzoo(
        "sweep",
        "submit",
        "--models",
        "seeded-*",
        "--dataset",
        "tiny",
        "--batch-size",
        "2",
        "--bundle-gmacs",
        "0",
    )
    assert submitted.exit_code == 0, submitted.output
    assert "runs in the background" in submitted.stdout
    wait_for(lambda: any(u.state == "done" for u in units(use_database)), what="a unit done")

    cancelled = saverzoo("sweep", "cancel", "1")

    assert cancelled.exit_code == 0, cancelled.output
    with session_factory(use_database).begin() as session:
        driver_pid = int(session.get(Sweep, 1).driver.rsplit(":", 1)[1])
    wait_for(lambda: not alive(driver_pid), what="the driver to stop")
    assert sweep_state(use_database) == "cancelled"
    assert not any(u.state == "running" for u in units(use_database))
    assert len(chunks(use_database)) < len(MODELS) * SHARDS
    log = tmp_path / "data" / "saverzoo" / "sweeps" / "sweep-1.log"
    assert "sweep 1: cancelled" in log.read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU for Ray to find")
def test_a_gpu_sweep_on_a_cluster_without_gpus_fails_at_once(sweep_dataset, use_database):
    result = saverzoo(
        "sweep",
        "submit",
        "--models",
        "seeded-test_resnet",
        "--dataset",
        "tiny",
        "--device",
        "cuda",
        "--wait",
    )

    assert result.exit_code == 1
    assert "the Ray cluster has no GPU" in result.stderr
    assert sweep_state(use_database) == "failed"


@on_postgres
def test_no_secret_reaches_rays_files_logs_or_runtime_environment(
    secret_settings, sweep_dataset, use_database, monkeypatch
):
    """The database's password and the object store's keys reach the embedded Ray's workers
    through the environment they inherit, never through Ray's runtime environment (which Ray's
    agents write into their logs)."""
    ray_folder = tempfile.mkdtemp(prefix="rz-", dir="/tmp")  # short: Ray's socket paths
    monkeypatch.setattr(tempfile, "tempdir", ray_folder)  # the embedded Ray's root below it
    try:
        result = saverzoo(
            "sweep",
            "submit",
            "--models",
            "seeded-*",
            "--dataset",
            "tiny",
            "--wait",
            "--bundle-gmacs",
            "0",
        )

        assert result.exit_code == 0, result.output
        assert sweep_state(use_database) == "done"  # the workers reached the database
        assert any(Path(ray_folder).rglob("runtime_env*.log"))  # where Ray writes them
        assert files_holding(ray_folder, secret_settings) == []
        assert not any(secret in result.output for secret in secret_settings)
    finally:
        shutil.rmtree(ray_folder, ignore_errors=True)


@on_postgres
def test_the_embedded_ray_listens_on_loopback_only_and_a_killed_drivers_leftovers_end(
    sweep_dataset, use_database, monkeypatch
):
    from cluster.ray_orphans import processes_using

    temp = Path(tempfile.mkdtemp(prefix="rz-", dir="/tmp"))
    monkeypatch.setenv("TMPDIR", str(temp))  # the commands' embedded Ray root goes below it
    root = temp / f"saverzoo-ray-{os.getuid()}"
    try:
        driver = in_background(
            "sweep",
            "submit",
            "--models",
            "seeded-*",
            "--dataset",
            "tiny",
            "--wait",
            "--batch-size",
            "2",
            "--bundle-gmacs",
            "0",
        )
        wait_for(
            lambda: any(u.state == "running" and u.worker for u in units(use_database)),
            what="a running unit",
        )
        addresses = listening_addresses(set(processes_using([root])))

        assert len(addresses) >= 8  # GCS, raylet, agents, metrics, workers
        assert [a for a in addresses if not on_loopback(a)] == []

        os.kill(driver.pid, signal.SIGKILL)  # the driver alone, as an OOM killer would
        driver.wait()
        left = wait_for(
            lambda: {p for p in processes_using([root], ray_only=True) if alive(p)},
            timeout=10,
            what="Ray's agents, which outlive a killed driver by a minute",
        )
        resumed = in_background("sweep", "resume", "1", "--wait")
        output, _ = resumed.communicate(timeout=300)

        assert resumed.returncode == 0, output
        assert not any(alive(pid) for pid in left)
        assert sweep_state(use_database) == "done"
    finally:
        shutil.rmtree(temp, ignore_errors=True)
