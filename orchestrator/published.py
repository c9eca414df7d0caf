"""Is this model's accuracy even right? Measured ImageNet-1k top-1 against timm's published figure.

A label-order or preprocessing mistake shows as a top-1 far from what timm publishes for the
same weights at the same image size. ``data/timm_imagenet_top1.csv`` is timm's
``results/results-imagenet.csv`` (columns model, top1, img_size, crop_pct; 1,556 rows for 1,266
pretrained tags, some at two sizes), taken from timm's repository at commit aa4b585 of
2026-08-08 (timm 1.0.29.dev0; the file itself last changed 2025-10-30). On a dataset marked as
ImageNet-1k validation (``datasets add/make-shards --imagenet-val``), a pretrained model whose
measured top-1 differs from the published one by more than ``TOLERANCE_POINTS`` is flagged.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

SOURCE = "timm results-imagenet.csv, commit aa4b585 (2026-08-08, timm 1.0.29.dev0)"
TOLERANCE_POINTS = 0.3


@dataclass(frozen=True)
class Published:
    top1: float  # percent
    img_size: int
    crop_pct: float


@lru_cache(maxsize=1)
def published_table() -> dict[str, tuple[Published, ...]]:
    """Every published row, by pretrained tag (``arch.tag``)."""
    table: dict[str, list[Published]] = {}
    text = (files("orchestrator") / "data" / "timm_imagenet_top1.csv").read_text()
    for row in csv.DictReader(text.splitlines()):
        published = Published(float(row["top1"]), int(row["img_size"]), float(row["crop_pct"]))
        table.setdefault(row["model"], []).append(published)
    return {name: tuple(rows) for name, rows in table.items()}


def published_for(name: str, img_size: int | None) -> Published | None:
    """timm's figure for ``name`` at ``img_size``; with no size known, its only figure (None
    when the tag was published at several sizes, or not at all)."""
    rows = published_table().get(name, ())
    if img_size is None:
        return rows[0] if len(rows) == 1 else None
    return next((r for r in rows if r.img_size == img_size), None)


def accuracy_check(name: str, img_size: int | None, measured: float) -> dict | None:
    """A flag when the measured top-1 (a fraction) is more than ``TOLERANCE_POINTS`` from the
    published one; None when it is within, or nothing is published to compare with."""
    published = published_for(name, img_size)
    if published is None:
        return None
    difference = 100 * measured - published.top1
    if abs(difference) <= TOLERANCE_POINTS:
        return None
    return {
        "model": name,
        "measured_top1": 100 * measured,
        "published_top1": published.top1,
        "img_size": published.img_size,
        "difference_points": difference,
        "message": (
            f"{name}: measured top-1 {100 * measured:.2f}% differs from timm's published "
            f"{published.top1:.2f}% at {published.img_size} px by {difference:+.2f} points "
            f"(more than {TOLERANCE_POINTS}): check the labels' class order and the preprocessing"
        ),
    }
