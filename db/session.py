"""Engines and sessions from a URL. Callers own their sessions (``with Session.begin()``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_S = 60


def _prepare_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:  # DB-API connection
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.close()


@lru_cache(maxsize=8)
def engine_for(url: str, connections: int | None = None) -> Engine:
    """One engine per URL per process; an SQLite file's folder is created on first use.

    ``connections``: a pool of exactly that many connections, for which a session waits
    (many threads of one process); default SQLAlchemy's 5 and up to 10 more."""
    parsed = make_url(url)
    pool = {}
    if connections is not None:
        pool = {"pool_size": connections, "max_overflow": 0, "pool_timeout": 600}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, **pool)
        _prepare_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, **pool)


def session_factory(url: str, connections: int | None = None) -> sessionmaker[Session]:
    return sessionmaker(engine_for(url, connections), expire_on_commit=False)
