"""What every command shares: consoles, one-line failures, transactions, progress bars, JSON."""

from __future__ import annotations

import json
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from cluster.errors import InputError, ServiceError
from cluster.settings import Settings, config_file, get_settings
from db.schema import SchemaOutOfDate, ensure_schema
from db.session import session_factory

out = Console(soft_wrap=True)  # long lines (URLs, paths) stay whole
err = Console(stderr=True, soft_wrap=True)
USER_ERRORS = (InputError, ServiceError, SchemaOutOfDate)


def fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


def settings_or_fail() -> Settings:
    """The settings, or one line saying which setting is wrong and where it came from."""
    try:
        return get_settings()
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors()
        )
        raise fail(f"invalid settings ({problems})") from None
    except tomllib.TOMLDecodeError as error:
        raise fail(f"the config file {config_file()} is not valid TOML: {error}") from None


@contextmanager
def user_errors() -> Iterator[None]:
    """Errors the user can act on, outside a database transaction, as one line."""
    try:
        yield
    except USER_ERRORS as error:
        raise fail(str(error)) from None


@contextmanager
def transaction(settings: Settings | None = None) -> Iterator[Session]:
    """A session on an up-to-date schema; one-line errors for what the user can fix."""
    settings = settings or settings_or_fail()
    try:
        ensure_schema(settings.database_url)
        with session_factory(settings.database_url).begin() as session:
            yield session
    except USER_ERRORS as error:
        raise fail(str(error)) from None
    except (OperationalError, OSError) as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise fail(f"cannot use the database {settings.database_display}: {reason}") from None


@contextmanager
def progress_bar(description: str) -> Iterator:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")
