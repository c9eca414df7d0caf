"""What evaluating a shard gives back, without torch: predictions, timings, a unit's report.

The sweep driver and the simulation's stand-in workers use these types too, so they live apart
from the evaluation that needs torch and timm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ShardPredictions:
    """One model's top-k on one shard, in the shard's sample order."""

    classes: np.ndarray  # int64 (n, k)
    probs: np.ndarray  # float32 (n, k)


@dataclass
class Throughput:
    """Forward passes of one model: images and seconds (the device synchronised), peak memory."""

    images: int = 0
    seconds: float = 0.0
    peak_memory_mb: float | None = None
    batch_size: int = 0  # the batch size the model ran at (smaller after an OOM)
    compiled: bool = False  # measured through torch.compile

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def add(self, other: Throughput) -> None:
        self.images += other.images
        self.seconds += other.seconds
        self.batch_size = other.batch_size or self.batch_size
        self.compiled = other.compiled
        if other.peak_memory_mb is not None:
            self.peak_memory_mb = max(self.peak_memory_mb or 0.0, other.peak_memory_mb)


@dataclass
class UnitReport:
    """What a unit did: chunks stored, models that failed (and why), measurements."""

    shard: int
    stored: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # their chunk existed already
    failed: dict[str, str] = field(default_factory=dict)
    samples: int = 0
    undecodable: int = 0
    throughput: dict[str, Throughput] = field(default_factory=dict)
    device_type: str = "cpu"  # what the throughput was measured on
    seconds: float = 0.0  # wall time of the unit in the worker: load, read, evaluate, store
