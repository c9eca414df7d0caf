"""Read the TinySaver seed code's evaluation records.

``DIR/{model}_test.npz`` holds ``label`` (N, 1) int, ``preds`` (E, N, k) int and ``confs`` (E, N, k)
float (exit 0 is the model's own head); ``DIR/complexity_info.json`` maps each model to
``{flops, macs, params, acc}``. Everything is validated before anything is returned, so an import
either takes every model or none.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cluster.errors import InputError

RECORD_SUFFIX = "_test.npz"
COMPLEXITY_FILE = "complexity_info.json"
# Costs below this are taken as already in GMACs (no ImageNet model has under 100k MACs).
RAW_COUNT_FLOOR = 1e5


class RecordsError(InputError):
    """The records directory cannot be imported; the message names the file and the fix."""


@dataclass(frozen=True)
class ModelRecords:
    name: str
    gmacs: float
    params_m: float | None
    topk_classes: np.ndarray  # (N, k) of exit 0
    topk_probs: np.ndarray  # (N, k) float32 of exit 0


@dataclass(frozen=True)
class Records:
    labels: np.ndarray  # (N,) int64
    models: list[ModelRecords]
    keys: list[str] | None = None  # sample keys when the files carry them (saverzoo's exports)

    @property
    def num_samples(self) -> int:
        return len(self.labels)


def _load_complexity(directory: Path) -> dict[str, dict]:
    path = directory / COMPLEXITY_FILE
    if not path.is_file():
        raise RecordsError(f"{path} is missing; it must map each model to its macs and params")
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise RecordsError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(info, dict):
        raise RecordsError(f"{path} must be a JSON object mapping model names to their costs")
    return info


def _to_giga(values: dict[str, float]) -> dict[str, float]:
    """MAC counts become GMACs; a file already in GMACs (all values small) is kept as it is."""
    if values and max(values.values()) < RAW_COUNT_FLOOR:
        return dict(values)
    return {name: value / 1e9 for name, value in values.items()}


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = {"label", "preds", "confs"} - set(npz.files)
            if missing:
                raise RecordsError(f"{path} lacks the arrays {sorted(missing)}")
            label, preds, confs = npz["label"], npz["preds"], npz["confs"]
            keys = [str(k) for k in npz["keys"]] if "keys" in npz.files else None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        if isinstance(error, RecordsError):
            raise
        raise RecordsError(f"{path} is not a readable npz file ({error})") from None
    if preds.ndim == 2:  # a single exit stored without its axis
        preds, confs = preds[None], confs[None]
    if preds.ndim != 3 or preds.shape != confs.shape:
        raise RecordsError(
            f"{path}: preds and confs must both be (exits, N, k); got {preds.shape} and "
            f"{confs.shape}"
        )
    labels = label.reshape(-1)
    if len(labels) != preds.shape[1]:
        raise RecordsError(f"{path}: {len(labels)} labels but predictions for {preds.shape[1]}")
    if not np.issubdtype(preds.dtype, np.integer) or not np.issubdtype(labels.dtype, np.integer):
        raise RecordsError(f"{path}: label and preds must be integer class indices")
    probs = confs[0].astype(np.float32)
    if not np.isfinite(probs).all() or probs.min() < 0 or probs.max() > 1:
        raise RecordsError(f"{path}: confs must be probabilities in [0, 1]")
    if keys is not None and len(keys) != len(labels):
        raise RecordsError(f"{path}: {len(keys)} keys but {len(labels)} labels")
    return labels.astype(np.int64), preds[0], probs, keys


def read_records(directory: Path) -> Records:
    """Every model of a records directory, checked to share the same samples and labels."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RecordsError(f"{directory} is not a directory of TinySaver records")
    complexity = _load_complexity(directory)
    files = sorted(directory.glob(f"*{RECORD_SUFFIX}"))
    if not files:
        raise RecordsError(f"{directory} has no *{RECORD_SUFFIX} files")
    names = [f.name[: -len(RECORD_SUFFIX)] for f in files]
    unknown = [
        n
        for n in names
        if not isinstance(complexity.get(n), dict)
        or not isinstance(complexity[n].get("macs"), int | float)
    ]
    if unknown:
        raise RecordsError(
            f"{directory / COMPLEXITY_FILE} has no numeric macs for {', '.join(unknown)}"
        )
    gmacs = _to_giga({n: float(complexity[n]["macs"]) for n in names})
    bad_cost = [n for n in names if not gmacs[n] > 0]
    if bad_cost:
        raise RecordsError(f"{COMPLEXITY_FILE}: macs must be positive for {', '.join(bad_cost)}")
    labels, keys, models = None, None, []
    for path, name in zip(files, names, strict=True):
        file_labels, classes, probs, file_keys = _load_npz(path)
        if labels is None:
            labels, keys, first = file_labels, file_keys, path
        elif file_keys != keys:
            raise RecordsError(f"{path} has other sample keys than {first}")
        elif len(file_labels) != len(labels):
            raise RecordsError(f"{path} has N={len(file_labels)} but {first} has N={len(labels)}")
        elif not np.array_equal(file_labels, labels):
            raise RecordsError(f"{path} has other labels than {first} for the same samples")
        params = complexity[name].get("params")
        models.append(
            ModelRecords(
                name=name,
                gmacs=gmacs[name],
                params_m=float(params) / 1e6 if isinstance(params, int | float) else None,
                topk_classes=classes,
                topk_probs=probs,
            )
        )
    return Records(labels=labels, models=models, keys=keys)
