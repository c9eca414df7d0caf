"""The demo's real problem: scikit-learn's handwritten digits, and a zoo trained on them.

1,797 real 8x8 grey images of digits (``sklearn.datasets.load_digits``), split deterministically
(stratified, seed 0) into 60% training and 40% validation, each image made an RGB JPEG of 32x32 as
a photo would be. The zoo is timm architectures of clearly different cost trained for a few
epochs on the CPU from the same JPEGs through the same eval transform the evaluation uses.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from timm.data import create_transform

SIZE = 32
# What every demo model is registered with (``models add``) and evaluated with.
DATA_CONFIG: dict[str, Any] = {
    "input_size": (3, SIZE, SIZE),
    "interpolation": "bilinear",
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
    "crop_pct": 1.0,
    "crop_mode": "center",
}
# From a tiny MobileNetV3 to a ResNet-34: costs at 32x32 differ about 150-fold.
ZOO = (
    "mobilenetv3_small_050",
    "resnet10t",
    "mobilenetv3_large_100",
    "convnext_atto",
    "resnet18",
    "resnet34",
)
EPOCHS = 3
BATCH = 32
LEARNING_RATE = 4e-3
# Training is made reproducible: seeded, deterministic kernels, and a fixed thread count, since a
# float sum split over another number of threads rounds differently. What can still differ is the
# CPU's instruction set (AVX-512 or AVX2 kernels), which moves the last digits of an accuracy.
TRAIN_THREADS = 2


@dataclass(frozen=True)
class Digit:
    key: str
    jpeg: bytes
    label: int


def digits() -> tuple[list[Digit], list[Digit]]:
    """(training, validation) digits as 32x32 RGB JPEGs, the same split every time."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    indices = np.arange(len(data.target))
    train, val = train_test_split(indices, test_size=0.4, random_state=0, stratify=data.target)

    def as_digit(i: int) -> Digit:
        pixels = (data.images[i] / 16 * 255).astype(np.uint8)
        image = Image.fromarray(pixels).resize((SIZE, SIZE), Image.Resampling.BICUBIC)
        image = image.convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=95)
        return Digit(f"digit{i:04d}", buffer.getvalue(), int(data.target[i]))

    return [as_digit(i) for i in sorted(train)], [as_digit(i) for i in sorted(val)]


def write_image_folder(samples: list[Digit], root: Path) -> None:
    """An ImageFolder (one folder per class) that ``datasets make-shards`` reads."""
    for sample in samples:
        folder = root / f"{sample.label}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{sample.key}.jpg"
        if not path.exists():
            path.write_bytes(sample.jpeg)


def _tensors(samples: list[Digit]) -> tuple[torch.Tensor, torch.Tensor]:
    transform = create_transform(**DATA_CONFIG, is_training=False)
    images = torch.stack(
        [transform(Image.open(io.BytesIO(s.jpeg)).convert("RGB")) for s in samples]
    )
    return images, torch.tensor([s.label for s in samples])


def train(
    arch: str,
    samples: list[Digit],
    checkpoint: Path,
    *,
    epochs: int,
    seed: int = 0,
    on_epoch: Callable[[int, float], None] | None = None,
) -> None:
    """Train ``arch`` (10 classes) from scratch and save its weights as safetensors."""
    with reproducible(seed):
        _train(arch, samples, checkpoint, epochs=epochs, seed=seed, on_epoch=on_epoch)


@contextmanager
def reproducible(seed: int) -> Iterator[None]:
    """Seeded, deterministic and on ``TRAIN_THREADS`` threads; the process's state is restored."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(TRAIN_THREADS)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train(
    arch: str,
    samples: list[Digit],
    checkpoint: Path,
    *,
    epochs: int,
    seed: int,
    on_epoch: Callable[[int, float], None] | None,
) -> None:
    model = timm.create_model(arch, pretrained=False, num_classes=10)
    images, labels = _tensors(samples)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.05)
    steps = epochs * -(-len(images) // BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=LEARNING_RATE, total_steps=steps
    )
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(images), generator=generator)
        total = 0.0
        for start in range(0, len(images), BATCH):
            batch = order[start : start + BATCH]
            shifted = _jitter(images[batch], generator)
            loss = loss_fn(model(shifted), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
        if on_epoch:
            on_epoch(epoch + 1, total / len(images))
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    partial = checkpoint.with_suffix(".partial")
    save_file(model.state_dict(), str(partial))
    partial.replace(checkpoint)  # a checkpoint exists only when training finished


def _jitter(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by up to 2 pixels: a little augmentation for 1,078 images."""
    dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=generator))
    return torch.roll(images, shifts=(dy, dx), dims=(2, 3))
