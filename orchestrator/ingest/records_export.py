"""Write a dataset's predictions in the TinySaver seed code's record format.

``DIR/{model}_test.npz`` with ``label`` (N, 1), ``preds`` (1, N, k) and ``confs`` (1, N, k) (one
exit: the model itself) plus ``keys``; ``DIR/complexity_info.json`` (``macs`` as MAC counts,
``params`` as counts, ``acc`` as a fraction from 0 to 1, as the seed code writes it and its
``best_saver_info`` reads it); ``DIR/sample_keys.txt``, one key per line. Samples come
in the dataset's canonical order (shard order, then order within the shard), so records move both
ways between saverzoo (``records import``) and the paper's scripts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from cluster import validate
from cluster.errors import InputError
from db.arrays import from_npy
from db.models import Dataset, Model, PredictionChunk
from db.queries import NotFound, complete_model_ids, dataset_samples


def _topk(session: Session, dataset: Dataset, model: Model) -> tuple[np.ndarray, np.ndarray]:
    chunks = session.scalars(
        select(PredictionChunk)
        .where(PredictionChunk.dataset_id == dataset.id, PredictionChunk.model_id == model.id)
        .order_by(PredictionChunk.shard_index)
    ).all()
    classes = np.concatenate([from_npy(c.topk_classes) for c in chunks]).astype(np.int64)
    probs = np.concatenate([from_npy(c.topk_probs) for c in chunks]).astype(np.float32)
    return classes, probs


def export_records(
    session: Session, dataset: Dataset, out: Path, model_names: list[str] | None = None
) -> list[str]:
    """Write the records of every complete model (or of ``model_names``); returns their names."""
    complete = set(complete_model_ids(session, dataset))
    models = session.scalars(select(Model).where(Model.id.in_(complete)).order_by(Model.name))
    chosen = [m for m in models if model_names is None or m.name in model_names]
    missing = set(model_names or []) - {m.name for m in chosen}
    if missing:
        raise NotFound(
            f"no complete predictions on {dataset.name!r} for {', '.join(sorted(missing))}"
        )
    samples = dataset_samples(session, dataset)
    try:
        _write(session, dataset, out, chosen, samples)
    except OSError as error:  # a file where the folder should be, no permission, a full disk
        reason = error.strerror or str(error)
        raise InputError(
            f"--out {out}: cannot write the records there ({reason}); give a folder you can "
            "write to"
        ) from None
    return [m.name for m in chosen]


def _write(session: Session, dataset: Dataset, out: Path, models: list[Model], samples) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder (it is made if missing)")
    out.mkdir(parents=True, exist_ok=True)
    complexity = {}
    for model in models:
        classes, probs = _topk(session, dataset, model)
        np.savez(
            validate.child_path(out, model.name, "_test.npz", "model name"),
            label=samples.labels[:, None],
            preds=classes[None],
            confs=probs[None],
            keys=samples.keys,
        )
        complexity[model.name] = {
            "macs": model.gmacs * 1e9,
            "flops": model.gmacs * 2e9,
            "params": None if model.params_m is None else model.params_m * 1e6,
            "acc": float((classes[:, 0] == samples.labels).mean()),
        }
    (out / "complexity_info.json").write_text(json.dumps(complexity, indent=1))
    (out / "sample_keys.txt").write_text("".join(f"{key}\n" for key in samples.keys))
