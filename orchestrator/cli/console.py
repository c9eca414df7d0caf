"""What every command shares: consoles, one-line failures, transactions, progress bars, JSON,
tables fitted to the output's width."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

from cluster.errors import InputError, SchemaOutOfDate, ServiceError

if TYPE_CHECKING:  # settings, schema, sessions and rich load when a command first needs them
    from rich.console import Console
    from sqlalchemy.orm import Session

    from cluster.settings import Settings
    from orchestrator.cli.tables import Table


class LazyConsole:
    """A rich ``Console`` made on first use: a command that prints JSON never loads rich's."""

    def __init__(self, **options: object) -> None:
        self._options = options
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)  # type: ignore[arg-type]
        return self._console

    def __getattr__(self, name: str):
        return getattr(self.console, name)


# Long lines (URLs, paths) stay whole. What is printed is text: a name or a message holding
# "[red]" or "[/]" prints as written (markup only where a call asks for it, its values escaped).
out = LazyConsole(soft_wrap=True, markup=False, highlight=False)
err = LazyConsole(stderr=True, soft_wrap=True, markup=False, highlight=False)
USER_ERRORS = (InputError, ServiceError, SchemaOutOfDate)


def say_error(message: str) -> None:
    """``error: message`` on stderr. The message is text, not markup: `pip install
    'saverzoo[worker]'` or a range "[0, 1]" stay as written."""
    from rich.markup import escape

    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)


def fail(message: str) -> typer.Exit:
    say_error(message)
    return typer.Exit(code=1)


def settings_or_fail() -> Settings:
    """The settings, or one line saying which setting is wrong and where it came from."""
    import tomllib

    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from cluster.settings import config_file, get_settings

    try:
        return get_settings()
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors()
        )
        raise fail(f"invalid settings ({problems})") from None
    except tomllib.TOMLDecodeError as error:
        raise fail(f"the config file {config_file()} is not valid TOML: {error}") from None
    except SettingsError as error:  # a value of the environment that is not even parsed
        raise fail(
            f"invalid settings ({error}): a list is JSON, e.g. SAVERZOO_SEARCH_BUDGETS='[0, 0.5]'"
        ) from None


@contextmanager
def user_errors() -> Iterator[None]:
    """Errors the user can act on, outside a database transaction, as one line."""
    try:
        yield
    except USER_ERRORS as error:
        raise fail(str(error)) from None


@contextmanager
def transaction(settings: Settings | None = None) -> Iterator[Session]:
    """A session on an up-to-date schema; one-line errors for what the user can fix.

    "cannot use the database" is said only of errors from the database: an OSError while the
    schema is checked (an SQLite folder that cannot be made) or SQLAlchemy's OperationalError
    (connection refused, database locked). An OSError of the command's own files is not one:
    it is named as such.
    """
    from sqlalchemy.exc import IntegrityError, OperationalError

    from db.schema import ensure_schema
    from db.session import session_factory

    settings = settings or settings_or_fail()
    try:
        ensure_schema(settings.database_url)
        sessions = session_factory(settings.database_url)
    except USER_ERRORS as error:
        raise fail(str(error)) from None
    except (OperationalError, OSError) as error:
        raise _database_failure(settings, error) from None
    try:
        with sessions.begin() as session:
            yield session
    except USER_ERRORS as error:
        raise fail(str(error)) from None
    except IntegrityError as error:
        if not _unique_violation(error):
            raise  # a bug, not a race: the group's handler reports it as one
        from cluster.redact import error_line

        raise fail(
            f"another command wrote the same rows meanwhile ({error_line(error)}); nothing of "
            "this one was kept: run it again"
        ) from None
    except OperationalError as error:
        raise _database_failure(settings, error) from None
    except OSError as error:  # the command's own file or folder: say which and why
        raise fail(os_error_line(error)) from None


def _unique_violation(error: Exception) -> bool:
    """A unique row another command wrote first (PostgreSQL's 23505, SQLite's UNIQUE)."""
    original = getattr(error, "orig", None)
    return getattr(original, "sqlstate", None) == "23505" or "UNIQUE constraint" in str(original)


def os_error_line(error: OSError) -> str:
    """``cannot use /path: Permission denied``, or the error itself when it names no file."""
    if error.filename is None or not error.strerror:
        return str(error)
    return f"cannot use {error.filename}: {error.strerror}"


def _database_failure(settings: Settings, error: Exception) -> typer.Exit:
    from cluster.redact import error_line

    return fail(f"cannot use the database {settings.database_display}: {error_line(error)}")


@contextmanager
def progress_bar(description: str) -> Iterator:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err.console,
        transient=True,
        disable=not err.console.is_terminal,  # a log or a pipe gets no bar and no blank line
    ) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def print_json(value: object) -> None:
    """``value`` as strict JSON; a NaN or an infinity (which JSON cannot carry) fails in one
    line naming where it is, rather than printing ``NaN`` that no JSON parser reads."""
    try:
        text = json.dumps(value, indent=2, allow_nan=False)
    except ValueError:
        where = non_finite_at(value)
        if where is None:
            raise
        raise fail(
            f"the answer holds a non-finite number at {where[0]} ({where[1]!r}), which JSON "
            "cannot carry; run the command without --json to see the rest"
        ) from None
    sys.stdout.write(text + "\n")


def non_finite_at(value: object, path: str = "$") -> tuple[str, float] | None:
    """Where the first NaN or infinity in a JSON-like value is (``$[2].saving``), and it."""
    if isinstance(value, float) and not math.isfinite(value):
        return path, value
    if isinstance(value, dict):
        children = ((f"{path}.{key}", item) for key, item in value.items())
    elif isinstance(value, list | tuple):
        children = ((f"{path}[{i}]", item) for i, item in enumerate(value))
    else:
        return None
    for child_path, item in children:
        found = non_finite_at(item, child_path)
        if found is not None:
            return found
    return None


# ----- tables and prose, fitted to the output -------------------------------------------------
def output_width() -> int | None:
    """The width tables and notes are fitted to: ``COLUMNS`` when set, else the terminal's; None
    when standard output is not a terminal (a pipe, a file, CI): tab-separated, every column."""
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isascii() and columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def print_table(table: Table, *, wide: bool = False) -> None:
    """The table as plain lines; a row's colour only on a terminal (click strips it elsewhere)
    and unless NO_COLOR is set (no-color.org). Tab-separated output keeps its title and notes
    on standard error: standard output is the rows alone, for the next program."""
    from orchestrator.cli.tables import render

    colour = not os.environ.get("NO_COLOR")
    for line in render(table, output_width(), wide=wide):
        styled = colour and line.style is not None
        typer.echo(typer.style(line.text, fg=line.style) if styled else line.text, err=line.aside)


def print_prose(text: str) -> None:
    """A sentence or two, wrapped at spaces to the output's width (never inside a word)."""
    from orchestrator.cli.tables import prose

    for line in prose(text, output_width()):
        typer.echo(line)
