"""``saverzoo serve``: the HTTP API and the latest reports, with uvicorn."""

from __future__ import annotations

import copy
import ipaddress
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli.console import err, fail, settings_or_fail

if TYPE_CHECKING:
    from cluster.settings import Settings


def is_loopback(host: str) -> bool:
    """Whether a server bound to ``host`` listens on loopback only. IPv4 shorthands the system
    accepts (``127.1``) are read as the system reads them; a host name may resolve to anything."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        return ipaddress.ip_address(socket.inet_aton(host)).is_loopback
    except OSError:  # a host name
        return False


def check_exposure(settings: Settings, host: str) -> None:
    """A server reachable from other machines must have tokens: refuse to start otherwise."""
    if not (settings.api_read_tokens or settings.api_write_tokens) and not is_loopback(host):
        raise fail(
            f"--host {host} is reachable from other machines and no API token is configured; "
            "set SAVERZOO_API_READ_TOKENS / SAVERZOO_API_WRITE_TOKENS, or serve on 127.0.0.1"
        )


def access_summary(settings: Settings) -> str:
    """Who may do what, with token counts only (tokens are never printed)."""
    reads = "anyone" if settings.api_open_read else "read or write tokens"
    return (
        f"reads: {reads}; submitting sweeps: write tokens "
        f"({len(settings.api_read_tokens)} read, {len(settings.api_write_tokens)} write tokens "
        "configured)"
    )


class DropQueryStrings(logging.Filter):
    """Access-log lines without their query strings: a token sent as ``?token=`` (refused, but
    sent) or any other secret in a URL must not be kept in a log file.

    uvicorn logs ``(client, method, path?query, http version, status)`` as the record's
    arguments, the path percent-quoted, so the first ``?`` starts the query.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


def log_config() -> dict:
    """uvicorn's logging, its access log filtered; a dict, so ``--workers N`` processes
    configure themselves the same way."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    # The class itself, not its dotted name: ``orchestrator.cli.serve`` names the command there.
    config.setdefault("filters", {})["no_query"] = {"()": DropQueryStrings}
    config["handlers"]["access"].setdefault("filters", []).append("no_query")
    return config


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    report_dir: Annotated[
        Path | None,
        typer.Option(help="Where served reports are kept (default: SAVERZOO_REPORT_DIR)."),
    ] = None,
    workers: Annotated[int, typer.Option(help="Server processes.", min=1, max=64)] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
) -> None:
    """Serve the HTTP API (/v1, OpenAPI at /openapi.json) and each dataset's report (/report)."""
    import uvicorn
    from sqlalchemy.exc import OperationalError

    from cluster.errors import SchemaOutOfDate
    from cluster.settings import get_settings
    from db.schema import ensure_schema

    if report_dir is not None:  # the worker processes read their settings from the environment
        os.environ["SAVERZOO_REPORT_DIR"] = str(report_dir.resolve())
        get_settings.cache_clear()
    settings = settings_or_fail()
    check_exposure(settings, host)
    try:
        ensure_schema(settings.database_url)  # a new database is migrated; an old one refused
    except SchemaOutOfDate as error:
        raise fail(str(error)) from None
    except (OperationalError, OSError) as error:  # serve anyway: /readyz says 503 until it answers
        from cluster.redact import error_line

        err.print(
            f"the database {settings.database_display} is unreachable: {error_line(error)}",
            style="yellow",
        )
    err.print(
        f"saverzoo API on http://{host}:{port} (docs at /docs, reports at /report) over "
        f"{settings.database_display}; {access_summary(settings)}",
        highlight=False,
    )
    if not (settings.api_open_read or settings.api_read_tokens or settings.api_write_tokens):
        err.print(
            "no token configured and reads not open: every /v1 request will be refused; set "
            "SAVERZOO_API_OPEN_READ=1 to read without a token on this machine",
            style="yellow",
        )
    uvicorn.run(
        "orchestrator.http.api:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        log_config=log_config(),
    )
