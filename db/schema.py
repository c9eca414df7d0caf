"""Schema versions: upgrade to the newest migration, or say exactly what to run."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from cluster.errors import SchemaOutOfDate
from db.session import engine_for

if TYPE_CHECKING:  # Alembic loads when a schema is checked, not when `--help` is asked for
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"  # where Alembic keeps a database's revision


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Alembic's config is an ini parser: a literal % must be doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


# A migration file names its revision and the one it revises (``down_revision``).
_REVISION = re.compile(r"""^revision(?:: [^=]+)? = ['"]([^'"]+)['"]""", re.M)
_DOWN_REVISION = re.compile(r"""^down_revision(?:: [^=]+)? = (?:['"]([^'"]+)['"]|None)""", re.M)


@functools.cache
def _migration_head() -> str:
    """The one migration no other revises, read from the files (Alembic is not imported: every
    command checks the schema, and a query should not pay for Alembic's machinery)."""
    revisions, revised = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        text = path.read_text()
        if (revision := _REVISION.search(text)) is not None:
            revisions.add(revision.group(1))
            down = _DOWN_REVISION.search(text)
            if down is not None and down.group(1):
                revised.add(down.group(1))
    heads = revisions - revised
    if len(heads) != 1:
        raise RuntimeError(
            f"migrations under {MIGRATIONS} have heads {sorted(heads)}: this "
            "saverzoo is installed broken"
        )
    return heads.pop()


MIGRATION_LOCK = 0x5A7E_200  # PostgreSQL advisory lock key of saverzoo's migrations


def head_revision() -> str:
    """The revision this saverzoo needs (the same for every database)."""
    return _migration_head()


def current_revision(url: str) -> str | None:
    """The database's revision, or None for a database Alembic never migrated."""
    with engine_for(url).connect() as connection:
        if not inspect(connection).has_table(VERSION_TABLE):
            return None
        return connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def upgrade(url: str) -> tuple[str | None, str]:
    """Migrate to head; returns (revision before, revision after)."""
    from alembic import command

    before = current_revision(url)
    with engine_for(url).begin() as connection:
        if connection.dialect.name == "postgresql":
            # Two commands on a new database migrate one after the other: the second finds
            # the schema at head (DDL is transactional here) instead of creating it twice.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config = alembic_config(url)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return before, head_revision()


def ensure_schema(url: str) -> None:
    """Make the schema usable for a command.

    A new database, or the embedded SQLite default, is migrated in place. A server database at an
    older revision is left alone (migrations there are an operator's decision) and the error says
    which command to run.
    """
    current, head = current_revision(url), head_revision()
    if current == head:
        return
    if current is None or make_url(url).get_backend_name() == "sqlite":
        upgrade(url)
        return
    raise SchemaOutOfDate(
        f"the database schema is at revision {current} but this saverzoo needs {head}: "
        "run `saverzoo db upgrade`"
    )
