"""The HTTP API (``saverzoo serve``): the CLI's answers as JSON under ``/v1``.

Every route answers from ``orchestrator.answers``, the functions behind the CLI's ``--json``, in a
read-only transaction of its own. Bearer tokens come from the settings: a read token reads, a write
token also submits sweeps; reads are open without a token only with ``api_open_read``. Tokens are
compared in constant time and never logged. Errors are ``{"error": message}`` with 401/403 for
auth, 404 for an unknown name or a model without complete predictions, 409 for an idempotency key
sent with another request, 422 for a bad parameter and 503 when the database is unreachable.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from cluster import validate
from cluster.errors import InputError, SchemaOutOfDate, ServiceError
from cluster.redact import error_line
from cluster.settings import Settings, get_settings
from db.queries import Conflict, NotFound, get_dataset
from db.schema import current_revision, ensure_schema, head_revision
from db.session import session_factory
from orchestrator import answers
from orchestrator.answers import SaverQuery
from orchestrator.limits import DEFAULT_ALTERNATIVES, MAX_CANDIDATES, MAX_OFFSET, MAX_PAGE
from search.costs import GMACS
from search.criteria import BUDGET, DEFAULT_CANDIDATES, MAX_PROBABILITY
from search.results import curve

API_VERSION = "v1"
log = logging.getLogger("saverzoo.api")


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


# ----- auth --------------------------------------------------------------------------------------
READ, WRITE = "read", "write"
bearer = HTTPBearer(auto_error=False, description="A read or write token of the server.")


def _matches(token: str, tokens: list[str]) -> bool:
    """Constant time per token, and every token compared (no early exit reveals which matched)."""
    found = False
    for candidate in tokens:
        found |= hmac.compare_digest(token.encode(), candidate.encode())
    return found


def grant(settings: Settings, token: str | None) -> str | None:
    """What a bearer token may do: WRITE, READ, or None (no token or an unknown one)."""
    if token is None:
        return None
    if _matches(token, settings.api_write_tokens):
        return WRITE
    if _matches(token, settings.api_read_tokens):
        return READ
    return None


def _credentials(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str | None:
    return grant(request.app.state.settings, credentials.credentials if credentials else None)


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, {"WWW-Authenticate": "Bearer"})


def require_read(access: Annotated[str | None, Depends(_credentials)], request: Request) -> None:
    if access is None and not request.app.state.settings.api_open_read:
        raise _unauthorized("this API needs a bearer token (Authorization: Bearer TOKEN)")


def require_write(access: Annotated[str | None, Depends(_credentials)]) -> None:
    if access is None:
        raise _unauthorized("submitting needs a write token (Authorization: Bearer TOKEN)")
    if access != WRITE:
        raise ApiError(403, "this token may read but not write; submitting needs a write token")


# ----- sessions ----------------------------------------------------------------------------------
def session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions.begin() as db_session:
        yield db_session


DB = Annotated[Session, Depends(session)]


# ----- parameters --------------------------------------------------------------------------------
# Names are checked by cluster.validate where they are looked up (db.queries): an invalid one
# names no dataset, so it is a 404 like any unknown name.
DatasetName = Annotated[str, Query(description="A dataset's name.")]
MaxDrop = Annotated[
    float | None,
    Query(
        ge=0, le=100, description="Allowed accuracy drop in points (a budget the dataset keeps)."
    ),
]
Criterion = Annotated[str, Query(pattern="^(budget|paper)$", description="budget or paper.")]
Holdout = Annotated[
    bool, Query(description="Thresholds picked on the calibration half, scored on the other.")
]


ConfidenceSignal = Annotated[str, Query(pattern="^(max|margin)$")]


class SweepRequest(BaseModel):
    """A sweep to submit: models (names, timm patterns) on a registered dataset.

    Its bounds are the CLI's (``SweepOptions.check``, which every submission runs again), so a
    sweep one of them takes the other takes too. The lists' lengths are the API's own: the CLI
    has no request body to keep small.
    """

    # Strict: JSON true is not a batch size of 1, nor "64" a number. Unknown fields are refused
    # by name: a misspelled option dropped silently would run the sweep on its default.
    model_config = ConfigDict(strict=True, extra="forbid")

    dataset: str = Field(description="A registered dataset's name.")
    models: list[str] = Field(
        min_length=1, max_length=10_000, description="Names or timm patterns (vit_*), or a,b."
    )
    exclude: list[str] = Field(default_factory=list, max_length=10_000)
    input_sizes: list[int] = Field(
        default_factory=list,
        max_length=64,
        description="Also evaluate each model at these square test sizes (NAME+SIZEpx).",
    )
    device: str = Field(default="cpu", pattern="^(cpu|cuda)$")
    mode: str | None = Field(default=None, pattern="^(fast|reference)$")
    batch_size: int = Field(default=64, ge=1, le=validate.MAX_BATCH_SIZE)
    random_weights: bool = False
    compile: bool = False
    max_attempts: int = Field(default=3, ge=1)
    cpus_per_worker: int = Field(default=1, ge=1)
    workers: int | None = Field(default=None, ge=1)
    bundle_gmacs: float | None = Field(default=None, ge=0, le=1e9, allow_inf_nan=False)
    bundle_seconds: float | None = Field(
        default=None,
        ge=0,
        le=86400,
        allow_inf_nan=False,
        description="0: a bundle per model; null: the CLI's default.",
    )
    start: bool = Field(default=True, description="Start its driver now (false: only queue it).")
    idempotency_key: str | None = Field(
        default=None,
        description="Sent again, the same request answers the sweep it first made (also the "
        "Idempotency-Key header).",
    )

    # The validators raise InputError, a ValueError: pydantic reports it as a 422 on the field.
    @field_validator("dataset")
    @classmethod
    def _dataset(cls, value: str) -> str:
        return validate.name(value, "dataset")

    @field_validator("idempotency_key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        return None if value is None else validate.request_key(value)

    @field_validator("models", "exclude")
    @classmethod
    def _patterns(cls, values: list[str]) -> list[str]:
        for value in values:  # "a,b" is two patterns, as on the command line
            for part in value.split(","):
                validate.model_pattern(part.strip(), "model pattern")
        return values


# ----- the app -----------------------------------------------------------------------------------
def app_from_environment() -> FastAPI:
    """The app of the process-wide settings: uvicorn's factory for ``serve --workers N``."""
    settings = get_settings()
    return create_app(settings, settings.report_dir)


def create_app(settings: Settings, report_dir: Path | None = None) -> FastAPI:
    """The API over the settings' database; reports are served from ``report_dir`` if given."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
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
    _errors(app)
    _probes(app)
    app.include_router(_v1(), prefix=f"/{API_VERSION}", dependencies=[Depends(require_read)])
    if report_dir is not None:
        from orchestrator.http.reports import report_router

        app.include_router(report_router(), dependencies=[Depends(require_read)])
    return app


def _error(status: int, message: str, headers: dict | None = None, **extra) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def _errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request, error: ApiError):
        return _error(error.status, error.message, error.headers)

    @app.exception_handler(NotFound)
    async def not_found(_request, error: NotFound):
        return _error(404, str(error))

    @app.exception_handler(Conflict)
    async def conflict(_request, error: Conflict):
        return _error(409, str(error))

    @app.exception_handler(InputError)
    async def bad_input(_request, error: InputError):
        return _error(422, str(error))

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(_request, error: RequestValidationError):
        problems = [
            f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in error.errors()
        ]
        return _error(422, "; ".join(problems), detail=problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, error: StarletteHTTPException):
        return _error(error.status_code, str(error.detail))

    @app.exception_handler(OperationalError)
    async def database_down(_request, error: OperationalError):
        log.warning("database unreachable: %s", error_line(error))
        return _error(503, "the database is unreachable; try again shortly")

    @app.exception_handler(ServiceError)
    async def service_down(_request, error: ServiceError):
        return _error(503, str(error))

    @app.exception_handler(SchemaOutOfDate)
    async def old_schema(_request, error: SchemaOutOfDate):
        return _error(503, str(error))


def _probes(app: FastAPI) -> None:
    @app.get("/healthz", tags=["probes"])
    def healthz() -> dict:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["probes"])
    def readyz(request: Request):
        """The database answers and has this saverzoo's schema."""
        url = request.app.state.settings.database_url
        try:
            with request.app.state.sessions.begin() as db_session:
                db_session.execute(text("SELECT 1"))
            current, head = current_revision(url), head_revision()
        except (OperationalError, OSError):
            return _error(503, "the database is unreachable")
        if current != head:
            return _error(503, f"the database schema is {current or 'empty'}, not {head}")
        return {"status": "ready", "schema": current}


def _v1() -> APIRouter:
    router = APIRouter()

    @router.get("/datasets", tags=["datasets"])
    def datasets(db: DB) -> list[dict]:
        """Registered datasets with their budgets and how many models are complete on each."""
        return answers.datasets(db)

    @router.get("/models", tags=["models"])
    def models(
        db: DB,
        dataset: Annotated[str | None, Query(description="Only models complete on it.")] = None,
        source: Annotated[str | None, Query(pattern="^(timm|checkpoint|records)$")] = None,
        name: Annotated[str | None, Query(max_length=300, description="e.g. vit_*")] = None,
        superseded: bool = False,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> dict:
        """Models cheapest first, filtered and paged: items, total, offset and limit."""
        return answers.models_page(
            db,
            dataset=dataset,
            source=source,
            name=name,
            superseded=superseded,
            offset=offset,
            limit=limit,
        )

    @router.get("/models/{name:path}", tags=["models"])
    def model(db: DB, name: str) -> dict:
        """A model's profile, data config, throughput and top-1 accuracy per dataset."""
        return answers.model_detail(db, name)

    @router.get("/savers", tags=["savers"])
    def savers(
        db: DB,
        dataset: DatasetName,
        max_drop: MaxDrop = None,
        criterion: Criterion = BUDGET,
        holdout: Holdout = False,
        cost: Annotated[str, Query(pattern="^(gmacs|latency)$")] = GMACS,
        device_type: Annotated[str | None, Query(max_length=100)] = None,
        score_on: Annotated[str | None, Query(max_length=200)] = None,
        stages: Annotated[int, Query(ge=2, le=3)] = 2,
        candidates: Annotated[int, Query(ge=1, le=MAX_CANDIDATES)] = DEFAULT_CANDIDATES,
        confidence: ConfidenceSignal = MAX_PROBABILITY,
    ) -> list[dict]:
        """The best saver of every base model of the dataset (null where none saves); with
        ``score_on``, picked on the dataset and scored on that one (bases not evaluated there
        left out)."""
        query = SaverQuery(
            criterion=criterion,
            max_drop=max_drop,
            holdout=holdout,
            cost=cost,
            device_type=device_type,
            score_on=score_on,
            stages=stages,
            candidates=candidates,
            confidence=confidence,
        ).checked()
        rows, _unmeasured = answers.savers(db, dataset, query)
        return rows

    @router.get("/savers/{base}", tags=["savers"])
    def saver(
        db: DB,
        base: str,
        dataset: DatasetName,
        max_drop: MaxDrop = None,
        criterion: Criterion = BUDGET,
        holdout: Holdout = False,
        alternatives: Annotated[int, Query(ge=0, le=100)] = DEFAULT_ALTERNATIVES,
        confidence: ConfidenceSignal = MAX_PROBABILITY,
    ) -> dict:
        """One base's best saver and the next-best savers, ranked the same way."""
        query = SaverQuery(
            criterion=criterion, max_drop=max_drop, holdout=holdout, confidence=confidence
        ).checked()
        return answers.saver_of(db, dataset, base, query, alternatives)

    @router.get("/pairs/{base}/{saver}/curve", tags=["savers"])
    def pair_curve(
        db: DB,
        base: str,
        saver: str,
        dataset: DatasetName,
        confidence: ConfidenceSignal = MAX_PROBABILITY,
    ) -> dict:
        """The Pareto front of (relative cost, accuracy) of a saver before a base."""
        return curve(db, get_dataset(db, dataset), base, saver, confidence)

    @router.get("/sweeps", tags=["sweeps"])
    def sweeps(db: DB) -> list[dict]:
        """Every sweep, oldest first."""
        from orchestrator.sweeps.store import list_sweeps

        return list_sweeps(db)

    @router.get("/sweeps/{sweep_id}", tags=["sweeps"])
    def sweep(db: DB, sweep_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)]) -> dict:
        """Per-model progress, throughput, ETA and failures of a sweep."""
        from orchestrator.sweeps.store import status

        return status(db, sweep_id)

    @router.post("/sweeps", tags=["sweeps"], status_code=201, dependencies=[Depends(require_write)])
    def submit_sweep(
        request: Request,
        response: Response,
        body: SweepRequest,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> dict:
        """Submit a sweep (write token); its driver starts on the configured Ray cluster.

        With an idempotency key, a repeat of the request answers the sweep it made (200, not
        started again); the same key with a different request is a 409.
        """
        key = _one_key(idempotency_key, body.idempotency_key)
        answer = _submit(request.app.state.settings, request.app.state.sessions, body, key)
        if not answer.pop("created"):
            response.status_code = 200
        return answer

    return router


def _one_key(header: str | None, field: str | None) -> str | None:
    if header is not None:
        validate.request_key(header, "Idempotency-Key")
    if header is not None and field is not None and header != field:
        raise InputError("the Idempotency-Key header and the body's idempotency_key differ")
    return header if header is not None else field


def _submit(settings: Settings, sessions, body: SweepRequest, key: str | None) -> dict:
    from orchestrator.sweeps.launch import check_address, start_in_background
    from orchestrator.sweeps.store import keyed_sweep, status

    if key is not None:
        with sessions.begin() as db_session:
            repeat = keyed_sweep(db_session, key) is not None
    if body.start and not (key is not None and repeat):
        check_address(settings.ray_address)  # a repeat is neither checked nor started again
    try:
        with sessions.begin() as db_session:
            sweep_id, created = _submit_once(db_session, body, key)
    except IntegrityError:
        if key is None:
            raise
        with sessions.begin() as db_session:  # the same request sent twice at once: one won
            sweep_id, created = _submit_once(db_session, body, key)
    start = body.start and created
    started = start_in_background(settings, sweep_id, settings.ray_address) if start else None
    with sessions.begin() as db_session:
        return {**status(db_session, sweep_id), "started": started, "created": created}


def _submit_once(db_session: Session, body: SweepRequest, key: str | None) -> tuple[int, bool]:
    """The id of the sweep the request makes (or made, for a repeated key) and whether new."""
    from orchestrator.sweeps.plan import DEFAULT_BUNDLE_SECONDS
    from orchestrator.sweeps.store import SweepOptions, submit, submit_once

    options = SweepOptions(
        device=body.device,
        mode=body.mode,
        batch_size=body.batch_size,
        random_weights=body.random_weights,
        compile=body.compile,
        max_attempts=body.max_attempts,
        bundle_gmacs=body.bundle_gmacs,
        cpus_per_worker=body.cpus_per_worker,
        max_workers=body.workers,
        bundle_seconds=(
            DEFAULT_BUNDLE_SECONDS if body.bundle_seconds is None else body.bundle_seconds
        ),
    )
    from workers.spec import input_sizes

    request = (body.dataset, body.models, options)
    sizes = input_sizes(",".join(map(str, body.input_sizes)))  # each checked
    if key is None:
        return submit(db_session, *request, exclude=body.exclude, input_sizes=sizes).id, True
    sweep, created = submit_once(db_session, key, *request, exclude=body.exclude, input_sizes=sizes)
    return sweep.id, created
