"""Import TinySaver records into the database: all models or none.

Records name a model and bring its predictions and cost. A name saverzoo already knows as a timm
or checkpoint model keeps its description: its records are taken only at the cost it is
registered with (a records export of it, moved to another dataset), and refused at any other cost
or over random weights, since they would then be another model's predictions under its name.

A stored answer never changes unless the user asks: records that differ from a model's stored
predictions on the dataset, or give a model from records another cost (which moves its savers on
every dataset), are refused with one line naming the model and what differs, unless ``replace``
is given. Records identical to what is stored change nothing, not even the search's revision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from cluster import validate
from db.models import Dataset, Model
from db.queries import (
    add_shard,
    dataset_samples,
    find_dataset,
    refuse_case_twin,
    store_chunk,
    stored_predictions,
)
from db.queries import keys_digest as digest_of
from search.records import ModelRecords, Records, RecordsError, read_records
from search.selection import centipoints
from search.service import Progress, SaverSearch, UpdateSummary


def record_keys(records: Records) -> list[str]:
    """The keys the records carry (saverzoo's exports do), else their positions."""
    if records.keys is not None:
        return list(records.keys)
    return [f"{i:08d}" for i in range(records.num_samples)]


@dataclass(frozen=True)
class ImportSummary:
    dataset: str
    created_dataset: bool
    models: list[str]
    num_samples: int
    search: UpdateSummary
    unchanged: list[str]  # records equal to what was stored: nothing written


def _dataset_for(
    session: Session,
    name: str,
    records: Records,
    source: str,
    budgets: list[float],
    holdout_fraction: float,
) -> tuple[Dataset, bool]:
    dataset = find_dataset(session, name)
    if dataset is not None:
        existing = dataset_samples(session, dataset)
        if len(existing.labels) != records.num_samples or not np.array_equal(
            existing.labels, records.labels
        ):
            raise RecordsError(
                f"dataset {name!r} has {len(existing.labels)} samples with other labels than the "
                f"records ({records.num_samples}); import them under another --dataset name"
            )
        return dataset, False
    refuse_case_twin(session, Dataset, name)
    highest = max(records.labels.max(), *(m.topk_classes.max() for m in records.models))
    num_classes = validate.integer(int(highest) + 1, "classes", 1, validate.MAX_CLASSES)
    dataset = Dataset(
        name=name,
        num_samples=validate.integer(records.num_samples, "samples", 1, validate.MAX_SAMPLES),
        num_classes=num_classes,
        label_source=source,
        budgets_centipoints=sorted({centipoints(b) for b in budgets}),
        holdout_fraction=holdout_fraction,
    )
    session.add(dataset)
    session.flush()
    add_shard(session, dataset, 0, record_keys(records), records.labels)
    return dataset, True


def _model_for(session: Session, records: ModelRecords, replace: bool) -> tuple[Model, bool]:
    """The model the records describe, and whether its cost changed.

    A model saverzoo already knows from elsewhere keeps its description (source, architecture,
    cost); records of it at another cost are refused (see the module's docstring). A model
    known from records takes the new records' cost only with ``replace``.
    """
    model = session.scalar(select(Model).where(Model.name == records.name))
    if model is None:
        refuse_case_twin(session, Model, records.name)
        model = Model(
            name=records.name, source="records", gmacs=records.gmacs, params_m=records.params_m
        )
        session.add(model)
        session.flush()
        return model, False
    if model.source != "records":
        _refuse_other_model(model, records)
        return model, False
    changed = model.gmacs != records.gmacs
    if changed and not replace:
        raise RecordsError(
            f"records of {records.name!r} give it {records.gmacs:.6g} GMACs; it is stored at "
            f"{model.gmacs:.6g}, which its savers on every dataset use; add --replace to "
            "replace its cost"
        )
    model.gmacs = records.gmacs
    if replace and records.params_m is not None:  # a description, replaced only when asked
        model.params_m = records.params_m
    session.flush()
    return model, changed


def _same_as_stored(
    session: Session, model: Model, dataset: Dataset, records: ModelRecords, replace: bool
) -> bool:
    """Whether the records equal the model's stored predictions on the dataset; records that
    differ are refused unless ``replace``."""
    stored = stored_predictions(session, model, dataset, 0)
    if stored is None:
        return False
    classes, probs = stored
    if np.array_equal(classes, records.topk_classes) and np.array_equal(probs, records.topk_probs):
        return True
    if not replace:
        if classes.shape == records.topk_classes.shape == probs.shape:
            rows = (classes != records.topk_classes) | (probs != records.topk_probs)
            what = f"on {int(rows.any(axis=1).sum()):,} samples"
        else:
            what = f"in shape ({classes.shape[1]} top classes stored)"
        raise RecordsError(
            f"records of {records.name!r} differ from its stored predictions on "
            f"{dataset.name!r} {what}; add --replace to replace them"
        )
    return False


def _refuse_other_model(model: Model, records: ModelRecords) -> None:
    if model.random_weights:
        what = f"a {model.source} model with random weights"
    elif not math.isclose(model.gmacs, records.gmacs, rel_tol=1e-6):
        what = f"a {model.source} model of {model.gmacs:.6g} GMACs, not {records.gmacs:.6g}"
    else:
        return
    raise RecordsError(
        f"records of {records.name!r} cannot join the model of that name, {what}; rename "
        f"{records.name}_test.npz (and its complexity_info.json entry) to import them as "
        "another model"
    )


def import_records(
    session: Session,
    directory: Path,
    dataset_name: str,
    *,
    budgets: list[float],
    holdout_fraction: float,
    search: SaverSearch,
    progress: Progress | None = None,
    imagenet_val: bool = False,
    replace: bool = False,
) -> ImportSummary:
    validate.name(dataset_name, "--dataset")
    records = read_records(directory)
    dataset, created = _dataset_for(
        session,
        dataset_name,
        records,
        f"records:{Path(directory).resolve()}",
        budgets,
        holdout_fraction,
    )
    dataset.imagenet_val = dataset.imagenet_val or imagenet_val  # marks, never unmarks
    digest = digest_of(record_keys(records))
    model_ids, cost_changed, unchanged = [], [], []
    for model_records in records.models:
        model, changed = _model_for(session, model_records, replace)
        if _same_as_stored(session, model, dataset, model_records, replace) and not changed:
            unchanged.append(model.name)
            continue
        store_chunk(
            session,
            model=model,
            dataset=dataset,
            shard_index=0,
            keys_digest_=digest,
            topk_classes=model_records.topk_classes,
            topk_probs=model_records.topk_probs,
        )
        model_ids.append(model.id)
        if changed:
            cost_changed.append(model.id)
    summary = (
        search.models_completed(session, dataset, model_ids, progress=progress)
        if model_ids
        else UpdateSummary(models=0, pairs_computed=0, rows_written=0, best_changed=0)
    )
    # A cost is the model's, not the dataset's: every other dataset's pairs move with it.
    search.costs_changed(session, cost_changed, skip={dataset.id})
    return ImportSummary(
        dataset=dataset.name,
        created_dataset=created,
        models=[m.name for m in records.models],
        num_samples=records.num_samples,
        search=summary,
        unchanged=unchanged,
    )
