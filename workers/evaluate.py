"""Evaluate models on one shard: decode each JPEG once, run every model, keep top-5.

*Reference* mode is timm's own evaluation: each model's ``create_transform(**data_config)`` on the
PIL image, so predictions equal timm's ``validate.py`` on the same files. Models that share a data
config share the transformed batch. Softmax is taken in float32.

A sample whose JPEG does not decode is recorded (key and reason) and gets class -1 with
probability 0 for every model: it counts as wrong and never exits at a saver, and the prediction
chunk still lines up with the shard's samples.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from timm.data import create_transform

from workers.models import ModelSpec, build, data_config
from workers.profile import Profile, profile
from workers.shards import Sample, SampleFailures, decoded, read_shard

TOP_K = 5
UNDECODABLE_CLASS = -1


@dataclass
class LoadedModel:
    spec: ModelSpec
    module: torch.nn.Module
    config: dict
    profile: Profile

    @classmethod
    def load(cls, spec: ModelSpec) -> LoadedModel:
        module = build(spec)
        config = data_config(spec, module)
        return cls(spec, module, config, profile(module, tuple(config["input_size"])))

    @property
    def config_key(self) -> tuple:
        return tuple(sorted((k, str(v)) for k, v in self.config.items()))


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

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


@dataclass
class ShardResult:
    keys: list[str]
    labels: list[int]
    failures: SampleFailures
    predictions: dict[str, ShardPredictions] = field(default_factory=dict)  # by model name
    throughput: dict[str, Throughput] = field(default_factory=dict)  # by model name


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@torch.no_grad()
def _top_k(module: torch.nn.Module, images: torch.Tensor, device: str) -> tuple:
    logits = module(images.to(device))
    probs = torch.softmax(logits.float(), dim=-1)
    top = probs.topk(min(TOP_K, probs.shape[-1]), dim=-1)
    return top.indices.cpu().numpy(), top.values.cpu().numpy().astype(np.float32)


def evaluate_samples(
    models: Sequence[LoadedModel],
    samples: Iterable[Sample],
    *,
    batch_size: int = 64,
    device: str = "cpu",
) -> ShardResult:
    """Run every model over the samples (reference mode), one batch of samples at a time.

    Each batch is decoded once; each group of models that share a data config transforms it once.
    """
    groups: dict[tuple, list[LoadedModel]] = {}
    for model in models:
        groups.setdefault(model.config_key, []).append(model)
        model.module.to(device)
    transforms = {
        key: create_transform(**g[0].config, is_training=False) for key, g in groups.items()
    }
    result = ShardResult([], [], SampleFailures())
    outputs: dict[str, list[tuple]] = {model.spec.name: [] for model in models}
    for batch in _batches(samples, batch_size):
        result.keys.extend(sample.key for sample in batch)
        result.labels.extend(sample.label for sample in batch)
        good = list(decoded(batch, result.failures))
        for name in outputs:  # undecodable rows: class -1, probability 0
            outputs[name].append(_blank(len(batch)))
        if not good:
            continue
        rows = [i for i, sample in enumerate(batch) if sample.key not in result.failures.reasons]
        for key, group in groups.items():
            images = torch.stack([transforms[key](image) for _, image in good])
            for model in group:
                classes, probs = _timed_top_k(model, images, device, result)
                blank_classes, blank_probs = outputs[model.spec.name][-1]
                blank_classes[rows, : classes.shape[1]] = classes
                blank_probs[rows, : probs.shape[1]] = probs
    for name, parts in outputs.items():
        result.predictions[name] = ShardPredictions(
            np.concatenate([c for c, _ in parts]) if parts else np.empty((0, TOP_K), np.int64),
            np.concatenate([p for _, p in parts]) if parts else np.empty((0, TOP_K), np.float32),
        )
    return result


def _timed_top_k(model: LoadedModel, images: torch.Tensor, device: str, result: ShardResult):
    """Top-k of one batch, adding the forward pass to the model's measured throughput."""
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    classes, probs = _top_k(model.module, images, device)  # copies back: the device is done
    elapsed = time.perf_counter() - start
    measured = result.throughput.setdefault(model.spec.name, Throughput())
    measured.images += len(images)
    measured.seconds += elapsed
    if cuda:
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        measured.peak_memory_mb = max(peak, measured.peak_memory_mb or 0.0)
    return classes, probs


def device_type(device: str) -> str:
    """What a measurement names its device by: "cpu" or the GPU's model name."""
    return torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"


def _blank(rows: int) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.full((rows, TOP_K), UNDECODABLE_CLASS, dtype=np.int64),
        np.zeros((rows, TOP_K), dtype=np.float32),
    )


def evaluate_shard(
    models: Sequence[LoadedModel],
    url: str,
    *,
    expected_samples: int | None = None,
    batch_size: int = 64,
    device: str = "cpu",
) -> ShardResult:
    """Read one shard and evaluate every model on it."""
    samples = read_shard(url, expected_samples=expected_samples)
    return evaluate_samples(models, samples, batch_size=batch_size, device=device)
