"""Real services for the tests: SQLite files and a PostgreSQL server (found or started here)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Keep the tests away from the user's own config file, database and shard cache.
os.environ["SAVERZOO_CONFIG"] = os.devnull
os.environ["SAVERZOO_SHARD_CACHE_DIR"] = tempfile.mkdtemp(prefix="saverzoo-test-shard-cache-")

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
POSTGRES_SCRIPT = Path(__file__).resolve().parents[1] / "infra" / "local" / "postgres.sh"


def _answers(url: str) -> bool:
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001 - any failure means no server answers there
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _throwaway_cluster(tmp: Path) -> tuple[str, subprocess.Popen]:
    """A PostgreSQL on a free loopback port, by the development script infra/local/postgres.sh."""
    port = _free_port()
    server = subprocess.Popen(
        ["bash", str(POSTGRES_SCRIPT), str(tmp), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    for _ in range(150):
        if _answers(url):
            return url, server
        if server.poll() == 3:  # the script's code for "initdb is not installed"
            pytest.skip("no PostgreSQL server answers and initdb is not installed")
        if server.poll() is not None:
            raise RuntimeError(f"the throwaway PostgreSQL did not start: {server.stderr.read()}")
        time.sleep(0.2)
    server.terminate()
    raise RuntimeError("the throwaway PostgreSQL did not answer within 30 s")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A URL of a PostgreSQL database the tests may create databases from."""
    configured = os.environ.get("SAVERZOO_TEST_POSTGRES_URL")
    if configured:
        yield configured
        return
    if _answers(DEFAULT_POSTGRES):
        yield DEFAULT_POSTGRES
        return
    tmp = Path(tempfile.mkdtemp(prefix="saverzoo-pg-"))
    url, server = _throwaway_cluster(tmp)
    try:
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the PostgreSQL server, dropped afterwards."""
    name = f"saverzoo_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        from db.session import engine_for

        engine_for(url).dispose()
        engine_for.cache_clear()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path: Path) -> str:
    """The same test on an SQLite file and on a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'saverzoo.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def use_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point saverzoo's settings at the test database."""
    from cluster.settings import get_settings

    monkeypatch.setenv("SAVERZOO_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()


# ----- object storage -----------------------------------------------------------------------
@dataclass(frozen=True)
class S3Server:
    endpoint: str
    credentials: tuple[str, str]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real SeaweedFS on free loopback ports for the whole session."""
    from cluster.localstore import LocalObjectStore, free_port_block

    store = LocalObjectStore(tmp_path_factory.mktemp("seaweedfs"), free_port_block())
    state = store.up()
    try:
        yield S3Server(state.endpoint, store.credentials())
    finally:
        store.down()


@pytest.fixture
def free_port_block() -> int:
    """An S3 port P of a free block for a SeaweedFS of a test's own."""
    from cluster.localstore import free_port_block as find

    return find()


@pytest.fixture
def use_s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """Point saverzoo at the test object store with its credentials (the AWS chain's env)."""
    from cluster.settings import get_settings

    monkeypatch.setenv("SAVERZOO_S3_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.credentials[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.credentials[1])
    monkeypatch.setenv("SAVERZOO_S3_MAX_ATTEMPTS", "3")
    get_settings.cache_clear()
    yield s3_server
    get_settings.cache_clear()
