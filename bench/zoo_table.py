"""The zoo of the sweep simulation: every pretrained timm ImageNet-1k tag with its evaluation
resolution, data config, parameters and GMACs, from timm's own published results.

    python -m bench.zoo_table --timm-results DIR   # DIR: timm's results/ folder

Joins ``results-imagenet.csv`` (one row per pretrained tag: image size, crop, interpolation,
parameters) with an inference benchmark CSV of the same folder (one row per architecture:
GMACs at its benchmark image size) on the architecture name, and scales GMACs to each tag's
image size by the square of the size ratio (the convolution and token counts grow with the
pixel count). Writes ``bench/data/timm_in1k_zoo.csv``, which the simulation reads offline.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

TABLE = Path(__file__).with_name("data") / "timm_in1k_zoo.csv"
BENCHMARK = "benchmark-infer-amp-nchw-pt291-cu128-4090.csv"
COLUMNS = ("name", "img_size", "crop_pct", "interpolation", "params_m", "gmacs")


def zoo_rows(results: Path, benchmark: Path) -> list[dict[str, str]]:
    with benchmark.open() as file:
        by_arch = {row["model"]: row for row in csv.DictReader(file)}
    rows, seen = [], set()
    with results.open() as file:
        for tag in csv.DictReader(file):
            bench = by_arch.get(tag["model"].split(".")[0])
            if bench is None or tag["model"] in seen:  # a tag evaluated twice: the first row
                continue
            seen.add(tag["model"])
            scale = (int(tag["img_size"]) / int(bench["infer_img_size"])) ** 2
            rows.append(
                {
                    "name": tag["model"],
                    "img_size": tag["img_size"],
                    "crop_pct": tag["crop_pct"],
                    "interpolation": tag["interpolation"],
                    "params_m": tag["param_count"],
                    "gmacs": f"{float(bench['infer_gmacs']) * scale:.4g}",
                }
            )
    return sorted(rows, key=lambda row: row["name"])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.zoo_table", description=__doc__)
    parser.add_argument("--timm-results", type=Path, required=True)
    args = parser.parse_args()
    rows = zoo_rows(args.timm_results / "results-imagenet.csv", args.timm_results / BENCHMARK)
    with TABLE.open("w", newline="") as file:
        writer = csv.DictWriter(file, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} tags -> {TABLE}")


if __name__ == "__main__":
    main()
