"""A shard's evaluation into the database: one chunk per model, in the caller's transaction.

Torch-free: the worker actors and the simulation's stand-in workers write through the same code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import DatasetShard, PredictionChunk
from db.queries import get_dataset, keys_digest, store_chunks
from workers.report import ShardPredictions


def stored_models(session: Session, dataset_name: str, shard: int, ids: list[int]) -> set[int]:
    dataset = get_dataset(session, dataset_name)
    return set(
        session.scalars(
            select(PredictionChunk.model_id).where(
                PredictionChunk.dataset_id == dataset.id,
                PredictionChunk.shard_index == shard,
                PredictionChunk.model_id.in_(ids),
            )
        )
    )


def store_shard_result(
    session: Session,
    dataset_name: str,
    index: int,
    keys: Sequence[str],
    predictions: Mapping[str, ShardPredictions],
    failed_samples: Mapping[str, str],
    model_ids: Mapping[str, int],
) -> None:
    """Every model's chunk of the shard (one statement for all), and the shard's undecodable
    samples (key -> why)."""
    dataset = get_dataset(session, dataset_name)
    store_chunks(
        session,
        dataset=dataset,
        shard_index=index,
        keys_digest_=keys_digest(list(keys)),
        predictions={model_ids[name]: (c.classes, c.probs) for name, c in predictions.items()},
        name_of={model_ids[name]: name for name in predictions},
    )
    shard = session.scalars(
        select(DatasetShard).where(
            DatasetShard.dataset_id == dataset.id, DatasetShard.shard_index == index
        )
    ).one()
    shard.failed_samples = dict(failed_samples)
