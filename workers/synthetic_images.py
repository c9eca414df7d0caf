"""Natural-looking synthetic JPEGs for benchmarks and tests (no downloads).

Real photographs have most of their energy at low spatial frequencies, smooth regions with
edges between them, and some fine texture; JPEG sizes and decode times depend on exactly that.
An image here is a few octaves of smooth noise (a 1/f-like spectrum), a handful of flat-shaded
shapes with hard edges, and mild grain, so that at 500x375 and quality 90 it weighs about 60 KB
like an ImageNet validation JPEG.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

IMAGENET_LIKE_SIZE = (500, 375)  # width, height: the most common ImageNet validation size


def natural_image(seed: int, size: tuple[int, int] = IMAGENET_LIKE_SIZE) -> Image.Image:
    """An RGB image of ``size`` (width, height), the same for the same seed."""
    rng = np.random.default_rng(seed)
    width, height = size
    canvas = np.zeros((height, width, 3), np.float32)
    for octave in range(4):  # coarse blobs first, finer texture with less weight
        cells = 3 * 2**octave
        noise = rng.standard_normal((cells, cells, 3), dtype=np.float32)
        layer = Image.fromarray(_to_uint8(noise)).resize(size, Image.Resampling.BICUBIC)
        canvas += (np.asarray(layer, np.float32) - 128) * 0.6**octave
    canvas += rng.uniform(60, 190, size=3).astype(np.float32)  # a dominant colour
    image = Image.fromarray(_clip(canvas))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(3, 8)):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        w, h = rng.integers(width // 10, width // 2), rng.integers(height // 10, height // 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((int(x0), int(y0), int(x0 + w), int(y0 + h)), fill=colour)
    grain = rng.standard_normal((height, width, 3), dtype=np.float32) * 12
    return Image.fromarray(_clip(np.asarray(image, np.float32) + grain))


def natural_jpeg(
    seed: int, size: tuple[int, int] = IMAGENET_LIKE_SIZE, mode: str = "RGB", quality: int = 90
) -> bytes:
    """``natural_image`` encoded as a JPEG in ``mode`` (RGB, L or CMYK, as ImageNet has all)."""
    buffer = io.BytesIO()
    natural_image(seed, size).convert(mode).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _to_uint8(values: np.ndarray) -> np.ndarray:
    low, high = values.min(), values.max()
    return ((values - low) / max(high - low, 1e-6) * 255).astype(np.uint8)


def _clip(values: np.ndarray) -> np.ndarray:
    return np.clip(values, 0, 255).astype(np.uint8)
