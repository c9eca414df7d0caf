"""Data functions. Each takes the caller's session; none creates or commits one."""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cluster.errors import InputError
from cluster.validate import name_problem
from db.arrays import class_dtype, from_npy, to_npy
from db.models import (
    Dataset,
    DatasetShard,
    Model,
    PredictionChunk,
    PredictionRevision,
    utc_now,
)
from db.refs import ShardRef
from db.upsert import _INSERT_MODULE_BY_DIALECT, upsert


class NotFound(InputError, LookupError):
    """A named dataset or model is not in the database."""


class Conflict(InputError):
    """A request contradicts what is stored (a key sent again with another request)."""


def keys_digest(keys: Iterable[str]) -> str:
    """A short fingerprint of an ordered list of sample keys."""
    digest = hashlib.blake2b(digest_size=16)
    for key in keys:
        digest.update(key.encode())
        digest.update(b"\0")
    return digest.hexdigest()


IN_LIST_SIZE = 1000  # ids per IN (...) list: well inside SQLite's and psycopg's parameter limits
LISTED_NAMES = 5  # an unknown name's message shows this many known ones, not thousands
MODEL_NAME_LENGTH = 300  # the column's length: a longer name cannot be stored


def get_dataset(session: Session, name: str) -> Dataset:
    """The dataset of that name; ``NotFound`` for an unknown name or one no dataset can have."""
    problem = name_problem(name) if isinstance(name, str) else "is not a string"
    if problem is not None:
        raise NotFound(f"unknown dataset {_shown(name)}: a dataset name {problem}")
    dataset = session.scalar(select(Dataset).where(Dataset.name == name))
    if dataset is None:
        raise NotFound(f"unknown dataset {name!r} ({_known_datasets(session)})")
    return dataset


def _known_datasets(session: Session) -> str:
    total = session.scalar(select(func.count()).select_from(Dataset))
    if not total:
        return "none is registered yet"
    first = session.scalars(select(Dataset.name).order_by(Dataset.name).limit(LISTED_NAMES)).all()
    if total <= LISTED_NAMES:
        return f"known: {', '.join(first)}"
    more = total - LISTED_NAMES
    return f"known: {', '.join(first)} and {more:,} more; `saverzoo datasets list` shows all"


def _shown(name: object, limit: int = 60) -> str:
    shown = repr(name[:limit] if isinstance(name, str) else name)
    return shown + ("…" if isinstance(name, str) and len(name) > limit else "")


def get_model(session: Session, name: str) -> Model:
    """The model of that name; ``NotFound`` if unknown. A name with control characters or too
    long for the column is not looked up (PostgreSQL refuses NUL bytes in a query)."""
    hint = "`saverzoo models list` shows the known ones"
    if not isinstance(name, str) or len(name) > MODEL_NAME_LENGTH or not name.isprintable():
        raise NotFound(f"unknown model {_shown(name)}; {hint}")
    model = session.scalar(select(Model).where(Model.name == name))
    if model is None:
        raise NotFound(f"unknown model {name!r}; {hint}")
    return model


def find_dataset(session: Session, name: str) -> Dataset | None:
    return session.scalar(select(Dataset).where(Dataset.name == name))


def refuse_case_twin(session: Session, table: type[Dataset] | type[Model], name: str) -> None:
    """Refuse a new name that differs from a stored one only in case: ``ResNet50`` beside
    ``resnet50`` would be two models to the database and one to a reader."""
    kind = "dataset" if table is Dataset else "model"
    twin = session.scalar(
        select(table.name).where(func.lower(table.name) == name.lower(), table.name != name)
    )
    if twin is not None:
        raise Conflict(
            f"{kind} name {_shown(name)} differs from the stored {kind} {_shown(twin)} only in "
            "case; use that name, or one that differs in more than case"
        )


def upsert_model(session: Session, **fields) -> Model:
    """Register a model by name, updating the stored description if it exists."""
    refuse_case_twin(session, Model, fields["name"])
    upsert(session, Model, [fields], key=["name"])
    session.expire_all()
    return get_model(session, fields["name"])


def add_shard(
    session: Session,
    dataset: Dataset,
    shard_index: int,
    keys: Sequence[str],
    labels: np.ndarray,
    url: str = "",
    failed_samples: dict[str, str] | None = None,
) -> None:
    upsert(
        session,
        DatasetShard,
        [
            {
                "dataset_id": dataset.id,
                "shard_index": shard_index,
                "url": url,
                "num_samples": len(keys),
                "sample_keys": to_npy(np.asarray(keys, dtype=str)),
                "labels": to_npy(np.asarray(labels).astype(class_dtype(dataset.num_classes))),
                "keys_digest": keys_digest(keys),
                "failed_samples": failed_samples or {},
            }
        ],
        key=["dataset_id", "shard_index"],
    )


def store_chunk(
    session: Session,
    *,
    model: Model,
    dataset: Dataset,
    shard_index: int,
    keys_digest_: str,
    topk_classes: np.ndarray,
    topk_probs: np.ndarray,
) -> None:
    """Store (or replace) the predictions of one model on one shard; the key must match."""
    store_chunks(
        session,
        dataset=dataset,
        shard_index=shard_index,
        keys_digest_=keys_digest_,
        predictions={model.id: (topk_classes, topk_probs)},
        name_of={model.id: model.name},
    )


def stored_predictions(
    session: Session, model: Model, dataset: Dataset, shard_index: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """The stored top-k classes and probabilities of one model on one shard, if any."""
    chunk = session.scalar(
        select(PredictionChunk).where(
            PredictionChunk.model_id == model.id,
            PredictionChunk.dataset_id == dataset.id,
            PredictionChunk.shard_index == shard_index,
        )
    )
    return None if chunk is None else (from_npy(chunk.topk_classes), from_npy(chunk.topk_probs))


def store_chunks(
    session: Session,
    *,
    dataset: Dataset,
    shard_index: int,
    keys_digest_: str,
    predictions: Mapping[int, tuple[np.ndarray, np.ndarray]],
    name_of: Mapping[int, str],
) -> None:
    """Store (or replace) the predictions (model id -> top-k classes, probabilities) of several
    models on one shard in one statement; the shard's key must match.

    One statement, not one a model: a sweep's worker writes a chunk for each model of its unit,
    and a statement per chunk cost it more CPU than the unit's own bookkeeping."""
    shard = session.scalar(
        select(DatasetShard).where(
            DatasetShard.dataset_id == dataset.id, DatasetShard.shard_index == shard_index
        )
    )
    if shard is None:
        raise NotFound(f"dataset {dataset.name!r} has no shard {shard_index}")
    if shard.keys_digest != keys_digest_:
        names = ", ".join(repr(name_of[i]) for i in predictions)
        raise InputError(
            f"predictions of {names} were computed on other samples than shard "
            f"{shard_index} of {dataset.name!r}; re-evaluate the model on the registered shard"
        )
    now, dtype = utc_now(), class_dtype(dataset.num_classes)
    rows = []
    for model_id, (topk_classes, topk_probs) in predictions.items():
        classes = np.asarray(topk_classes).reshape(shard.num_samples, -1)
        probs = np.asarray(topk_probs, dtype=np.float32).reshape(classes.shape)
        rows.append(
            {
                "model_id": model_id,
                "dataset_id": dataset.id,
                "shard_index": shard_index,
                "num_samples": shard.num_samples,
                "keys_digest": keys_digest_,
                "topk_classes": to_npy(classes.astype(dtype)),
                "topk_probs": to_npy(probs),
                "created_at": now,
            }
        )
    upsert(session, PredictionChunk, rows, key=["model_id", "dataset_id", "shard_index"])
    bump_prediction_revisions(session, dataset.id, list(predictions))


def bump_prediction_revisions(session: Session, dataset_id: int, model_ids: Sequence[int]) -> None:
    """Count one more write of these models' predictions on the dataset, in the caller's
    transaction: every search array derived from the previous predictions stops being current.

    An upsert, not an update of existing rows: a search deriving a model's arrays for the first
    time meanwhile must find the revision moved on. Rows go in model order, so two writers of
    the same models take the rows' locks in the same order (no deadlock)."""
    if not model_ids:
        return
    dialect = session.get_bind().dialect.name
    insert = importlib.import_module(_INSERT_MODULE_BY_DIALECT[dialect]).insert
    statement = insert(PredictionRevision)
    statement = statement.on_conflict_do_update(
        index_elements=["dataset_id", "model_id"],
        set_={"revision": PredictionRevision.revision + 1},
    )
    rows = [
        {"dataset_id": dataset_id, "model_id": model_id, "revision": 1}
        for model_id in sorted(set(model_ids))
    ]
    session.connection().execute(statement, rows)


def prediction_revisions(
    session: Session, dataset: Dataset, model_ids: Sequence[int]
) -> dict[int, int]:
    """Each model's prediction revision on the dataset (0: never written since revisions were
    counted)."""
    revisions = dict.fromkeys(model_ids, 0)
    for start in range(0, len(model_ids), IN_LIST_SIZE):
        part = list(model_ids[start : start + IN_LIST_SIZE])
        rows = session.execute(
            select(PredictionRevision.model_id, PredictionRevision.revision).where(
                PredictionRevision.dataset_id == dataset.id,
                PredictionRevision.model_id.in_(part),
            )
        )
        revisions.update(dict(rows.all()))
    return revisions


def complete_model_ids(
    session: Session, dataset: Dataset, among: Sequence[int] | None = None
) -> list[int]:
    """The models complete on the dataset (of ``among`` if given), in id order: the one rule.

    A model is complete when it has a prediction chunk of every shard and its weights are current:
    a superseded model (its weights replaced) is no model of any answer, search or report.
    """
    num_shards = session.scalar(
        select(func.count()).select_from(DatasetShard).where(DatasetShard.dataset_id == dataset.id)
    )
    if not num_shards:
        return []
    query = (
        select(PredictionChunk.model_id)
        .join(Model, Model.id == PredictionChunk.model_id)
        .where(PredictionChunk.dataset_id == dataset.id, Model.superseded_at.is_(None))
    )
    if among is not None:
        query = query.where(PredictionChunk.model_id.in_(list(among)))
    rows = session.execute(
        query.group_by(PredictionChunk.model_id)
        .having(func.count() == num_shards)
        .order_by(PredictionChunk.model_id)
    )
    return [row[0] for row in rows]


def require_complete(session: Session, dataset: Dataset, *models: Model) -> None:
    """``NotFound`` naming the first of ``models`` that is not complete on the dataset."""
    complete = set(complete_model_ids(session, dataset, [m.id for m in models]))
    for model in models:
        if model.superseded_at is not None:
            raise NotFound(
                f"model {model.name!r} was superseded (its weights were replaced), so it has no "
                f"complete predictions on {dataset.name!r}"
            )
        if model.id not in complete:
            raise NotFound(f"model {model.name!r} has no complete predictions on {dataset.name!r}")


@dataclass(frozen=True)
class DatasetSamples:
    keys: np.ndarray  # str (N,)
    labels: np.ndarray  # int (N,)


def dataset_samples(session: Session, dataset: Dataset) -> DatasetSamples:
    shards = session.scalars(
        select(DatasetShard)
        .where(DatasetShard.dataset_id == dataset.id)
        .order_by(DatasetShard.shard_index)
    ).all()
    if not shards:
        return DatasetSamples(np.array([], dtype=str), np.array([], dtype=np.int64))
    return DatasetSamples(
        keys=np.concatenate([from_npy(s.sample_keys) for s in shards]),
        labels=np.concatenate([from_npy(s.labels).astype(np.int64) for s in shards]),
    )


def dataset_labels(session: Session, dataset: Dataset) -> np.ndarray:
    """Every sample's label (int64), shards in order; the keys are not read."""
    labels = session.scalars(
        select(DatasetShard.labels)
        .where(DatasetShard.dataset_id == dataset.id)
        .order_by(DatasetShard.shard_index)
    ).all()
    if not labels:
        return np.array([], dtype=np.int64)
    return np.concatenate([from_npy(blob).astype(np.int64) for blob in labels])


def top1_predictions(
    session: Session, dataset: Dataset, model_ids: Sequence[int], confidence: str = "max"
) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 classes (M, N) and confidences (M, N) of complete models, shards in order: the
    top-1 probability (``max``) or its margin over the top-2 (``margin``; InputError for a model
    stored with its top-1 alone)."""
    row_of = {model_id: row for row, model_id in enumerate(model_ids)}
    n = dataset.num_samples
    classes = np.empty((len(model_ids), n), dtype=np.int64)
    probs = np.empty((len(model_ids), n), dtype=np.float32)
    offsets = dict(
        session.execute(
            select(DatasetShard.shard_index, DatasetShard.num_samples).where(
                DatasetShard.dataset_id == dataset.id
            )
        ).all()
    )
    starts, total = {}, 0
    for shard_index in sorted(offsets):
        starts[shard_index], total = total, total + offsets[shard_index]
    chunks = session.execute(
        select(
            PredictionChunk.model_id,
            PredictionChunk.shard_index,
            PredictionChunk.topk_classes,
            PredictionChunk.topk_probs,
        ).where(PredictionChunk.dataset_id == dataset.id, PredictionChunk.model_id.in_(model_ids))
    )
    for model_id, shard_index, chunk_classes, chunk_probs in chunks:
        row, start = row_of[model_id], starts[shard_index]
        top_classes, top_probs = from_npy(chunk_classes), from_npy(chunk_probs)
        classes[row, start : start + len(top_classes)] = top_classes[:, 0]
        probs[row, start : start + len(top_classes)] = _confidence(
            top_probs, confidence, model_id, session
        )
    return classes, probs


def topk_predictions(
    session: Session, dataset: Dataset, model_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """One complete model's top-k classes (int64 (N, k)) and probabilities (float32 (N, k)),
    shards in order; k is the smallest its chunks store."""
    chunks = session.execute(
        select(PredictionChunk.topk_classes, PredictionChunk.topk_probs)
        .join(
            DatasetShard,
            (DatasetShard.dataset_id == PredictionChunk.dataset_id)
            & (DatasetShard.shard_index == PredictionChunk.shard_index),
        )
        .where(PredictionChunk.dataset_id == dataset.id, PredictionChunk.model_id == model_id)
        .order_by(PredictionChunk.shard_index)
    ).all()
    parts = [(from_npy(classes), from_npy(probs)) for classes, probs in chunks]
    k = min((c.shape[1] for c, _ in parts), default=1)
    if not parts:
        return np.empty((0, k), dtype=np.int64), np.empty((0, k), dtype=np.float32)
    return (
        np.concatenate([c[:, :k].astype(np.int64) for c, _ in parts]),
        np.concatenate([p[:, :k].astype(np.float32) for _, p in parts]),
    )


def _confidence(top_probs: np.ndarray, confidence: str, model_id: int, session: Session):
    """A chunk's confidence signal (``search.criteria.CONFIDENCES``)."""
    if confidence == "max":
        return top_probs[:, 0]
    if confidence not in ("margin",):
        raise ValueError(
            f"{confidence!r} confidence is not a chunk's own: a learned score depends on every "
            "sample of the model (search.learned_arrays)"
        )
    if top_probs.shape[1] < 2:
        name = session.get(Model, model_id).name  # type: ignore[union-attr]
        raise InputError(
            f"model {name!r} has only its top-1 probability stored: margin confidence needs "
            "the top two (evaluate it again, or import records with top-k of 2 or more)"
        )
    return top_probs[:, 0] - top_probs[:, 1]


def lock_dataset_search(session: Session, dataset: Dataset) -> None:
    """Serialise best-saver updates of one dataset until the transaction ends.

    The UPDATE takes PostgreSQL's row lock, and SQLite's database write lock, on both dialects.
    """
    session.execute(
        update(Dataset)
        .where(Dataset.id == dataset.id)
        .values(search_revision=Dataset.search_revision + 1)
    )


def dataset_shards(session: Session, dataset: Dataset) -> list[ShardRef]:
    """The dataset's shards in order (a records dataset has one, without a URL)."""
    return [
        ShardRef(s.shard_index, s.url, s.num_samples)
        for s in session.scalars(
            select(DatasetShard)
            .where(DatasetShard.dataset_id == dataset.id)
            .order_by(DatasetShard.shard_index)
        )
    ]
