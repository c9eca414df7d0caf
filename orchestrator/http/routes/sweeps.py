"""``/v1/sweeps``: list sweeps, show one, submit one (a write token)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cluster import validate
from cluster.errors import InputError
from cluster.settings import Settings
from orchestrator.answer_types import ErrorAnswer, SubmittedSweep, SweepStatus, SweepSummary
from orchestrator.http.access import DB, require_write

router = APIRouter(tags=["sweeps"])


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


@router.get("/sweeps", response_model=list[SweepSummary])
def sweeps(db: DB) -> list[dict[str, Any]]:
    """Every sweep, oldest first."""
    from orchestrator.sweeps.store import list_sweeps

    return list_sweeps(db)


@router.get("/sweeps/{sweep_id}", response_model=SweepStatus)
def sweep(db: DB, sweep_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)]) -> dict[str, Any]:
    """Per-model progress, throughput, ETA and failures of a sweep."""
    from orchestrator.sweeps.store import status

    return status(db, sweep_id)


@router.post(
    "/sweeps",
    status_code=201,
    response_model=SubmittedSweep,
    dependencies=[Depends(require_write)],
    responses={
        200: {"model": SubmittedSweep, "description": "A repeat of a keyed request."},
        403: {"model": ErrorAnswer, "description": "A read token."},
        409: {"model": ErrorAnswer, "description": "A key sent with another request."},
    },
)
def submit_sweep(
    request: Request,
    response: Response,
    body: SweepRequest,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", description="Also the body's idempotency_key."),
    ] = None,
) -> dict[str, Any]:
    """Submit a sweep (write token); its driver starts on the configured Ray cluster.

    With an idempotency key, a repeat of the request answers the sweep it made (200, not
    started again); the same key with a different request is a 409.
    """
    key = _one_key(idempotency_key, body.idempotency_key)
    answer = _submit(request.app.state.settings, request.app.state.sessions, body, key)
    if not answer.pop("created"):
        response.status_code = 200
    return answer


def _one_key(header: str | None, field: str | None) -> str | None:
    if header is not None:
        validate.request_key(header, "Idempotency-Key")
    if header is not None and field is not None and header != field:
        raise InputError("the Idempotency-Key header and the body's idempotency_key differ")
    return header if header is not None else field


def _submit(
    settings: Settings, sessions: sessionmaker[Session], body: SweepRequest, key: str | None
) -> dict[str, Any]:
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
