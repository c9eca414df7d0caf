"""What happens when evaluations finish, the same for the sweep driver and in-process evaluation:
the throughput measured is stored, and models that now have every chunk go to the search."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from db.models import ModelThroughput, utc_now
from db.queries import complete_model_ids, get_dataset
from db.upsert import upsert
from search.service import SaverSearch

if TYPE_CHECKING:  # a measurement's type only: completion itself needs no torch
    from workers.report import Throughput


def models_evaluated(
    session: Session,
    dataset_name: str,
    model_ids: Sequence[int],
    cost_changed: Sequence[int] = (),
    search: SaverSearch | None = None,
) -> list[int]:
    """Hand the models that now have every chunk to the incremental search (the rest wait).

    ``search``: a long-lived search keeps the zoo it loaded, so each call reads only the
    predictions of the models that are new to it."""
    dataset = get_dataset(session, dataset_name)
    complete = set(complete_model_ids(session, dataset))
    finished = [i for i in model_ids if i in complete]
    search = search or SaverSearch()
    search.models_completed(session, dataset, finished)
    # A cost is the model's: the other datasets it is evaluated on move with it.
    search.costs_changed(session, list(cost_changed), skip={dataset.id})
    return finished


def store_throughput(
    session: Session,
    ids: dict[str, int],
    measured: dict[str, Throughput],
    device: str,
) -> None:
    """The latest measurement per (model, device type) replaces the one before. A measurement
    through torch.compile is stored apart, as device type "<device> compiled"."""
    upsert(
        session,
        ModelThroughput,
        [
            {
                "model_id": ids[name],
                "device_type": f"{device} compiled" if throughput.compiled else device,
                "batch_size": throughput.batch_size,
                "images_per_s": throughput.images_per_s,
                "peak_memory_mb": throughput.peak_memory_mb,
                "measured_at": utc_now(),
            }
            for name, throughput in measured.items()
            if throughput.images
        ],
        key=["model_id", "device_type"],
    )
