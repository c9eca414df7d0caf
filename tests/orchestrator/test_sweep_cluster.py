"""A sweep on a two-node Ray cluster on this machine (loopback), losing its second node midway."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.factories import row_counts, saverzoo
from tests.orchestrator.sweeping import (
    MODELS,
    SHARDS,
    chunks,
    files_holding,
    in_background,
    on_postgres,
    sweep_state,
    units,
    wait_for,
)

pytestmark = [pytest.mark.ray, pytest.mark.slow]
HEAD, SECOND = "127.0.0.2", "127.0.0.3"
RAY = str(Path(sys.executable).with_name("ray"))
# Notice a lost node within seconds rather than Ray's default quarter of a minute.
FAST_HEALTH_CHECKS = {
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_failure_threshold": "4",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HEAD, 0))
        return probe.getsockname()[1]


def own_ports() -> list[str]:
    """Free ports for a node's agent and metrics: Ray's fixed defaults clash between nodes (and
    with any other Ray) on one machine."""
    return [
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--dashboard-agent-grpc-port={_free_port()}",
        f"--metrics-export-port={_free_port()}",
        f"--runtime-env-agent-port={_free_port()}",
    ]


def node_processes(temp_dir: str, address: str | None = None) -> list[int]:
    """PIDs of Ray's processes of this test cluster (of one node when ``address`` is given)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if temp_dir in command and (address is None or f"={address}" in command):
            found.append(int(entry.name))
    return found


def kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def two_nodes(use_database):
    """``ray start --head`` on 127.0.0.2 and a second node on 127.0.0.3, one logical GPU each;
    their environment holds the database URL, as a cluster's nodes hold their secrets."""
    temp_dir = tempfile.mkdtemp(prefix="rz-", dir="/tmp")  # Ray's socket paths must stay short
    port = _free_port()
    env = {**os.environ, **FAST_HEALTH_CHECKS, "RAY_AUTH_MODE": "token"}
    common = ["--num-gpus=1", "--num-cpus=1", "--disable-usage-stats"]
    subprocess.run(
        [
            RAY,
            "start",
            "--head",
            f"--node-ip-address={HEAD}",
            f"--port={port}",
            f"--temp-dir={temp_dir}",
            "--include-dashboard=false",
            *common,
            *own_ports(),
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    subprocess.run(
        [
            RAY,
            "start",
            f"--address={HEAD}:{port}",
            f"--node-ip-address={SECOND}",
            *common,
            *own_ports(),
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    yield f"{HEAD}:{port}", temp_dir
    kill(node_processes(temp_dir))  # by PID: never `ray stop`, which stops every Ray
    shutil.rmtree(temp_dir, ignore_errors=True)


@on_postgres
def test_workers_spread_over_both_nodes_and_losing_one_loses_no_chunk(
    two_nodes, sweep_dataset, use_database, monkeypatch
):
    address, temp_dir = two_nodes
    monkeypatch.setenv("SAVERZOO_RAY_NODE_IP", HEAD)
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
        "--ray-address",
        address,
    )

    def nodes_at_work():
        return {u.worker.split(":")[0] for u in units(use_database) if u.worker}

    try:
        wait_for(lambda: nodes_at_work() == {HEAD, SECOND}, what="both nodes at work")
    except AssertionError:
        driver.kill()
        raise AssertionError(driver.communicate()[0]) from None
    second = node_processes(temp_dir, SECOND)
    assert second
    kill(second)

    output, _ = driver.communicate(timeout=300)
    assert driver.returncode == 0, output
    assert sweep_state(use_database) == "done"
    assert set(chunks(use_database)) == {(m, s) for m in MODELS for s in range(SHARDS)}
    assert row_counts(use_database)["prediction_chunks"] == len(MODELS) * SHARDS


@pytest.fixture
def head_with_dashboard(use_database):
    """A one-node cluster whose dashboard (the Ray Jobs API) listens on 127.0.0.2 only."""
    temp_dir = tempfile.mkdtemp(prefix="rz-", dir="/tmp")
    port, dashboard = _free_port(), _free_port()
    # Job drivers run the cluster's python, which has saverzoo installed (the venv, here).
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    env = {**os.environ, "RAY_AUTH_MODE": "token", "PATH": path, "SAVERZOO_RAY_NODE_IP": HEAD}
    subprocess.run(
        [
            RAY,
            "start",
            "--head",
            f"--node-ip-address={HEAD}",
            f"--port={port}",
            f"--temp-dir={temp_dir}",
            "--include-dashboard=true",
            f"--dashboard-host={HEAD}",
            f"--dashboard-port={dashboard}",
            "--num-cpus=2",
            "--disable-usage-stats",
            *own_ports(),
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    yield f"http://{HEAD}:{dashboard}", temp_dir
    kill(node_processes(temp_dir))
    shutil.rmtree(temp_dir, ignore_errors=True)


@on_postgres
def test_a_sweep_submitted_as_a_ray_job_runs_on_the_cluster_and_ray_holds_no_secret(
    secret_settings, head_with_dashboard, sweep_dataset, use_database
):  # secret_settings first: the head starts with them in its environment
    """The head was started with the database's password and the store's keys in its own
    environment, as a cluster's nodes are; neither the job nor its workers are handed them."""
    address, temp_dir = head_with_dashboard
    result = saverzoo(
        "sweep", "submit", "--models", "seeded-*", "--dataset", "tiny", "--ray-address", address
    )

    assert result.exit_code == 0, result.output
    assert "runs as Ray Job saverzoo-sweep-1-" in result.stdout  # returned at once
    wait_for(lambda: sweep_state(use_database) in ("done", "failed"), timeout=240, what="the job")
    assert sweep_state(use_database) == "done"
    assert set(chunks(use_database)) == {(m, s) for m in MODELS for s in range(SHARDS)}
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    listed = subprocess.run(
        [RAY, "job", "list", "--address", address],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "saverzoo-sweep-1-" in listed.stdout
    assert "working_dir': 'gcs://_ray_pkg_" in listed.stdout  # this checkout is the job's code
    assert not any(secret in listed.stdout + listed.stderr for secret in secret_settings)
    assert files_holding(temp_dir, secret_settings) == []
