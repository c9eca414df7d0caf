"""Evaluate models on one shard: decode each JPEG once, run every model, keep top-5.

*Reference* mode is timm's own evaluation: each model's ``create_transform(**data_config)`` on the
PIL image, so predictions equal timm's ``validate.py`` on the same files. Models that share a data
config share the transformed batch. Softmax is taken in float32.

A sample whose JPEG does not decode is recorded (key and reason) and gets class -1 with
probability 0 for every model: it counts as wrong and never exits at a saver, and the prediction
chunk still lines up with the shard's samples.
"""

from __future__ import annotations

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
class ShardResult:
    keys: list[str]
    labels: list[int]
    failures: SampleFailures
    predictions: dict[str, ShardPredictions] = field(default_factory=dict)  # by model name


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
    """Run every model over the samples (reference mode); images are decoded once for all."""
    all_samples = list(samples)
    failures = SampleFailures()
    good = list(decoded(all_samples, failures))
    groups: dict[tuple, list[LoadedModel]] = {}
    for model in models:
        groups.setdefault(model.config_key, []).append(model)
    row_of = {sample.key: row for row, sample in enumerate(all_samples)}
    result = ShardResult([s.key for s in all_samples], [s.label for s in all_samples], failures)
    for model in models:
        model.module.to(device)
        result.predictions[model.spec.name] = ShardPredictions(
            np.full((len(all_samples), TOP_K), UNDECODABLE_CLASS, dtype=np.int64),
            np.zeros((len(all_samples), TOP_K), dtype=np.float32),
        )
    for group in groups.values():
        transform = create_transform(**group[0].config, is_training=False)
        for batch in _batches(good, batch_size):
            images = torch.stack([transform(image) for _, image in batch])
            rows = [row_of[sample.key] for sample, _ in batch]
            for model in group:
                classes, probs = _top_k(model.module, images, device)
                predictions = result.predictions[model.spec.name]
                predictions.classes[rows, : classes.shape[1]] = classes
                predictions.probs[rows, : probs.shape[1]] = probs
    return result


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
