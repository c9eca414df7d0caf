"""ShardEvaluator benchmark: is a zoo sweep bound by model compute or by JPEG decoding?

    python -m bench.worker [--device cuda] [--images 10000] [--models a,b,...] [--json FILE]

Generates natural-looking synthetic JPEG shards (``workers.synthetic_images``, ~500x375, ~60 KB)
once into a cache folder, then reports per model:
  (a) ceiling: forward-only img/s on random tensors (timm benchmark style, after warm-up);
  (b) worker: img/s of the full worker path (read shard, decode, preprocess, forward, top-5);
and for the whole model list:
  (c) the zoo wall time with decode-once (one worker, every model) against the sum of
      images / ceiling over the models, and against a per-model CPU-decode loader (timm
      ``validate.py`` style: one DataLoader per model, PIL decode and transform on every core).

Weights are random unless ``--pretrained`` (speed does not depend on them; say which in reports).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import webdataset as wds
from platformdirs import user_cache_dir
from rich.console import Console
from rich.progress import track
from rich.table import Table
from timm.data import create_transform

from workers.evaluate import EvalOptions, LoadedModel, ShardEvaluator, device_type
from workers.spec import timm_spec
from workers.synthetic_images import natural_jpeg

ZOO = (
    "mobilenetv3_large_100",
    "efficientnet_b0",
    "resnet18",
    "resnet50",
    "convnext_tiny",
    "vit_small_patch16_224",
    "vit_base_patch16_224",
)
IMAGE_MODES = ("RGB",) * 48 + ("L", "CMYK")  # ImageNet: ~2% grayscale, a few CMYK
console = Console()


@dataclass
class ModelResult:
    model: str
    gmacs: float
    ceiling_img_s: float
    worker_img_s: float
    batch_size: int


@dataclass
class ZooResult:
    images: int
    models: int
    decode_once_s: float
    ceiling_sum_s: float
    per_model_loader_s: float | None

    @property
    def over_ceiling(self) -> float:
        return self.decode_once_s / self.ceiling_sum_s - 1

    @property
    def speedup_over_loader(self) -> float | None:
        return self.per_model_loader_s / self.decode_once_s if self.per_model_loader_s else None


def _jpeg_and_label(index: int) -> tuple[bytes, int]:
    return natural_jpeg(index, mode=IMAGE_MODES[index % len(IMAGE_MODES)]), index % 1000


def make_shards(folder: Path, images: int, shard_size: int) -> list[str]:
    """``images`` synthetic JPEGs in tar shards under ``folder`` (made once, then reused)."""
    folder = folder / f"{images}-{shard_size}"
    done = folder / "done"
    urls = [str(folder / f"bench-{i:05d}.tar") for i in range(-(-images // shard_size))]
    if done.exists():
        return urls
    folder.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        made = pool.map(_jpeg_and_label, range(images), chunksize=32)
        tracked = track(made, total=images, description="generating JPEGs", console=console)
        writer = None
        for index, (jpeg, label) in enumerate(tracked):
            if writer is None or index % shard_size == 0:
                if writer is not None:
                    writer.close()
                writer = wds.TarWriter(urls[index // shard_size])
            writer.write({"__key__": f"{index:08d}", "jpg": jpeg, "cls": label})
        if writer is not None:
            writer.close()
    done.touch()
    return urls


def ceiling(model: LoadedModel, options: EvalOptions, steps: int) -> float:
    """Forward-only img/s on random input of the model's size, after warm-up."""
    runner = model.runner(options)
    images = torch.randn(options.batch_size, *model.config["input_size"], device=options.device)
    for _ in range(2):
        runner.top_k(images)
    start = time.perf_counter()
    for _ in range(steps):
        runner.top_k(images)  # copies the top-5 back: the device has finished
    return steps * len(images) / (time.perf_counter() - start)


def worker_pass(models: list[LoadedModel], urls: list[str], options: EvalOptions) -> float:
    """Seconds for one worker to evaluate every model on every shard (after a warm-up batch)."""
    with ShardEvaluator(models, options) as evaluator:
        evaluator.evaluate(_first_samples(urls[0], options.batch_size))
        start = time.perf_counter()
        for url in urls:
            evaluator.evaluate_shard(url)
        return time.perf_counter() - start


def _first_samples(url: str, count: int):
    from workers.shards import read_shard

    for index, sample in enumerate(read_shard(url)):
        if index == count:
            return
        yield sample


def loader_pass(model: LoadedModel, urls: list[str], options: EvalOptions) -> float:
    """Seconds for a timm validate.py-style pass: a DataLoader of PIL decode + transform."""
    runner = model.runner(options)
    transform = create_transform(**model.config, is_training=False)
    dataset = (
        wds.WebDataset(urls, shardshuffle=False, empty_check=False)
        .decode("pil")
        .to_tuple("jpg", "cls")
        .map_tuple(transform, int)
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=options.batch_size,
        num_workers=min(os.cpu_count() or 1, len(urls)),
        pin_memory=options.cuda,
    )
    start = time.perf_counter()
    for images, _ in loader:
        runner.top_k(images.to(options.device, non_blocking=True))
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> tuple[list[ModelResult], ZooResult]:
    options = EvalOptions.choose(args.device, args.mode, args.batch_size)
    urls = make_shards(Path(args.workdir), args.images, args.shard_size)
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    models = [
        LoadedModel.load(timm_spec(name, random_weights=not args.pretrained)) for name in names
    ]
    results = []
    for model in track(models, description="per model", console=console):
        seconds = worker_pass([model], urls, options)
        results.append(
            ModelResult(
                model.spec.name,
                model.profile.gmacs,
                ceiling(model, options, args.steps),
                args.images / seconds,
                options.batch_size,
            )
        )
    console.print("zoo: decode once for every model")
    together = worker_pass(models, urls, options)
    loader = None
    if not args.skip_loader:
        console.print("zoo: one CPU-decode DataLoader per model")
        loader = sum(loader_pass(model, urls, options) for model in models)
    zoo = ZooResult(
        args.images,
        len(models),
        together,
        sum(args.images / r.ceiling_img_s for r in results),
        loader,
    )
    return results, zoo


def report(results: list[ModelResult], zoo: ZooResult, args, options: EvalOptions) -> None:
    table = Table(
        title=f"{device_type(options.device)}, mode {options.mode}, batch {options.batch_size}"
        f"{', bf16' if options.amp else ''}, {zoo.images} images, "
        f"{'pretrained' if args.pretrained else 'random'} weights"
    )
    for column in ("model", "GMACs", "(a) ceiling img/s", "(b) worker img/s", "(b)/(a)"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for r in results:
        table.add_row(
            r.model,
            f"{r.gmacs:.2f}",
            f"{r.ceiling_img_s:,.0f}",
            f"{r.worker_img_s:,.0f}",
            f"{r.worker_img_s / r.ceiling_img_s:.0%}",
        )
    console.print(table)
    console.print(
        f"(c) zoo of {zoo.models}: decode-once {zoo.decode_once_s:.1f} s; "
        f"sum of ceilings {zoo.ceiling_sum_s:.1f} s ({zoo.over_ceiling:+.0%}); "
        + (
            f"per-model loader {zoo.per_model_loader_s:.1f} s "
            f"({zoo.speedup_over_loader:.1f}x slower)"
            if zoo.per_model_loader_s
            else "per-model loader skipped"
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.worker", description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--mode", default=None, help="fast or reference (default: per device)")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed batches for the ceiling")
    parser.add_argument("--models", default=",".join(ZOO))
    parser.add_argument("--pretrained", action="store_true", help="pretrained weights (cached)")
    parser.add_argument("--skip-loader", action="store_true", help="skip the per-model loader")
    parser.add_argument("--workdir", default=Path(user_cache_dir("saverzoo")) / "bench-shards")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    args = parser.parse_args(argv)
    options = EvalOptions.choose(args.device, args.mode, args.batch_size)
    results, zoo = run(args)
    report(results, zoo, args, options)
    if args.json:
        payload = {
            "device": device_type(options.device),
            "options": asdict(options),
            "models": [asdict(r) for r in results],
            "zoo": {
                **asdict(zoo),
                "over_ceiling": zoo.over_ceiling,
                "speedup_over_loader": zoo.speedup_over_loader,
            },
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
