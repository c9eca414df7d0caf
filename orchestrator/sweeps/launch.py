"""Start a sweep's driver somewhere that outlives the caller: a Ray Job, or a local process.

Used by ``saverzoo sweep submit`` (without ``--wait``) and by ``POST /v1/sweeps``.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeGuard
from urllib.parse import urlsplit

from sqlalchemy.orm import Session, sessionmaker

from cluster.errors import InputError, ServiceError
from cluster.ray_cluster import check_reachable, job_client, worker_environment
from cluster.settings import Settings, data_dir
from db.models import Sweep, utc_now
from db.session import session_factory

JOB_SUBMIT_ATTEMPTS = 15
# What a source checkout shipped as a Ray Job's code leaves out: environments, caches, databases,
# and what a job never runs (tests, docs).
CHECKOUT_EXCLUDES = (
    "tests",
    "docs",
    ".git",
    ".venv",
    ".venv-base",
    "*.egg-info",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "*.db",
    "demo-out",
)
QUEUED, FAILED = "queued", "failed"  # the states of orchestrator.sweeps.store, without its imports


def is_jobs_url(address: str | None) -> TypeGuard[str]:
    """A Ray Jobs (dashboard) URL, where a driver is submitted as a job, not joined."""
    return (address or "").startswith(("http://", "https://"))


def check_address(address: str | None) -> None:
    """A Ray head (or its Jobs API) that does not answer fails here, before a sweep exists that
    could not run."""
    if not is_jobs_url(address):
        check_reachable(address)
        return
    url = urlsplit(address)
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError:
        port = None
    if not url.hostname or port is None:
        raise InputError(f"--ray-address {address!r}: use http://HEAD:8265 for Ray Jobs")
    check_reachable(f"{url.hostname}:{port}")


def start_in_background(settings: Settings, sweep_id: int, address: str | None) -> str:
    """Start the sweep's driver; one line saying where it runs and how to follow it.

    A sweep that cannot start (Ray unreachable, the job refused) is marked failed with why.
    """
    sessions = session_factory(settings.database_url)
    if is_jobs_url(address):
        with failing_sweep_on_error(sessions, sweep_id):
            job = _submit_job(settings, sweep_id, address)
        with sessions.begin() as session:  # until the job's driver takes it over
            sweep = session.get(Sweep, sweep_id)
            assert sweep is not None  # the caller created it
            sweep.driver = f"ray job {job}"
        return (
            f"sweep {sweep_id} runs as Ray Job {job} on {address}; follow it with "
            f"`saverzoo sweep status {sweep_id}` or `ray job logs {job}`"
        )
    log, output = _detach(sweep_id, address)
    return (
        f"sweep {sweep_id} runs in the background (log: {log}; its output, a crash's "
        f"traceback among it: {output.name}); follow it with `saverzoo sweep status {sweep_id}`"
    )


@contextmanager
def failing_sweep_on_error(sessions: sessionmaker[Session], sweep_id: int) -> Iterator[None]:
    """A sweep that cannot start is marked failed with why, never left queued."""
    try:
        yield
    except ServiceError as error:  # RayUnavailable among them
        with sessions.begin() as session:
            sweep = session.get(Sweep, sweep_id)
            if sweep is not None and sweep.state == QUEUED:
                sweep.state, sweep.error, sweep.finished_at = FAILED, str(error), utc_now()
        raise


def _detach(sweep_id: int, address: str | None) -> tuple[Path, Path]:
    """Run the driver in a background process that outlives this command; its log file, and
    the file of its own output.

    The driver writes its records to the log file itself (``--log-file``), which rotates. Its
    standard output and error go to a file of their own: one a redirection holds open could not
    be rotated (the process would go on writing to the renamed file, and to a deleted one once
    it is the oldest), and they hold what no record does: a crash's traceback (the command's
    final line, too).
    """
    folder = data_dir() / "sweeps"
    log, output = folder / f"sweep-{sweep_id}.log", folder / f"sweep-{sweep_id}.out"
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "orchestrator", "sweep", "resume", str(sweep_id), "--wait"]
    command += ["--log-file", str(log)]
    if address:
        command += ["--ray-address", address]
    with open(output, "ab") as sink:
        subprocess.Popen(
            command, stdout=sink, stderr=sink, stdin=subprocess.DEVNULL, start_new_session=True
        )
    return log, output


def _submit_job(settings: Settings, sweep_id: int, address: str) -> str:
    """The sweep's driver as a Ray Job on the cluster: it outlives this client."""
    return submit_job(
        settings,
        address,
        f"python -m orchestrator sweep resume {sweep_id} --wait --ray-address auto",
        f"saverzoo-sweep-{sweep_id}-{os.getpid()}",
    )


def submit_watch_job(
    settings: Settings, dataset: str, patterns: list[str], address: str, timm_requirement: str
) -> str:
    """One watcher pass as a Ray Job whose Python has ``timm_requirement`` (pip runtime env):
    it reads that timm's registry, and the sweep it runs there inherits the same environment."""
    scope = shlex.quote(",".join(patterns))
    return submit_job(
        settings,
        address,
        f"python -m orchestrator watch --once --dataset {shlex.quote(dataset)} --models {scope} "
        "--wait --ray-address auto",
        f"saverzoo-watch-{int(time.time())}-{os.getpid()}",
        pip=[timm_requirement],
    )


def submit_job(
    settings: Settings,
    address: str,
    entrypoint: str,
    submission_id: str,
    pip: list[str] | None = None,
) -> str:
    """A saverzoo command as a Ray Job (from a source checkout, the checkout is its code).

    A head that has just started answers "no available agent" for a few seconds: retried.
    """
    logging.getLogger("ray").setLevel(logging.ERROR)  # packaging chatter, one line per file
    runtime_env: dict = {"env_vars": worker_environment(settings)}
    checkout = Path(__file__).resolve().parents[2]  # orchestrator/sweeps/launch.py
    if (checkout / "pyproject.toml").exists():  # a source checkout: ship it as the job's code
        runtime_env["working_dir"] = str(checkout)
        runtime_env["excludes"] = [*CHECKOUT_EXCLUDES]
    # else saverzoo is installed (the infra image): the cluster's nodes have the same install
    if pip:
        runtime_env["pip"] = pip
    for attempt in range(JOB_SUBMIT_ATTEMPTS):
        try:
            client = job_client(address)
            return client.submit_job(
                entrypoint=entrypoint, runtime_env=runtime_env, submission_id=submission_id
            )
        except (ConnectionError, RuntimeError, ValueError) as error:
            if "No available agent" in str(error) and attempt + 1 < JOB_SUBMIT_ATTEMPTS:
                time.sleep(2.0)
                continue
            raise ServiceError(f"cannot submit a Ray Job to {address}: {error}") from None
    raise AssertionError("unreachable")
