"""Evaluate models on one shard: decode each JPEG once, run every model, keep top-5.

Two preprocessing modes, one flag apart:
- *reference*: timm's own evaluation, each model's ``create_transform(**data_config)`` on the PIL
  image in float32, so predictions equal timm's ``validate.py`` on the same files;
- *fast* (the default on a GPU): each JPEG decoded once to a uint8 tensor (nvJPEG on the GPU), then
  resized, cropped and normalised on the device with timm's geometry (``workers.preprocess``),
  and on a GPU run in bf16 autocast with channels_last.

Models that share a data config share the preprocessed batch. Reading and decoding run a batch
ahead in a thread; host-to-device copies come from pinned memory. Softmax is taken in float32.

A sample whose JPEG does not decode is recorded (key and reason) and gets class -1 with
probability 0 for every model: it counts as wrong and never exits at a saver, and the prediction
chunk still lines up with the shard's samples.

Failures: out of device memory, a model retries with a smaller batch (timm's ``decay_batch_step``);
any other error of one model drops that model and the others go on; an error that leaves the GPU
unusable (an illegal memory access, a device-side assert) is ``FatalDeviceError``: the process
must end, because nothing run in it afterwards can be trusted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from timm.data import create_transform
from timm.utils import decay_batch_step

from cluster import validate
from cluster.errors import InputError, ServiceError
from workers.build import build, cost, data_config, skeleton
from workers.prefetch import prefetched
from workers.preprocess import DeviceTransform, decode_cpu, decode_on_device
from workers.preprocess_key import preprocessing_key
from workers.profile import Profile
from workers.report import ShardPredictions, Throughput
from workers.shards import DECODE_ERRORS, Sample, SampleFailures, decode_rgb, read_shard
from workers.spec import ModelSpec

TOP_K = 5
UNDECODABLE_CLASS = -1
MODES = ("fast", "reference")
MAX_BATCH_SIZE = 65_536  # images per forward pass; more never fits a device
# Messages of CUDA errors after which the process's CUDA context is corrupt.
FATAL_DEVICE_ERRORS = (
    "illegal memory access",
    "device-side assert",
    "unspecified launch failure",
    "misaligned address",
)


class FatalDeviceError(ServiceError):
    """The GPU is in an unusable state; end the process (stored results are kept)."""


@dataclass(frozen=True)
class EvalOptions:
    """How a worker evaluates: where, which preprocessing, and the GPU settings."""

    device: str = "cpu"
    mode: str = "reference"
    batch_size: int = 64
    amp: bool = False  # bf16 autocast
    channels_last: bool = False
    compile: bool = False  # torch.compile each model

    @classmethod
    def choose(
        cls,
        device: str = "cpu",
        mode: str | None = None,
        batch_size: int = 64,
        *,
        compile: bool = False,
        check_device: bool = True,
    ) -> EvalOptions:
        """Sensible settings: fast with bf16 and channels_last on a GPU, reference on the CPU.

        ``check_device=False`` for options meant for other machines (a sweep's workers).
        """
        cuda = device.startswith("cuda")
        if cuda and check_device and not torch.cuda.is_available():
            raise InputError(f"--device {device}: this machine has no CUDA device; use cpu")
        if not cuda and device != "cpu":
            raise InputError(f"--device {device!r}: use cpu, cuda or cuda:N")
        mode = mode or ("fast" if cuda else "reference")
        if mode not in MODES:
            raise InputError(f"--mode {mode!r}: use fast or reference")
        try:
            validate.integer(batch_size, "--batch-size", 1, MAX_BATCH_SIZE)
        except InputError:
            raise InputError(
                f"--batch-size {batch_size!r}: use a positive number up to {MAX_BATCH_SIZE:,}"
            ) from None
        gpu_fast = cuda and mode == "fast"
        return cls(device, mode, batch_size, gpu_fast, gpu_fast, compile)

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")


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
        return cls(spec, module, config, cost(spec, skeleton(spec), config["input_size"]))

    @property
    def config_key(self) -> str:
        """Models with equal keys share preprocessing (``preprocessing_key``)."""
        return preprocessing_key(self.config)

    @property
    def nbytes(self) -> int:
        """What the model's weights and buffers take where they live."""
        tensors = [*self.module.parameters(), *self.module.buffers()]
        return sum(t.numel() * t.element_size() for t in tensors)


@dataclass
class ShardResult:
    keys: list[str]
    labels: list[int]
    failures: SampleFailures
    predictions: dict[str, ShardPredictions] = field(default_factory=dict)  # by model name
    failed_models: dict[str, str] = field(default_factory=dict)  # name -> why it stopped


class ModelRunError(RuntimeError):
    """One model cannot run (even at batch size 1); the other models go on."""


class ModelRunner:
    """One model on the device: batches split to the model's batch size, OOM decay, timing."""

    def __init__(self, model: LoadedModel, options: EvalOptions) -> None:
        self.model, self.options = model, options
        self.batch_size = options.batch_size
        module = model.module.to(options.device)
        if options.channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.forward = torch.compile(module) if options.compile else module
        self.throughput = Throughput(batch_size=self.batch_size)

    def top_k(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Top-k classes and float32 probabilities of every image of the batch."""
        parts, start = [], 0
        while start < len(images):
            chunk = images[start : start + self.batch_size]
            try:
                parts.append(self._timed(chunk))
            except torch.OutOfMemoryError:
                self._decay()
                continue
            except RuntimeError as error:
                if any(marker in str(error) for marker in FATAL_DEVICE_ERRORS):
                    raise FatalDeviceError(
                        f"{self.model.spec.name}: the GPU failed ({str(error).splitlines()[0]}); "
                        "this process must end, results stored so far are kept"
                    ) from error
                raise ModelRunError(f"{type(error).__name__}: {error}") from error
            start += len(chunk)
        return np.concatenate([c for c, _ in parts]), np.concatenate([p for _, p in parts])

    def _decay(self) -> None:
        smaller = decay_batch_step(self.batch_size)
        if smaller < 1:
            raise ModelRunError("out of device memory even at batch size 1")
        self.batch_size = self.throughput.batch_size = smaller
        if self.options.cuda:
            torch.cuda.empty_cache()

    @torch.no_grad()
    def _timed(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        cuda = self.options.cuda
        if cuda:
            torch.cuda.synchronize(self.options.device)
            torch.cuda.reset_peak_memory_stats(self.options.device)
        start = time.perf_counter()
        if self.options.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        device_type = "cuda" if cuda else "cpu"
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.options.amp):
            logits = self.forward(images)
        probs = torch.softmax(logits.float(), dim=-1)
        top = probs.topk(min(TOP_K, probs.shape[-1]), dim=-1)
        classes, values = top.indices.cpu().numpy(), top.values.cpu().numpy().astype(np.float32)
        self.throughput.images += len(images)
        self.throughput.seconds += time.perf_counter() - start  # the copy back waited for it
        if cuda:
            peak = torch.cuda.max_memory_allocated(self.options.device) / 2**20
            self.throughput.peak_memory_mb = max(peak, self.throughput.peak_memory_mb or 0.0)
        return classes, values


@dataclass
class _Prepared:
    """One batch of samples, decoded (and in reference mode transformed) ahead of compute."""

    samples: list[Sample]
    images: list  # per sample: a decoded image (or JPEG bytes for GPU decoding) or an exception
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)  # reference: per config


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _try(decode, jpeg: bytes):
    try:
        return decode(jpeg)
    except DECODE_ERRORS as error:
        return error


class _Preprocessor:
    """Per batch: decode once; per config group: the model input on the device."""

    def __init__(self, groups: dict[str, list[LoadedModel]], options: EvalOptions) -> None:
        self.options = options
        self.decode_pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
        if options.mode == "reference":
            self.transforms = {
                key: create_transform(**g[0].config, is_training=False) for key, g in groups.items()
            }
        else:
            self.transforms = {
                key: DeviceTransform(g[0].config, options.device) for key, g in groups.items()
            }

    def prepare(self, samples: list[Sample]) -> _Prepared:
        """The CPU part, run ahead in the prefetch thread."""
        jpegs = [sample.jpeg for sample in samples]
        if self.options.mode == "fast" and self.options.cuda:
            return _Prepared(samples, jpegs)  # nvJPEG decodes on the device
        decode = decode_rgb if self.options.mode == "reference" else decode_cpu
        images = list(self.decode_pool.map(lambda jpeg: _try(decode, jpeg), jpegs))
        prepared = _Prepared(samples, images)
        if self.options.mode == "reference":
            good = [image for image in images if not isinstance(image, Exception)]
            for key, transform in self.transforms.items():
                if good:
                    prepared.inputs[key] = self._pinned(torch.stack([transform(i) for i in good]))
        return prepared

    def _pinned(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.pin_memory() if self.options.cuda else tensor

    def on_device(self, prepared: _Prepared) -> dict[str, torch.Tensor]:
        """The model inputs of the decoded samples; decodes on the GPU in fast mode."""
        device = self.options.device
        if self.options.mode == "reference":
            return {k: v.to(device, non_blocking=True) for k, v in prepared.inputs.items()}
        if self.options.cuda:
            prepared.images = decode_on_device(prepared.images, device)
        good = [image for image in prepared.images if not isinstance(image, Exception)]
        if not good:
            return {}
        good = [self._pinned(i).to(device, non_blocking=True) for i in good]
        return {key: transform(good) for key, transform in self.transforms.items()}

    def close(self) -> None:
        self.decode_pool.shutdown()


class ShardEvaluator:
    """A group of models on one device, evaluating shard after shard.

    Models that share a data config share each preprocessed batch. A model that fails is left
    out of later results and named in ``failed_models``; batch sizes after an OOM and compiled
    models carry over from shard to shard.
    """

    def __init__(self, models: Sequence[LoadedModel], options: EvalOptions | None = None) -> None:
        self.options = options or EvalOptions()
        self.groups: dict[str, list[LoadedModel]] = {}
        for model in models:
            self.groups.setdefault(model.config_key, []).append(model)
        self.runners = {model.spec.name: ModelRunner(model, self.options) for model in models}
        self.failed_models: dict[str, str] = {}
        self.preprocessor = _Preprocessor(self.groups, self.options)

    def __enter__(self) -> ShardEvaluator:
        return self

    def __exit__(self, *_: object) -> None:
        self.preprocessor.close()

    @property
    def throughput(self) -> dict[str, Throughput]:
        """Measured so far, per model that is still running."""
        return {
            name: runner.throughput
            for name, runner in self.runners.items()
            if name not in self.failed_models and runner.throughput.images
        }

    def evaluate_shard(self, url: str, expected_samples: int | None = None) -> ShardResult:
        """Read one shard and evaluate every model on it."""
        return self.evaluate(read_shard(url, expected_samples=expected_samples))

    def evaluate(self, samples: Iterable[Sample]) -> ShardResult:
        """Every running model over the samples, one batch of samples at a time."""
        result = ShardResult([], [], SampleFailures())
        running = [name for name in self.runners if name not in self.failed_models]
        outputs: dict[str, list[tuple]] = {name: [] for name in running}
        batches = _batches(samples, self.options.batch_size)
        for prepared in prefetched(self.preprocessor.prepare(batch) for batch in batches):
            inputs = self.preprocessor.on_device(prepared)
            rows = _record_samples(prepared, result)
            for parts in outputs.values():  # undecodable rows: class -1, probability 0
                parts.append(_blank(len(prepared.samples)))
            for key, group in self.groups.items():
                for model in group:
                    if key in inputs and model.spec.name in outputs:
                        self._run(model.spec.name, inputs[key], rows, outputs)
        for name, parts in outputs.items():
            if name not in self.failed_models:
                result.predictions[name] = ShardPredictions(
                    np.concatenate([c for c, _ in parts]) if parts else _blank(0)[0],
                    np.concatenate([p for _, p in parts]) if parts else _blank(0)[1],
                )
        result.failed_models = dict(self.failed_models)
        return result

    def _run(self, name: str, images: torch.Tensor, rows: list[int], outputs: dict) -> None:
        if name in self.failed_models:
            return
        try:
            classes, probs = self.runners[name].top_k(images)
        except ModelRunError as error:
            self.failed_models[name] = str(error)
            return
        blank_classes, blank_probs = outputs[name][-1]
        blank_classes[rows, : classes.shape[1]] = classes
        blank_probs[rows, : probs.shape[1]] = probs


def evaluate_samples(
    models: Sequence[LoadedModel], samples: Iterable[Sample], options: EvalOptions | None = None
) -> ShardResult:
    """One pass of ``models`` over ``samples`` (a worker used once)."""
    with ShardEvaluator(models, options) as evaluator:
        return evaluator.evaluate(samples)


def _record_samples(prepared: _Prepared, result: ShardResult) -> list[int]:
    """Append the batch's keys, labels and decode failures; the rows that decoded."""
    rows = []
    for i, (sample, image) in enumerate(zip(prepared.samples, prepared.images, strict=True)):
        result.keys.append(sample.key)
        result.labels.append(sample.label)
        if isinstance(image, Exception):
            result.failures.reasons[sample.key] = f"{type(image).__name__}: {image}"
        else:
            rows.append(i)
    return rows


def device_type(device: str) -> str:
    """What a measurement names its device by: "cpu" or the GPU's model name."""
    return torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"


def _blank(rows: int) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.full((rows, TOP_K), UNDECODABLE_CLASS, dtype=np.int64),
        np.zeros((rows, TOP_K), dtype=np.float32),
    )
