"""Read the TinySaver seed code's evaluation records.

``DIR/{model}_test.npz`` holds ``label`` (N, 1) int, ``preds`` (E, N, k) int and ``confs`` (E, N, k)
float (exit 0 is the model's own head); ``DIR/complexity_info.json`` maps each model to
``{flops, macs, params, acc}``. Everything is validated before anything is returned, so an import
either takes every model or none: model names (from the file names) are valid names, costs finite
positive numbers, labels and predicted classes indices that the database stores as they are
(``0..MAX_CLASSES-1``; a predicted class of -1 with probability 0 is "no prediction", as saverzoo's
own exports write for an image that did not decode), at least one sample and one class per
sample, and sample keys that appear once.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cluster import validate
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


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str] | None]:
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
    exits, samples, k = preds.shape
    if exits == 0 or samples == 0 or k == 0:
        raise RecordsError(
            f"{path}: preds has shape {preds.shape}; it needs at least one exit, sample and class"
        )
    _check(validate.integer, samples, f"{path}: N", 1, validate.MAX_SAMPLES)
    labels = label.reshape(-1)
    if len(labels) != preds.shape[1]:
        raise RecordsError(f"{path}: {len(labels)} labels but predictions for {preds.shape[1]}")
    if not np.issubdtype(preds.dtype, np.integer) or not np.issubdtype(labels.dtype, np.integer):
        raise RecordsError(f"{path}: label and preds must be integer class indices")
    if confs.dtype.kind not in "fiu":
        raise RecordsError(f"{path}: confs must be real numbers, not {confs.dtype}")
    probs = confs[0].astype(np.float32)
    if not np.isfinite(probs).all() or probs.min() < 0 or probs.max() > 1:
        raise RecordsError(f"{path}: confs must be probabilities in [0, 1]")
    classes = preds[0]
    _check(validate.class_indices, labels, f"{path}: label")
    # -1 with probability 0 marks "no prediction" (saverzoo's exports: an undecodable image).
    no_prediction = (classes == -1) & (probs == 0)
    _check(validate.class_indices, np.where(no_prediction, 0, classes), f"{path}: preds")
    if keys is not None:
        if len(keys) != len(labels):
            raise RecordsError(f"{path}: {len(keys)} keys but {len(labels)} labels")
        _check(validate.unique_keys, keys, f"{path}")
    return labels.astype(np.int64), classes.astype(np.int64), probs, keys


def _check(check, value, what: str, *args):
    """A ``cluster.validate`` check whose refusal is a ``RecordsError``."""
    try:
        return check(value, what, *args)
    except RecordsError:
        raise
    except InputError as error:
        raise RecordsError(str(error)) from None


def _costs(directory: Path, complexity: dict[str, dict], names: list[str]):
    """Each model's GMACs and millions of parameters (None: not given) from complexity_info."""
    where = directory / COMPLEXITY_FILE
    unknown = [n for n in names if not isinstance(complexity.get(n), dict)]
    if unknown:
        raise RecordsError(f"{where} has no numeric macs for {', '.join(unknown)}")
    macs, params = {}, {}
    for name in names:
        info = complexity[name]
        macs[name] = _check(_positive, info.get("macs"), f"{where}: macs of {name!r}")
        value = info.get("params")
        if value is not None:
            value = _check(_positive, value, f"{where}: params of {name!r}") / 1e6
        params[name] = value
    gmacs = _to_giga(macs)
    vanished = [n for n in names if not gmacs[n] > 0]  # a raw count too small to survive / 1e9
    if vanished:
        raise RecordsError(f"{where}: macs must be positive for {', '.join(vanished)}")
    return gmacs, params


def _positive(value: object, what: str) -> float:
    return validate.number(value, what, low=0.0, low_open=True)


def read_records(directory: Path) -> Records:
    """Every model of a records directory, checked to share the same samples and labels."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RecordsError(f"{directory} is not a directory of TinySaver records")
    complexity = _load_complexity(directory)
    files = sorted(directory.glob(f"*{RECORD_SUFFIX}"))
    if not files:
        raise RecordsError(f"{directory} has no *{RECORD_SUFFIX} files")
    names = [
        _check(validate.name, f.name[: -len(RECORD_SUFFIX)], f"model name (from {f.name})")
        for f in files
    ]
    gmacs, params = _costs(directory, complexity, names)
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
        models.append(
            ModelRecords(
                name=name,
                gmacs=gmacs[name],
                params_m=params[name],
                topk_classes=classes,
                topk_probs=probs,
            )
        )
    assert labels is not None  # files is not empty
    return Records(labels=labels, models=models, keys=keys)
