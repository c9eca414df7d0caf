"""``saverzoo db``: where the database is and its schema."""

from __future__ import annotations

import typer

from cluster.redact import error_line
from orchestrator.cli.console import (
    fail,
    out,
    settings_or_fail,
)

db_app = typer.Typer(help="The database: where it is and its schema.")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database schema to this version of saverzoo."""
    from db.schema import upgrade

    settings = settings_or_fail()
    try:
        before, after = upgrade(settings.database_url)
    except Exception as error:  # noqa: BLE001 - connection refused, permissions: say where and why
        raise fail(f"cannot upgrade {settings.database_display}: {error_line(error)}") from None
    state = "already up to date" if before == after else f"upgraded from {before or 'empty'}"
    out.print(f"database {settings.database_display}: {state} (revision {after})")


@db_app.command("info")
def db_info() -> None:
    """Where the database is and its schema revision."""
    from db.schema import current_revision, head_revision

    settings = settings_or_fail()
    try:
        current = current_revision(settings.database_url)
    except Exception as error:  # noqa: BLE001 - any driver's error, said in one line
        raise fail(f"cannot reach {settings.database_display}: {error_line(error)}") from None
    head = head_revision()
    out.print(f"database: {settings.database_display}")
    out.print(f"schema:   {current or 'empty'} (this saverzoo needs {head})")
