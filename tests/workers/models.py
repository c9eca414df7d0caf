"""Models and samples the worker tests run: seeded random weights, injected failures."""

from __future__ import annotations

import torch

from workers.evaluate import LoadedModel
from workers.shards import Sample
from workers.spec import ModelSpec
from workers.synthetic_images import natural_jpeg

MODES = ("RGB", "L", "CMYK")


def natural_samples(count: int) -> list[Sample]:
    """ImageNet-like JPEGs of varied sizes, a third grayscale and a third CMYK."""
    return [
        Sample(f"{i:04d}", natural_jpeg(i, (500 - 7 * i, 375 + 3 * i), MODES[i % 3]), i % 10, "")
        for i in range(count)
    ]


def seeded(arch: str, seed: int, **overrides) -> LoadedModel:
    torch.manual_seed(seed)
    return LoadedModel.load(ModelSpec(arch, arch, "random", data_overrides=overrides))


class FailsAbove(torch.nn.Module):
    """A real model that raises ``error`` on batches larger than ``limit`` (fault injection)."""

    def __init__(self, inner: torch.nn.Module, limit: int, error: Exception) -> None:
        super().__init__()
        self.inner, self.limit, self.error = inner, limit, error
        self.raised = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if len(images) > self.limit:
            self.raised += 1
            raise self.error
        return self.inner(images)


def wrapped(model: LoadedModel, name: str, limit: int, error: Exception) -> LoadedModel:
    spec = ModelSpec(name, model.spec.arch, "random")
    return LoadedModel(spec, FailsAbove(model.module, limit, error), model.config, model.profile)
