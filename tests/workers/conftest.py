"""Fixtures of the worker tests."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from tests.factories import image_folder, saverzoo
from tests.workers.zoo import MODELS


@pytest.fixture
def zoo_dataset(use_database, tmp_path):
    """A registered dataset of real JPEGs and three seeded checkpoints registered as models."""
    made = image_folder(tmp_path / "src", classes=3, per_class=4)
    result = saverzoo(
        "datasets",
        "make-shards",
        tmp_path / "src",
        "--out",
        tmp_path / "shards",
        "--name",
        "tiny",
        "--shard-size",
        "5",
    )
    assert result.exit_code == 0, result.output
    for seed, (name, (arch, options)) in enumerate(MODELS.items()):
        torch.manual_seed(seed)
        model = timm.create_model(arch, pretrained=False)
        path = tmp_path / f"{name}.safetensors"
        save_file(model.state_dict(), str(path))
        added = saverzoo("models", "add", name, "--arch", arch, "--checkpoint", path, *options)
        assert added.exit_code == 0, added.output
    return made, tmp_path
