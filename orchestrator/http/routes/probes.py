"""``/healthz`` and ``/readyz``: the process, and its database."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from db.schema import current_revision, head_revision
from orchestrator.answer_types import ErrorAnswer, Health, Ready
from orchestrator.http.errors import error_response

router = APIRouter(tags=["probes"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Ready,
    responses={503: {"model": ErrorAnswer, "description": "Not ready, and why."}},
)
def readyz(request: Request) -> Ready | JSONResponse:
    """The database answers and has this saverzoo's schema."""
    url = request.app.state.settings.database_url
    try:
        with request.app.state.sessions.begin() as db_session:
            db_session.execute(text("SELECT 1"))
        current, head = current_revision(url), head_revision()
    except (OperationalError, OSError):
        return error_response(503, "the database is unreachable")
    if current != head:
        return error_response(503, f"the database schema is {current or 'empty'}, not {head}")
    return Ready.model_validate({"status": "ready", "schema": current})
