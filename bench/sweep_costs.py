"""The cost model of the sweep simulation: how long a GPU worker of an 8-GPU node takes over a work
unit, from the H200 anchors and stated bandwidths. Pure functions, no I/O but reading the tables.

Every figure is in seconds of real time on one NVIDIA H200; the simulation multiplies them by its
``--time-scale``. What each term stands for and where its number comes from:

* forward pass: ``images * (a + b * GMACs)`` per model, ``a`` and ``b`` fitted by weighted
  least squares to the eleven models of ``data/h200_forward_2026-11-28.json`` (bf16,
  channels_last, batch 256, eager), or ``images / images_per_s`` where the database holds a
  measured throughput of the model on an H200;
* decode: nvJPEG at 10,000 images/s (9,200-13,400 measured), once per unit's shard;
* resize and crop: 80 us per image per data config (the decode-once prototype: 1.97 s for 8,192
  images into 3 configs, resized one image at a time);
* reading a shard from object storage: 110 MB at 180 MB/s per node;
* loading a model: its fp32 checkpoint (4 bytes a parameter) at 2 GB/s, plus 0.5 s to build it;
* device memory for loaded models: 100 GB of the H200's 141 GB (bf16 weights, 2 bytes a
  parameter), the rest for activations and the decoded batch.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).with_name("data")
ANCHORS = DATA / "h200_forward_2026-11-28.json"
ZOO_TABLE = DATA / "timm_in1k_zoo.csv"


@dataclass(frozen=True)
class ZooModel:
    name: str
    gmacs: float
    params_m: float
    img_size: int
    crop_pct: float
    interpolation: str

    @property
    def config(self) -> tuple[int, float, str]:
        return self.img_size, self.crop_pct, self.interpolation


@dataclass(frozen=True)
class CostModel:
    seconds_per_image: float  # a: what a forward pass costs per image whatever its size
    seconds_per_gmac: float  # b: per image and GMAC
    decode_images_per_s: float = 10_000.0
    resize_seconds_per_image: float = 80e-6  # per data config
    shard_bytes: float = 110e6
    read_bytes_per_s: float = 180e6  # per node, from object storage
    load_bytes_per_s: float = 2e9
    load_fixed_s: float = 0.5
    model_memory_bytes: float = 100e9  # per GPU, for loaded models

    def forward_s(self, model: ZooModel, images: int, images_per_s: float | None = None) -> float:
        if images_per_s:
            return images / images_per_s
        return images * (self.seconds_per_image + self.seconds_per_gmac * model.gmacs)

    def load_s(self, model: ZooModel) -> float:
        return model.params_m * 1e6 * 4 / self.load_bytes_per_s + self.load_fixed_s

    def read_s(self) -> float:
        return self.shard_bytes / self.read_bytes_per_s

    def decode_s(self, images: int, configs: int) -> float:
        return images / self.decode_images_per_s + images * configs * self.resize_seconds_per_image

    @staticmethod
    def device_bytes(model: ZooModel) -> float:
        return model.params_m * 1e6 * 2  # bf16 weights


def fit_anchors(path: Path = ANCHORS) -> CostModel:
    """``a`` and ``b`` of the forward pass: least squares over the anchors' seconds per image,
    each weighted by its inverse square (relative errors: a small model's 17 us counts as much
    as a large one's 300 us)."""
    rows = json.loads(path.read_text())["models"]
    xs = [row["gflops"] / 2 for row in rows]  # the anchors count FLOPs; timm's tables, MACs
    ys = [1.0 / row["eager_ips_bs256"] for row in rows]
    ws = [1.0 / (y * y) for y in ys]
    sw = sum(ws)
    sx = sum(w * x for w, x in zip(ws, xs, strict=True))
    sy = sum(w * y for w, y in zip(ws, ys, strict=True))
    sxx = sum(w * x * x for w, x in zip(ws, xs, strict=True))
    sxy = sum(w * x * y for w, x, y in zip(ws, xs, ys, strict=True))
    b = (sw * sxy - sx * sy) / (sw * sxx - sx * sx)
    a = (sy - b * sx) / sw
    return CostModel(seconds_per_image=a, seconds_per_gmac=b)


def read_zoo(path: Path = ZOO_TABLE) -> list[ZooModel]:
    with path.open() as file:
        return [
            ZooModel(
                row["name"],
                float(row["gmacs"].replace(",", "")),
                float(row["params_m"].replace(",", "")),
                int(row["img_size"]),
                float(row["crop_pct"]),
                row["interpolation"],
            )
            for row in csv.DictReader(file)
        ]


def pick(zoo: list[ZooModel], count: int) -> list[ZooModel]:
    """``count`` models spread evenly over the table (sorted by name), so any count keeps the
    zoo's mix of sizes."""
    if count >= len(zoo):
        return list(zoo)
    step = len(zoo) / count
    return [zoo[int(i * step)] for i in range(count)]
