"""Every failure as ``{"error": message}``: 401/403 for auth, 404 for an unknown name or a model
without complete predictions, 409 for a conflict (an idempotency key sent with another request,
results not computed yet), 422 for a bad parameter (named as the query parameter it is) and 503
when the database is unreachable."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from cluster.errors import InputError, SchemaOutOfDate, ServiceError
from cluster.redact import error_line
from db.queries import Conflict, NotFound
from orchestrator.answer_types import ErrorAnswer
from orchestrator.http.access import ApiError
from search.parameters import ParameterError, as_query_parameter

log = logging.getLogger("saverzoo.api")

# Documented on every route of /v1 (the OpenAPI document).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorAnswer, "description": "No token, or an unknown one."},
    404: {"model": ErrorAnswer, "description": "An unknown name."},
    422: {"model": ErrorAnswer, "description": "A bad parameter, named."},
    503: {"model": ErrorAnswer, "description": "The database is unreachable."},
}


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def _message(error: Exception) -> str:
    if isinstance(error, ParameterError):
        return error.worded(as_query_parameter)
    return str(error)


def add_error_handlers(app: FastAPI) -> None:
    """Each failure's status and one JSON object, never a traceback."""
    statuses: list[tuple[type[Exception], int]] = [
        (NotFound, 404),
        (Conflict, 409),
        (InputError, 422),
        (ServiceError, 503),
        (SchemaOutOfDate, 503),
    ]
    for kind, status in statuses:
        app.add_exception_handler(kind, _handler(status))
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _bad_parameter)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_down)


def _handler(status: int) -> Any:
    async def handle(_request: Request, error: Exception) -> JSONResponse:
        return error_response(status, _message(error))

    return handle


async def _api_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    return error_response(error.status, error.message, error.headers)


async def _bad_parameter(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = [f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in error.errors()]
    return error_response(422, "; ".join(problems), detail=problems)


async def _http_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    return error_response(error.status_code, str(error.detail))


async def _database_down(_request: Request, error: Exception) -> JSONResponse:
    log.warning("database unreachable: %s", error_line(error))
    return error_response(503, "the database is unreachable; try again shortly")
