"""``/v1/datasets``."""

from __future__ import annotations

from fastapi import APIRouter

from orchestrator import answers
from orchestrator.answer_types import DatasetSummary
from orchestrator.http.access import DB

router = APIRouter(tags=["datasets"])


@router.get("/datasets", response_model=list[DatasetSummary])
def datasets(db: DB) -> list[DatasetSummary]:
    """Registered datasets with their budgets and how many models are complete on each."""
    return answers.datasets(db)
