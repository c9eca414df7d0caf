"""Schema versions: upgrade to the newest migration, or say exactly what to run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from db.session import engine_for

if TYPE_CHECKING:  # Alembic loads when a schema is checked, not when `--help` is asked for
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")


class SchemaOutOfDate(RuntimeError):
    """The database exists but is at an older schema than this saverzoo needs."""


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Alembic's config is an ini parser: a literal % must be doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision(url: str) -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations under {MIGRATIONS}: this saverzoo is installed broken")
    return head


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine_for(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(url: str) -> tuple[str | None, str]:
    """Migrate to head; returns (revision before, revision after)."""
    from alembic import command

    before = current_revision(url)
    with engine_for(url).begin() as connection:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return before, head_revision(url)


def ensure_schema(url: str) -> None:
    """Make the schema usable for a command.

    A new database, or the embedded SQLite default, is migrated in place. A server database at an
    older revision is left alone (migrations there are an operator's decision) and the error says
    which command to run.
    """
    current, head = current_revision(url), head_revision(url)
    if current == head:
        return
    if current is None or make_url(url).get_backend_name() == "sqlite":
        upgrade(url)
        return
    raise SchemaOutOfDate(
        f"the database schema is at revision {current} but this saverzoo needs {head}: "
        "run `saverzoo db upgrade`"
    )
