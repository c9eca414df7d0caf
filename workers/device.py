"""The device a worker computes on, and what its failures mean.

Every call that only CUDA has (pinned memory, synchronising, memory statistics, emptying the
cache, streams, the GPU's name) lives here, behind one ``Device`` whose CPU form does nothing for
them. The evaluation calls them at the same places on both, so the order of the calls runs in
every CPU test; only the few lines marked ``# CUDA only`` below need a GPU to run.

Failures are classified in one place (``classify``), for decoding, transforming and the forward
pass alike:
- *out of memory* (the caching allocator's ``OutOfMemoryError``, a kernel's or a library's failed
  allocation): retry the same work in smaller pieces;
- *fatal*: any other error of the CUDA runtime. Most of them (an illegal memory access or
  instruction, a device-side assert, an ECC error) leave the process's CUDA context unusable, and
  telling the sticky ones apart from the rest by message is guesswork, so none is retried: the
  process ends, and nothing touches the device after it;
- *other*: an error of this input or this model (a bad image, a model that cannot run).
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, TypeVar

import torch
from timm.utils import decay_batch_step

from cluster.errors import ServiceError

logger = logging.getLogger(__name__)
R = TypeVar("R")

CUDA_OUT_OF_MEMORY = 2  # cudaErrorMemoryAllocation: a kernel or library could not allocate
# A failed allocation inside cuBLAS or cuDNN reaches Python as a plain RuntimeError.
OUT_OF_MEMORY_MESSAGES = (
    "out of memory",
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_NOT_ENOUGH_WORKSPACE",
)
# cuBLAS and cuDNN refusing a shape or a type arrive as "CUDA error: CUBLAS_STATUS_NOT_SUPPORTED
# when calling ...": the model's own failure, the context intact (their allocation failures are
# out of memory, above).
LIBRARY_REFUSALS = (
    "CUBLAS_STATUS_NOT_SUPPORTED",
    "CUBLAS_STATUS_INVALID_VALUE",
    "CUDNN_STATUS_NOT_SUPPORTED",
    "CUDNN_STATUS_BAD_PARAM",
)
# The CUDA runtime's errors that arrive as RuntimeError rather than AcceleratorError: from
# extensions and older code paths, and inside torchvision's decoder messages ("decode_jpegs_cuda,
# ...: Error while decoding JPEG images: ... CUDA error: ...", "Failed to synchronize CUDA
# stream: 700"), where they follow the decoder's own words.
CUDA_ERROR_MARKERS = (
    "CUDA error",
    "CUDA driver error",
    "cuda runtime error",
    "Failed to synchronize CUDA stream",
)


class Failure(enum.Enum):
    OUT_OF_MEMORY = "out of memory"
    FATAL = "fatal"
    OTHER = "other"


def classify(error: BaseException) -> Failure:
    """What an error raised while working on the device means (see the module's docstring).

    The error's causes count too: a wrapper (torch.compile's, a library's) keeps the device's
    error as its ``__cause__``."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        failure = _classify_one(current)
        if failure is not Failure.OTHER:
            return failure
        current = current.__cause__
    return Failure.OTHER


def _classify_one(error: BaseException) -> Failure:
    message = str(error)
    if isinstance(error, torch.OutOfMemoryError):
        return Failure.OUT_OF_MEMORY
    if isinstance(error, torch.AcceleratorError):
        if getattr(error, "error_code", None) == CUDA_OUT_OF_MEMORY or "out of memory" in message:
            return Failure.OUT_OF_MEMORY
        return Failure.FATAL
    if isinstance(error, RuntimeError):
        if any(marker in message for marker in OUT_OF_MEMORY_MESSAGES):
            return Failure.OUT_OF_MEMORY
        if any(marker in message for marker in LIBRARY_REFUSALS):
            return Failure.OTHER
        if any(marker in message for marker in CUDA_ERROR_MARKERS):
            return Failure.FATAL
    return Failure.OTHER


class FatalDeviceError(ServiceError):
    """The GPU is in an unusable state; end the process (stored results are kept)."""


def fatal(what: str, error: BaseException) -> FatalDeviceError:
    first_line = (str(error).splitlines() or [type(error).__name__])[0]
    return FatalDeviceError(
        f"{what}: the GPU failed ({first_line}); this process must end, results stored so far "
        "are kept"
    )


def raise_if_fatal(what: str, error: BaseException) -> Failure:
    """Raise ``FatalDeviceError`` from ``error`` if it is fatal; else the error's class."""
    failure = classify(error)
    if failure is Failure.FATAL:
        raise fatal(what, error) from error
    return failure


def raise_if_device_failed(what: str, error: BaseException) -> None:
    """Re-raise a fatal error as ``FatalDeviceError`` and an out-of-memory error as it is, so
    neither is ever taken for a bad image or a broken model."""
    if raise_if_fatal(what, error) is Failure.OUT_OF_MEMORY:
        raise error


@cache
def device_of(name: str) -> Device:
    """The process's one ``Device`` of that name (it keeps the side stream of ``ahead``)."""
    return Device(name)


@dataclass
class Device:
    """Where tensors live and models run: ``cpu``, ``cuda`` or ``cuda:N``."""

    name: str = "cpu"
    _side_stream: torch.cuda.Stream | None = field(default=None, repr=False)

    @property
    def is_cuda(self) -> bool:
        return self.name.startswith("cuda")

    @property
    def type(self) -> str:
        """The device type torch's autocast takes: "cpu" or "cuda"."""
        return "cuda" if self.is_cuda else "cpu"

    def label(self) -> str:
        """What a measurement names its device by: "cpu" or the GPU's model name."""
        return torch.cuda.get_device_name(self.name) if self.is_cuda else "cpu"  # CUDA only

    def total_memory(self) -> int:
        """Bytes of the device's memory (0 for the CPU: its budget is set apart)."""
        if not self.is_cuda:
            return 0
        return torch.cuda.get_device_properties(torch.device(self.name)).total_memory  # CUDA only

    # ----- moving tensors ------------------------------------------------------------------------
    def staged(self, tensor: torch.Tensor) -> torch.Tensor:
        """A host tensor made ready for an asynchronous copy to the device: pinned when the
        device is a GPU. A tensor that is not in host memory is never pinned (torch refuses)."""
        if not self.is_cuda or tensor.device.type != "cpu":
            return tensor
        return tensor.pin_memory()  # CUDA only

    def put(self, tensor: torch.Tensor) -> torch.Tensor:
        """The tensor on this device (itself if it is there); a copy from pinned memory does not
        wait for the device."""
        pinned = self.is_cuda and tensor.device.type == "cpu" and tensor.is_pinned()
        return tensor.to(self.name, non_blocking=pinned)

    # ----- timing and memory ---------------------------------------------------------------------
    def synchronize(self) -> None:
        """Wait for the work of this thread's current stream: not for the other thread's
        decoding on its side stream, which a timing must not include."""
        if self.is_cuda:
            torch.cuda.current_stream(torch.device(self.name)).synchronize()  # CUDA only

    def allocated(self) -> int:
        """Bytes of device memory held by tensors now (0 on the CPU)."""
        return torch.cuda.memory_allocated(self.name) if self.is_cuda else 0  # CUDA only

    def reset_peak(self) -> None:
        if self.is_cuda:
            torch.cuda.reset_peak_memory_stats(self.name)  # CUDA only

    def peak(self) -> int:
        """Most bytes held by tensors since ``reset_peak`` (0 on the CPU)."""
        return torch.cuda.max_memory_allocated(self.name) if self.is_cuda else 0  # CUDA only

    def release_cached(self) -> None:
        """Hand the allocator's cached blocks back after an out-of-memory error."""
        if self.is_cuda:
            torch.cuda.empty_cache()  # CUDA only

    # ----- working ahead in another thread ----------------------------------------------------
    @contextlib.contextmanager
    def ahead(self) -> Iterator[None]:
        """Device work of the prefetch thread goes to a stream of its own, so it overlaps the
        forward passes of the stream that computes (one side stream per device)."""
        if not self.is_cuda:
            yield
            return
        if self._side_stream is None:
            self._side_stream = torch.cuda.Stream(torch.device(self.name))  # CUDA only
        with torch.cuda.stream(self._side_stream):  # CUDA only
            yield

    def mark_ready(self) -> torch.cuda.Event | None:
        """An event after the work queued so far in ``ahead`` (None on the CPU)."""
        if not self.is_cuda or self._side_stream is None:
            return None
        event = torch.cuda.Event()  # CUDA only
        event.record(self._side_stream)
        return event

    def receive(self, ready: torch.cuda.Event | None, tensors: Sequence[torch.Tensor]) -> None:
        """Before the computing stream reads ``tensors`` made ahead: it waits for their work,
        and the allocator keeps their memory until the computing stream is done with them."""
        if ready is None:
            return
        stream = torch.cuda.current_stream(torch.device(self.name))  # CUDA only
        stream.wait_event(ready)
        for tensor in tensors:
            if tensor.device.type == "cuda":
                tensor.record_stream(stream)


class OutOfMemoryAtOne(RuntimeError):
    """Even one item at a time does not fit in the device's memory."""


class ShrinkingBatch:
    """A batch size that shrinks after out-of-memory errors (timm's ``decay_batch_step``) and
    stays small for the work that follows: the next batches, and the next shards."""

    def __init__(self, size: int, device: Device) -> None:
        self.size, self.device = size, device

    def map(self, work: Callable[[Any], R], items: Sequence | torch.Tensor, what: str) -> list[R]:
        """``work`` over consecutive pieces of ``items`` of at most ``size`` each.

        Out of memory: the piece is tried again smaller. A fatal device error is raised as
        ``FatalDeviceError``; any other error is raised as it is.
        """
        results: list[R] = []
        start = 0
        while start < len(items):
            piece = items[start : start + self.size]
            try:
                results.append(work(piece))
            except Exception as error:
                if raise_if_fatal(what, error) is not Failure.OUT_OF_MEMORY:
                    raise
            else:
                start += len(piece)
                continue
            # Shrunk outside the handler: the error's frames, which hold the failed piece's
            # tensors, are gone before the allocator's cache is emptied.
            self.shrink(what)
        return results

    def shrink(self, what: str) -> None:
        smaller = decay_batch_step(self.size)
        if smaller < 1:
            raise OutOfMemoryAtOne(f"{what}: out of device memory even at batch size 1")
        logger.warning(
            "%s: out of device memory at batch size %d, now %d", what, self.size, smaller
        )
        self.size = smaller
        self.device.release_cached()
