"""The one way numpy arrays go in and out of the database: ``.npy`` bytes, never pickles."""

from __future__ import annotations

import io

import numpy as np


def to_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def from_npy(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob), allow_pickle=False)


def class_dtype(num_classes: int) -> np.dtype:
    """The smallest integer type that holds every class index (int16 up to 32,767 classes)."""
    return np.dtype(np.int16) if num_classes <= np.iinfo(np.int16).max + 1 else np.dtype(np.int32)
