"""``/v1/models`` and ``/v1/models/{name}``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from orchestrator import answers
from orchestrator.answer_types import ModelDetail, ModelsPage
from orchestrator.http.access import DB
from orchestrator.limits import MAX_OFFSET, MAX_PAGE

router = APIRouter(tags=["models"])


@router.get("/models", response_model=ModelsPage)
def models(
    db: DB,
    dataset: Annotated[str | None, Query(description="Only models complete on it.")] = None,
    source: Annotated[
        str | None,
        Query(pattern="^(timm|checkpoint|records)$", description="Only models from this source."),
    ] = None,
    name: Annotated[
        str | None, Query(max_length=300, description="A shell pattern, e.g. vit_*.")
    ] = None,
    superseded: Annotated[
        bool, Query(description="Also models whose weights were replaced.")
    ] = False,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="How many models to skip.")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="The most models to list.")] = 100,
) -> ModelsPage:
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


@router.get("/models/{name:path}", response_model=ModelDetail)
def model(db: DB, name: str) -> ModelDetail:
    """A model's profile, data config, throughput and top-1 accuracy per dataset."""
    return answers.model_detail(db, name)
