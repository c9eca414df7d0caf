"""What the saver search needs of each model, stored once per (dataset, model, confidence signal):
a new process loads a 1,000-model zoo as one read instead of decoding every prediction chunk
and sorting every model's confidences again.

One blob of N samples, little-endian, confidences first so that each part starts aligned to its
item size:

- confidence: float32 x N, the signal's value per sample, exactly as the chunks give it;
- order: the sample indices most confident first (``argsort(-confidence)``, ties in any order),
  uint16 x N up to 65,536 samples, uint32 x N above;
- correct: ``numpy.packbits`` of (top-1 class == label), ceil(N / 8) bytes.

At N = 50,000 that is 306,250 bytes a model and signal. Nothing is compressed: float
confidences and a permutation barely compress, and inflating would cost more than reading.

Never stale: every chunk write bumps the model's ``PredictionRevision`` on the dataset in the
chunk's own transaction (``db.queries.store_chunks``). A blob records the revision read *before*
the chunks it was derived from, and is used only while that revision is still the current one
(and the labels' digest and the sample count still match). If a write committed after that read,
the revision has moved on and the blob is derived again, whatever the order of the two
transactions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Dataset, StoredSearchArrays, utc_now
from db.queries import dataset_labels, prediction_revisions, top1_predictions
from db.upsert import upsert

ARRAYS_KEY = ["dataset_id", "model_id", "confidence"]
READ_BATCH = 200  # blobs a query: PostgreSQL's client holds a query's result (60 MB at 50,000)
DERIVE_BATCH = 100  # models whose chunks are decoded at once (int64 classes: 40 MB at 50,000)

#: How a signal's arrays are derived for a batch of models: (session, dataset, model ids,
#: signal) -> top-1 classes (B, N) and confidences (B, N). The default reads the chunks
#: (``top1_predictions``); the learned signal trains and applies rules (``search.learned_arrays``).
Derive = Callable[[Session, Dataset, list[int], str], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class SearchArrays:
    """M models (rows, in the order asked for) on the N samples of a dataset."""

    correct: np.ndarray  # uint8 (M, N): 1 where the model's top-1 class is the label
    confidence: np.ndarray  # float32 (M, N): the confidence signal
    order: np.ndarray  # uint32 (M, N): each row's samples most confident first
    derived: tuple[int, ...]  # the model ids derived from their chunks this time, then stored


# ----- the blob: pure functions --------------------------------------------------------------
def order_dtype(num_samples: int) -> np.dtype:
    """The smallest unsigned type that holds every sample index."""
    return np.dtype("<u2") if num_samples <= 1 << 16 else np.dtype("<u4")


def blob_size(num_samples: int) -> int:
    return num_samples * (4 + order_dtype(num_samples).itemsize) + (num_samples + 7) // 8


def encode(correct: np.ndarray, confidence: np.ndarray, order: np.ndarray) -> bytes:
    """One model's blob from its correctness (N,), confidences (N,) and order (N,)."""
    n = len(confidence)
    return b"".join(
        (
            np.ascontiguousarray(confidence, dtype="<f4").tobytes(),
            np.ascontiguousarray(order, dtype=order_dtype(n)).tobytes(),
            np.packbits(np.asarray(correct, dtype=bool)).tobytes(),
        )
    )


def decode(blob: bytes, num_samples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views (no copy) of a blob's confidences, order and packed correctness bits."""
    n, index = num_samples, order_dtype(num_samples)
    confidence = np.frombuffer(blob, dtype="<f4", count=n)
    order = np.frombuffer(blob, dtype=index, count=n, offset=4 * n)
    bits = np.frombuffer(blob, dtype=np.uint8, offset=(4 + index.itemsize) * n)
    return confidence, order, bits


def labels_digest(labels: np.ndarray, basis: str = "") -> str:
    """The labels' digest; ``basis``: whatever else a signal is derived from (folds, a split)."""
    digest = hashlib.blake2b(np.ascontiguousarray(labels, dtype="<i8").tobytes(), digest_size=16)
    if basis:
        digest.update(basis.encode())
    return digest.hexdigest()


def confidence_order(confidence: np.ndarray) -> np.ndarray:
    """Each row's samples most confident first (uint32), as the search sorts a saver."""
    return np.argsort(-confidence, axis=-1).astype(np.uint32)


# ----- the loader -----------------------------------------------------------------------------
def load_search_arrays(
    session: Session,
    dataset: Dataset,
    model_ids: Sequence[int],
    confidence: str,
    labels: np.ndarray | None = None,
    out: SearchArrays | None = None,
    derive: Derive | None = None,
    basis: str = "",
) -> SearchArrays:
    """The search arrays of complete models on one confidence signal, rows in ``model_ids``
    order: read where stored and current, else derived from the chunks and stored (an upsert in
    the caller's transaction).

    ``labels``: the dataset's labels if the caller has them already (else they are read).
    ``out``: arrays of shape (M, N) to fill instead of new ones (its ``derived`` is ignored), so
    that a caller with its own buffers (a zoo with room to grow) copies nothing: on a small VM,
    first touching a fresh 200 MB array can take longer than reading every stored blob.
    ``InputError`` as ``top1_predictions`` for a margin asked of a model stored with its top-1
    alone.
    ``derive`` and ``basis``: how a signal not read off the chunks is derived, and what else than
    the labels it is derived from (a change of it makes a stored blob not current).
    """
    if len(set(model_ids)) != len(model_ids):
        raise ValueError(f"model ids repeat: {list(model_ids)}")
    labels = dataset_labels(session, dataset) if labels is None else labels
    n, m = len(labels), len(model_ids)
    # Read first: a write that commits after this makes whatever is derived below not current.
    revisions = prediction_revisions(session, dataset, model_ids)
    digest = labels_digest(labels, basis)
    row_of = {model_id: row for row, model_id in enumerate(model_ids)}
    correct, values, orders = _outputs(out, m, n)
    current: set[int] = set()
    for start in range(0, m, READ_BATCH):
        # Core, row by row: each blob is copied into its row and freed before the next is
        # fetched, so they reuse one buffer (fresh memory costs a page fault per 4 KiB).
        stored = session.connection().execute(
            select(
                StoredSearchArrays.model_id,
                StoredSearchArrays.revision,
                StoredSearchArrays.num_samples,
                StoredSearchArrays.labels_digest,
                StoredSearchArrays.arrays,
            ).where(
                StoredSearchArrays.dataset_id == dataset.id,
                StoredSearchArrays.confidence == confidence,
                StoredSearchArrays.model_id.in_(list(model_ids[start : start + READ_BATCH])),
            )
        )
        for model_id, revision, num_samples, stored_digest, blob in stored:
            if (revision, num_samples, stored_digest) != (revisions[model_id], n, digest):
                continue
            if len(blob) != blob_size(n):
                continue  # written by another layout: derive again
            row = row_of[model_id]
            values[row], orders[row], bits = decode(blob, n)
            correct[row] = np.unpackbits(bits, count=n)
            current.add(model_id)
    derived = [model_id for model_id in model_ids if model_id not in current]
    for start in range(0, len(derived), DERIVE_BATCH):
        batch = derived[start : start + DERIVE_BATCH]
        rows = [row_of[model_id] for model_id in batch]
        if derive is None:
            classes, signal = top1_predictions(session, dataset, batch, confidence)
        else:
            classes, signal = derive(session, dataset, batch, confidence)
        right = classes == labels[None, :]
        correct[rows], values[rows], orders[rows] = right, signal, confidence_order(signal)
        now = utc_now()
        upsert(
            session,
            StoredSearchArrays,
            [
                {
                    "dataset_id": dataset.id,
                    "model_id": model_id,
                    "confidence": confidence,
                    "revision": revisions[model_id],
                    "num_samples": n,
                    "labels_digest": digest,
                    "arrays": encode(right[i], signal[i], orders[row]),
                    "computed_at": now,
                }
                for i, (model_id, row) in enumerate(zip(batch, rows, strict=True))
            ],
            key=ARRAYS_KEY,
        )
    return SearchArrays(correct, values, orders, derived=tuple(derived))


def _outputs(out: SearchArrays | None, m: int, n: int) -> tuple[np.ndarray, ...]:
    if out is None:
        return (
            np.empty((m, n), dtype=np.uint8),
            np.empty((m, n), dtype=np.float32),
            np.empty((m, n), dtype=np.uint32),
        )
    arrays = (out.correct, out.confidence, out.order)
    wanted = (np.uint8, np.float32, np.uint32)
    if any(a.shape != (m, n) or a.dtype != w for a, w in zip(arrays, wanted, strict=True)):
        raise ValueError(
            f"out arrays must be ({m}, {n}) uint8, float32 and uint32, not "
            + ", ".join(f"{a.shape} {a.dtype}" for a in arrays)
        )
    return arrays
