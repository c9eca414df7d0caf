"""Real against predicted savings of cascades (a benchmark, not a test).

``python -m bench.cascade [--device cuda]``: for (base, saver) pairs of timm
architectures, the wall-clock time of the base alone and of the cascade over the same decoded
images (preprocessing included for both), at thresholds that let a given share of the images exit,
against the relative cost the search predicts, ``gmacs_saver / gmacs_base + (1 - exit_ratio)``.

Weights are random (nothing is downloaded) and the images synthetic, so accuracy means nothing
here; exit ratios are set by picking the threshold as a quantile of the saver's confidences. The
times are what a cascade costs at that exit ratio, which is all a real zoo's chosen threshold sets.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from workers.cascade import Cascade
from workers.spec import ModelSpec, timm_spec
from workers.synthetic_images import natural_image

DEFAULT_PAIRS = (
    "resnet50:resnet18",
    "convnext_tiny:mobilenetv3_large_100",
    "vit_base_patch16_224:vit_tiny_patch16_224",
)


@dataclass
class PairResult:
    base: str
    saver: str
    exit_ratio: float
    predicted_relative_cost: float
    base_alone_s: float
    cascade_s: float

    @property
    def measured_relative_cost(self) -> float:
        return self.cascade_s / self.base_alone_s


def timed(run, images: list, batch_size: int) -> float:
    """Seconds to run ``run`` over the images in batches (one warm-up batch first)."""
    run(images[:batch_size])
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for first in range(0, len(images), batch_size):
        run(images[first : first + batch_size])
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(cascade: Cascade, images: list, exit_ratios, batch_size: int) -> list[PairResult]:
    base, saver = cascade.base, cascade.saver
    base_alone = timed(cascade.base_alone, images, batch_size)
    cascade.threshold = 1.0
    confidence = cascade(images).saver_confidence
    cost_ratio = saver.profile.gmacs / base.profile.gmacs
    results = []
    for ratio in exit_ratios:
        cascade.threshold = float(np.quantile(confidence, 1 - ratio)) if ratio < 1 else -1.0
        exits = float((confidence > cascade.threshold).mean())
        seconds = timed(cascade, images, batch_size)
        results.append(
            PairResult(
                base.spec.name, saver.spec.name, exits, cost_ratio + 1 - exits, base_alone, seconds
            )
        )
    return results


def synthetic_images(count: int) -> list[np.ndarray]:
    """ImageNet-like photos of a few sizes, decoded (uint8 H x W x 3)."""
    sizes = [(500, 375), (375, 500), (500, 333), (640, 480)]
    return [np.asarray(natural_image(i, sizes[i % len(sizes)])) for i in range(count)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pairs", nargs="*", default=list(DEFAULT_PAIRS), help="BASE:SAVER")
    parser.add_argument("--exit-ratios", type=float, nargs="*", default=[0.5, 0.8])
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args(argv)
    images = synthetic_images(args.images)
    results = []
    for pair in args.pairs:
        base, saver = pair.split(":")
        cascade = Cascade.build(
            _random(saver), _random(base), 1.0, device=args.device, batch_size=args.batch_size
        )
        results += measure(cascade, images, args.exit_ratios, args.batch_size)
        del cascade
    machine = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    print(f"{machine}; {args.images} images, batch {args.batch_size}, torch {torch.__version__}")
    print("base <- saver | exits | predicted rel. cost | measured rel. time | base alone | cascade")
    n = len(images)
    for r in results:
        print(
            f"{r.base} <- {r.saver} | {100 * r.exit_ratio:.0f}% | "
            f"{r.predicted_relative_cost:.3f} | {r.measured_relative_cost:.3f} | "
            f"{n / r.base_alone_s:.1f} img/s | {n / r.cascade_s:.1f} img/s"
        )
    if args.json:
        rows = [{**asdict(r), "measured_relative_cost": r.measured_relative_cost} for r in results]
        args.json.write_text(json.dumps({"machine": machine, "results": rows}, indent=1))


def _random(name: str) -> ModelSpec:
    return timm_spec(name, random_weights=True)


if __name__ == "__main__":
    main()
