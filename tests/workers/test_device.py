"""Failures on the device are classified in one place; the device's own calls go where they may."""

from __future__ import annotations

import pytest
import torch

from workers.device import (
    Device,
    Failure,
    FatalDeviceError,
    OutOfMemoryAtOne,
    ShrinkingBatch,
    classify,
)

OUT_OF_MEMORY = [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
    RuntimeError("cuDNN error: CUDNN_STATUS_NOT_ENOUGH_WORKSPACE"),
    torch.AcceleratorError("CUDA error: out of memory"),
]
FATAL = [
    torch.AcceleratorError("CUDA error: an illegal memory access was encountered"),
    torch.AcceleratorError("CUDA error: an illegal instruction was encountered"),
    torch.AcceleratorError("CUDA error: hardware stack error"),
    torch.AcceleratorError("CUDA error: invalid program counter"),
    torch.AcceleratorError("CUDA error: uncorrectable ECC error encountered"),
    torch.AcceleratorError("CUDA error: device-side assert triggered"),
    torch.AcceleratorError("CUDA error: an error this list never heard of"),
    RuntimeError("CUDA error: misaligned address"),  # raised as RuntimeError by an extension
    RuntimeError("CUDA driver error: unspecified launch failure"),
    # torchvision's GPU decoder puts the runtime's words after its own
    RuntimeError(
        "decode_jpegs_cuda, decode_jpegs_cuda.cpp:212, Failed to synchronize CUDA stream: 700"
    ),
    RuntimeError(
        "decode_jpegs_cuda: Error while decoding JPEG images: CUDA error: an illegal memory access"
    ),
]
OTHER = [
    RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x10 and 12x3)"),
    RuntimeError("CUDA error: CUBLAS_STATUS_NOT_SUPPORTED when calling `cublasGemmEx(...)`"),
    RuntimeError("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error may appear if you passed"),
    RuntimeError("Unsupported marker type 0xa8"),  # a JPEG libjpeg refuses
    RuntimeError(
        "decode_jpegs_cuda: Error while decoding JPEG images: Failed to get image info: 6"
    ),
    ValueError("Expected a non empty 1-dimensional tensor"),  # a zero-byte JPEG on the GPU
    OSError("image file is truncated"),
]


@pytest.mark.parametrize("error", OUT_OF_MEMORY, ids=str)
def test_allocation_failures_of_torch_cublas_and_cudnn_are_out_of_memory(error):
    assert classify(error) is Failure.OUT_OF_MEMORY


@pytest.mark.parametrize("error", FATAL, ids=str)
def test_every_other_error_of_the_cuda_runtime_is_fatal(error):
    assert classify(error) is Failure.FATAL


@pytest.mark.parametrize("error", OTHER, ids=str)
def test_errors_of_an_input_or_a_model_are_neither(error):
    assert classify(error) is Failure.OTHER


def test_a_device_error_wrapped_by_another_error_is_still_a_device_error():
    def wrapped(cause: BaseException) -> RuntimeError:
        try:
            raise RuntimeError("backend compiler failed") from cause
        except RuntimeError as error:
            return error

    assert classify(wrapped(torch.OutOfMemoryError("CUDA out of memory"))) is Failure.OUT_OF_MEMORY
    assert classify(wrapped(torch.AcceleratorError("CUDA error: ECC"))) is Failure.FATAL
    assert classify(wrapped(ValueError("a shape"))) is Failure.OTHER


def test_a_tensor_already_on_a_device_is_never_pinned():
    """Pinning a device tensor raises in torch ("only dense CPU tensors can be pinned"): a
    meta tensor stands in for a CUDA one, as this machine has no GPU."""
    on_device = torch.empty(4, 3, 8, 8, dtype=torch.uint8, device="meta")
    with pytest.raises(RuntimeError, match="only dense CPU tensors can be pinned"):
        on_device.pin_memory()  # what the worker once did with nvJPEG's output

    assert Device("cuda").staged(on_device) is on_device
    host = torch.zeros(2)
    assert Device("cpu").staged(host) is host  # nothing to pin for a CPU worker


def test_the_cpu_device_does_nothing_for_the_calls_only_cuda_has():
    cpu = Device("cpu")
    cpu.synchronize()
    cpu.reset_peak()
    cpu.release_cached()
    assert (cpu.allocated(), cpu.peak(), cpu.total_memory(), cpu.label()) == (0, 0, 0, "cpu")
    with cpu.ahead():
        ready = cpu.mark_ready()
    assert ready is None
    cpu.receive(ready, [torch.zeros(1)])
    assert (cpu.type, Device("cuda:1").type) == ("cpu", "cuda")


class RecordingDevice(Device):
    """A CPU device that records the cache releases a GPU's would do."""

    def __init__(self) -> None:
        super().__init__("cpu")
        self.released = 0

    def release_cached(self) -> None:
        self.released += 1


def failing_above(limit: int, error: Exception):
    calls = []

    def work(piece):
        calls.append(len(piece))
        if len(piece) > limit:
            raise error
        return list(piece)

    return work, calls


def test_out_of_memory_retries_smaller_and_the_smaller_size_stays():
    device = RecordingDevice()
    batch = ShrinkingBatch(8, device)
    work, calls = failing_above(4, torch.OutOfMemoryError("CUDA out of memory"))

    pieces = batch.map(work, list(range(10)), "model")
    assert [x for piece in pieces for x in piece] == list(range(10))
    assert batch.size == 4 and device.released == 2  # 8, then timm's decay: 6, then 4
    calls.clear()
    batch.map(work, list(range(10)), "model")
    assert calls == [4, 4, 2]  # no out-of-memory error again


def test_out_of_memory_at_batch_size_one_is_its_own_error():
    work, _ = failing_above(0, torch.OutOfMemoryError("CUDA out of memory"))
    with pytest.raises(OutOfMemoryAtOne, match="even at batch size 1"):
        ShrinkingBatch(4, Device("cpu")).map(work, [1, 2, 3], "model")


def test_a_fatal_error_ends_the_work_and_other_errors_are_raised_as_they_are():
    sticky, _ = failing_above(0, torch.AcceleratorError("CUDA error: hardware stack error"))
    with pytest.raises(FatalDeviceError, match=r"model: the GPU failed .*must end"):
        ShrinkingBatch(4, Device("cpu")).map(sticky, [1, 2], "model")
    broken, calls = failing_above(0, ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):
        ShrinkingBatch(4, Device("cpu")).map(broken, [1, 2], "model")
    assert calls == [2]  # not retried smaller
