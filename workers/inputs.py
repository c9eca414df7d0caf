"""Model inputs from a batch of samples: each JPEG decoded once, one input per data config.

``prepare`` runs in the prefetch thread, a batch ahead of the forward passes: it decodes (PIL and
timm's transforms in reference mode; torchvision in fast mode, with nvJPEG on a GPU, on a stream
of its own) and stages host tensors for an asynchronous copy. ``batch`` runs where the models run:
it waits for that batch's decoding and builds one data config's input on the device, just before
that config's models need it, so only one config's float batch is held at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
from timm.data import create_transform

from workers.device import Device, OutOfMemoryAtOne, ShrinkingBatch
from workers.preprocess import DeviceTransform, decode_batch
from workers.shards import DECODE_ERRORS, Sample, decode_rgb


@dataclass
class PreparedBatch:
    """One batch of samples, decoded ahead of compute."""

    samples: list[Sample]
    images: list  # per sample: a decoded image, or the exception that stopped its decoding
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)  # reference: per config
    ready: torch.cuda.Event | None = None  # after the decoding on a GPU's side stream

    @property
    def decoded_rows(self) -> list[int]:
        return [i for i, image in enumerate(self.images) if not isinstance(image, Exception)]


def _pil_image_or_error(jpeg: bytes):
    try:
        return decode_rgb(jpeg)
    except DECODE_ERRORS as error:
        return error


class InputBuilder:
    """Decodes each batch once and builds every data config's input from it."""

    def __init__(
        self, configs: dict[str, dict], mode: str, device: Device, batch_size: int
    ) -> None:
        self.mode, self.device = mode, device
        # The CPUs this process may use (a Ray worker's share, set by the actor), not the node's.
        self.threads = torch.get_num_threads()
        self.pool = ThreadPoolExecutor(max_workers=self.threads)
        if mode == "reference":
            self.transforms = {
                key: create_transform(**config, is_training=False)
                for key, config in configs.items()
            }
        else:
            self.transforms = {
                key: DeviceTransform(config, device.name) for key, config in configs.items()
            }
        self.decode_pieces = ShrinkingBatch(batch_size, device)
        self.transform_pieces = {key: ShrinkingBatch(batch_size, device) for key in configs}

    def prepare(self, samples: list[Sample]) -> PreparedBatch:
        """Decode (and in reference mode transform) a batch; the prefetch thread's part."""
        jpegs = [sample.jpeg for sample in samples]
        if self.mode == "reference":
            images = list(self.pool.map(_pil_image_or_error, jpegs))
            prepared = PreparedBatch(samples, images)
            good = [images[i] for i in prepared.decoded_rows]
            for key, transform in self.transforms.items():
                if good:
                    stacked = torch.stack([transform(image) for image in good])
                    prepared.inputs[key] = self.device.staged(stacked)
            return prepared
        if self.device.is_cuda:
            with self.device.ahead():  # nvJPEG on the side stream: overlaps the forward passes
                images = self._decode(jpegs)
                return PreparedBatch(samples, images, ready=self.device.mark_ready())
        # On the CPU, torchvision decodes a list one image at a time: the threads share it.
        share = -(-len(jpegs) // self.threads)
        pieces = [jpegs[i : i + share] for i in range(0, len(jpegs), share)]
        images = [image for part in self.pool.map(self._decode, pieces) for image in part]
        return PreparedBatch(samples, images)

    def _decode(self, jpegs: Sequence[bytes]) -> list:
        try:
            parts = self.decode_pieces.map(self._decode_piece, jpegs, "decoding")
        except OutOfMemoryAtOne:  # the device is full: the host decodes, the images stay good
            return decode_batch(jpegs, "cpu")
        return [image for part in parts for image in part]

    def _decode_piece(self, jpegs: Sequence[bytes]) -> list:
        return decode_batch(jpegs, self.device.name)

    def receive(self, prepared: PreparedBatch) -> None:
        """Where the models run: wait for the batch's decoding on the device."""
        good = [prepared.images[i] for i in prepared.decoded_rows]
        self.device.receive(prepared.ready, [t for t in good if isinstance(t, torch.Tensor)])

    def batch(self, prepared: PreparedBatch, key: str) -> torch.Tensor:
        """The input of config ``key`` for the decoded samples, on the device (after
        ``receive``). Out of memory, it is built in smaller pieces; the piece size is kept."""
        if self.mode == "reference":
            return self.device.put(prepared.inputs[key])
        good = [self.device.put(prepared.images[i]) for i in prepared.decoded_rows]
        transform = self.transforms[key]
        pieces = self.transform_pieces[key].map(transform, good, f"preprocessing for {key}")
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)

    def close(self) -> None:
        self.pool.shutdown()
