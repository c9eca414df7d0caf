"""The HTTP API (``saverzoo serve``): the CLI's answers as JSON under ``/v1``.

Every route answers from ``orchestrator.answers``, the functions behind the CLI's ``--json``, in a
read-only transaction of its own, typed by ``orchestrator.answer_types`` (each route's
``response_model``, so ``/openapi.json`` describes every field). One router per resource
(``orchestrator.http.routes``); access and sessions in ``orchestrator.http.access``; failures as
``{"error": message}`` in ``orchestrator.http.errors``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from sqlalchemy.exc import OperationalError

from cluster.redact import error_line
from cluster.settings import Settings, get_settings
from db.schema import ensure_schema
from db.session import session_factory
from orchestrator.http.access import require_read
from orchestrator.http.errors import ERROR_RESPONSES, add_error_handlers, log
from orchestrator.http.routes import datasets, models, probes, savers, sweeps

API_VERSION = "v1"


def app_from_environment() -> FastAPI:
    """The app of the process-wide settings: uvicorn's factory for ``serve --workers N``."""
    settings = get_settings()
    return create_app(settings, settings.report_dir)


def create_app(settings: Settings, report_dir: Path | None = None) -> FastAPI:
    """The API over the settings' database; reports are served from ``report_dir`` if given."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            ensure_schema(settings.database_url)  # once, not per request
        except (OperationalError, OSError) as error:
            log.warning(
                "database %s unreachable at start: %s", settings.database_display, error_line(error)
            )
        yield

    app = FastAPI(
        title="saverzoo",
        version=API_VERSION,
        summary="The best tiny saver of every model of a zoo (TinySaver), from stored results.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.sessions = session_factory(settings.database_url)
    app.state.report_dir = report_dir
    add_error_handlers(app)
    app.include_router(probes.router)
    for resource in (datasets, models, savers, sweeps):
        app.include_router(
            resource.router,
            prefix=f"/{API_VERSION}",
            dependencies=[Depends(require_read)],
            responses=ERROR_RESPONSES,
        )
    if report_dir is not None:
        from orchestrator.http.routes.reports import report_router

        app.include_router(report_router(), dependencies=[Depends(require_read)])
    return app
