"""Fast-mode preprocessing: decode each JPEG once to a uint8 tensor, transform on the device.

Decoding is libjpeg-turbo through torchvision on the CPU (the same library PIL uses, and the same
pixels, grayscale and CMYK included) or nvJPEG on a CUDA device. A file torchvision cannot decode
(not a JPEG, an unusual JPEG) is decoded by PIL instead; only a file neither can decode is a failed
sample, so fast and reference mode count the same failures.

The geometry is timm's own: ``create_transform(**config, use_prefetcher=True)`` builds the resize
and crop of the eval transform without the tensor conversion, and torchvision applies those same
transform objects to tensors. What differs from reference mode is only the resampling arithmetic
(PIL's integer filters against torchvision's antialiased float filters), a few grey levels at most;
normalisation is ``(x - 255 mean) / (255 std)`` as in timm's prefetcher.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from timm.data import create_transform
from timm.data.transforms import CenterCropOrPad, MaybePILToTensor
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import CenterCrop, Compose

from workers.device import raise_if_device_failed
from workers.shards import decode_rgb

# torchvision 0.29 announces that its image decoders move to torchcodec; they are still the ones
# with nvJPEG batch decoding that this module needs, so the notice is not repeated per image.
warnings.filterwarnings(
    "ignore", "The image decoding and encoding capabilities", DeprecationWarning
)


def _as_tensor(jpeg: bytes) -> torch.Tensor:
    # frombuffer needs a writable buffer to stay warning-free; the copy is one small memcpy.
    return torch.frombuffer(bytearray(jpeg), dtype=torch.uint8)


def _pil_decode(jpeg: bytes) -> torch.Tensor:
    """PIL's decode as a CHW uint8 tensor (raises on a file PIL cannot decode either)."""
    image = decode_rgb(jpeg)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


def decode_cpu(jpeg: bytes) -> torch.Tensor:
    """A CHW uint8 RGB tensor; raises when neither torchvision nor PIL can decode the bytes."""
    (image,) = decode_batch([jpeg], "cpu")
    if isinstance(image, Exception):
        raise image
    return image


def decode_batch(jpegs: Sequence[bytes], device: str) -> list[torch.Tensor | Exception]:
    """Each JPEG as a CHW uint8 RGB tensor on ``device``, or the error that stopped it, in order.

    torchvision decodes the list in one call (nvJPEG's batched decode on a GPU); a CMYK JPEG
    goes to PIL on a GPU, as torchvision leaves nvJPEG's CMYK conversion off. An out-of-memory
    or fatal device error is raised, never taken for a bad image.
    """
    to_pil = {i for i, jpeg in enumerate(jpegs) if device != "cpu" and jpeg_channels(jpeg) == 4}
    decoded = iter(_decode_halving([j for i, j in enumerate(jpegs) if i not in to_pil], device))
    return [
        _decoded_by_pil(jpeg, device) if i in to_pil else next(decoded)
        for i, jpeg in enumerate(jpegs)
    ]


def _decode_halving(jpegs: Sequence[bytes], device: str) -> list[torch.Tensor | Exception]:
    """A list torchvision refuses is split in halves, so one refused image costs a few more
    calls rather than a call per image; an image refused alone is decoded by PIL on the CPU,
    and one PIL cannot decode either is a bad sample."""
    if not jpegs:
        return []
    try:
        tensors = [_as_tensor(jpeg) for jpeg in jpegs]
        return list(decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device))
    except Exception as error:  # noqa: BLE001 - classified: device failures go up
        raise_if_device_failed("decoding JPEGs", error)
    if len(jpegs) == 1:
        return [_decoded_by_pil(jpegs[0], device)]
    half = len(jpegs) // 2
    return _decode_halving(jpegs[:half], device) + _decode_halving(jpegs[half:], device)


# Start-of-frame markers (baseline, progressive, lossless, arithmetic): 0xC0-0xCF but for
# DHT (0xC4), JPG (0xC8) and DAC (0xCC), which share the range.
_START_OF_FRAME = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_channels(jpeg: bytes) -> int | None:
    """The number of components a JPEG's frame header declares (1 grey, 3 colour, 4 CMYK), or
    None when the bytes hold no readable frame header."""
    at = 2 if jpeg[:2] == b"\xff\xd8" else len(jpeg)
    while at + 4 <= len(jpeg):
        if jpeg[at] != 0xFF:
            return None
        marker, length = jpeg[at + 1], int.from_bytes(jpeg[at + 2 : at + 4], "big")
        if marker in _START_OF_FRAME:
            return jpeg[at + 9] if at + 9 < len(jpeg) else None
        at += 2 + length
    return None


def _decoded_by_pil(jpeg: bytes, device: str) -> torch.Tensor | Exception:
    try:
        return _pil_decode(jpeg).to(device)
    except Exception as error:  # noqa: BLE001 - any decoder error marks the sample bad
        raise_if_device_failed("decoding JPEGs", error)
        return error


class _CenterCropOrPadTensor:
    """timm's ``CenterCropOrPad`` for tensors: torchvision pads tensors with one value only."""

    def __init__(self, size: tuple[int, int], fill: list[int]) -> None:
        self.size, self.fill = size, fill

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``images``: (..., C, H, W); padded with ``fill`` to at least ``size``, then cropped."""
        height, width = self.size
        *lead, channels, h, w = images.shape
        fill = torch.tensor(self.fill, dtype=images.dtype, device=images.device)
        canvas = fill.view(-1, 1, 1).expand(*lead, channels, max(h, height), max(w, width))
        canvas = canvas.clone()
        top, left = (canvas.shape[-2] - h) // 2, (canvas.shape[-1] - w) // 2
        canvas[..., top : top + h, left : left + w] = images
        return CenterCrop(self.size)(canvas)


def geometry(config: dict) -> Compose:
    """The resize and crop of timm's eval transform for ``config``, applicable to tensors."""
    steps = create_transform(**config, is_training=False, use_prefetcher=True).transforms
    steps = [_tensor_step(step) for step in steps]
    return Compose([step for step in steps if step is not None])


def _tensor_step(step):
    if isinstance(step, CenterCropOrPad):
        fill = list(step.fill) if isinstance(step.fill, tuple) else [step.fill]
        return _CenterCropOrPadTensor(tuple(step.size), fill)
    if isinstance(step, MaybePILToTensor):
        return None  # the images are tensors already
    return step  # torchvision's and timm's resizes and crops take tensors


# CUDA's antialiased resize refuses to shrink an image more than about 47 times (an image over
# about 12,000 pixels for a 224-pixel model); the CPU's has no such limit. An image shrunk more
# than this is resized on the host, where the arithmetic is the same.
MAX_DEVICE_DOWNSCALE = 32


class DeviceTransform:
    """Decoded uint8 images (any sizes, on the device) to one normalised float batch."""

    def __init__(self, config: dict, device: str) -> None:
        self.geometry = geometry(config)
        self.device = device
        self.largest_on_device = MAX_DEVICE_DOWNSCALE * max(config["input_size"][1:])
        self.mean = torch.tensor(config["mean"], device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(config["std"], device=device).view(1, -1, 1, 1) * 255

    def resizes_on_host(self, shape: Sequence[int]) -> bool:
        """Whether images of ``shape`` (..., H, W) are resized on the host, not the device."""
        return max(shape[-2:]) > self.largest_on_device

    def __call__(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        # Images of one size are resized together: one kernel launch instead of one per image
        # (most ImageNet photos share a handful of sizes).
        by_size: dict[tuple, list[int]] = {}
        for index, image in enumerate(images):
            by_size.setdefault(tuple(image.shape), []).append(index)
        out: dict[int, torch.Tensor] = {}
        for shape, indices in by_size.items():
            same_size = torch.stack([images[i] for i in indices])
            if self.resizes_on_host(shape):
                same_size = same_size.cpu()
            resized = self.geometry(same_size).to(self.device)
            for i, image in zip(indices, resized, strict=True):
                out[i] = image
        stacked = torch.stack([out[i] for i in range(len(images))])
        return (stacked.float() - self.mean) / self.std
