"""Evaluate models on one shard: decode each JPEG once, run every model, keep top-5.

Two preprocessing modes, one flag apart:
- *reference*: timm's own evaluation, each model's ``create_transform(**data_config)`` on the PIL
  image in float32, so predictions equal timm's ``validate.py`` on the same files;
- *fast* (the default on a GPU): each JPEG decoded once to a uint8 tensor (nvJPEG on the GPU), then
  resized, cropped and normalised on the device with timm's geometry (``workers.preprocess``),
  and on a GPU run in bf16 autocast with channels_last.

Models that share a data config share the preprocessed batch (``workers.inputs``). Reading and
decoding run a batch ahead in a thread (on a GPU, decoding runs on a stream of its own); copies
to the device come from pinned memory. Softmax is taken in float32.

A sample whose JPEG does not decode is recorded (key and reason) and gets class -1 with
probability 0 for every model: it counts as wrong and never exits at a saver, and the prediction
chunk still lines up with the shard's samples.

Failures are classified by ``workers.device.classify``: out of device memory, the work is tried
again in smaller pieces and the smaller size is kept for the model (across shards too); any other
error of one model drops that model and the others go on; any other error of the GPU is
``FatalDeviceError``: the process must end, because nothing run in it afterwards can be trusted.

What is measured is what a deployment would see: the first batch of each shape is not timed (it
pays for compilation and the first call's set-up), the device is synchronised around the timed
forward pass, and the peak memory is the model's own (its weights and the forward pass's peak).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from cluster import validate
from cluster.errors import InputError
from cluster.validate import MAX_BATCH_SIZE
from workers.build import build, cost, data_config, skeleton
from workers.device import (
    Device,
    FatalDeviceError,
    OutOfMemoryAtOne,
    ShrinkingBatch,
    device_of,
    raise_if_fatal,
)
from workers.inputs import InputBuilder, PreparedBatch
from workers.prefetch import prefetched
from workers.preprocess_key import preprocessing_key
from workers.profile import Profile
from workers.report import ShardPredictions, Throughput
from workers.shards import Sample, SampleFailures, read_shard
from workers.spec import ModelSpec

__all__ = ["EvalOptions", "FatalDeviceError", "LoadedModel", "ModelRunner", "ShardEvaluator"]

logger = logging.getLogger(__name__)

TOP_K = 5
UNDECODABLE_CLASS = -1
MODES = ("fast", "reference")
# torch.compile keeps one compiled graph per model and input shape on the code object of the
# model class's forward; past its limit (8) it silently runs eager. A zoo has hundreds of models
# of one class (VisionTransformer), each with a full and a short last batch.
COMPILED_GRAPHS_PER_CLASS = 4096


@dataclass(frozen=True, kw_only=True)
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
        amp: bool | None = None,
        channels_last: bool | None = None,
        check_device: bool = True,
    ) -> EvalOptions:
        """Sensible settings: fast with bf16 and channels_last on a GPU, reference on the CPU.

        ``amp`` and ``channels_last``: None (unset) means on exactly when the device is a GPU in
        fast mode; True runs the GPU's settings on the CPU too (as the tests do).
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
        amp = gpu_fast if amp is None else amp
        channels_last = gpu_fast if channels_last is None else channels_last
        return cls(
            device=device,
            mode=mode,
            batch_size=batch_size,
            amp=amp,
            channels_last=channels_last,
            compile=compile,
        )

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def on(self) -> Device:
        return device_of(self.device)


@dataclass
class LoadedModel:
    spec: ModelSpec
    module: torch.nn.Module
    config: dict
    profile: Profile
    # Its runners, one per set of options: they keep the device copy, the compiled forward and
    # the batch size an out-of-memory error left, for as long as the model stays loaded.
    runners: dict[EvalOptions, ModelRunner] = field(default_factory=dict, repr=False)

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

    def unload(self) -> None:
        """Drop the runners: a runner points back at its model, so without this the model's
        device copy would wait for Python's cycle collector, beyond the memory budget."""
        self.runners.clear()

    def runner(self, options: EvalOptions) -> ModelRunner:
        """This model's runner for ``options``, made on first use (the model moves to the
        device then)."""
        if options not in self.runners:
            self.runners[options] = ModelRunner(self, options)
        return self.runners[options]


@dataclass
class ShardResult:
    keys: list[str]
    labels: list[int]
    failures: SampleFailures
    predictions: dict[str, ShardPredictions] = field(default_factory=dict)  # by model name
    failed_models: dict[str, str] = field(default_factory=dict)  # name -> why it stopped


class ModelRunError(RuntimeError):
    """One model cannot run (even at batch size 1); the other models go on."""


def to_channels_last(module: torch.nn.Module) -> torch.nn.Module:
    """The module's 4-D weights in channels_last, in place. Only 4-D tensors have that layout:
    ``module.to(memory_format=...)`` raises for a model with 5-D weights (timm's lambda
    layers), so those stay as they are."""
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.dim() == 4:
            tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    return module


def _compiled(module: torch.nn.Module) -> torch.nn.Module:
    import torch._dynamo.config as dynamo

    dynamo.recompile_limit = max(dynamo.recompile_limit, COMPILED_GRAPHS_PER_CLASS)
    dynamo.accumulated_recompile_limit = max(
        dynamo.accumulated_recompile_limit, COMPILED_GRAPHS_PER_CLASS
    )
    dynamo.fail_on_recompile_limit_hit = True  # never eager while recorded as compiled
    return torch.compile(module)  # type: ignore[return-value]


class ModelRunner:
    """One model on the device: batches split to the model's batch size, OOM decay, timing."""

    def __init__(self, model: LoadedModel, options: EvalOptions) -> None:
        self.model, self.options, self.device = model, options, options.on
        self.module = model.module.to(self.device.name)
        if options.channels_last:
            to_channels_last(self.module)
        self.forward = _compiled(self.module) if options.compile else self.module
        self.pieces = ShrinkingBatch(options.batch_size, self.device)
        self.timed_shapes: set[tuple[int, ...]] = set()  # shapes already run once, untimed
        self.throughput = self.new_measurement()

    @property
    def name(self) -> str:
        return self.model.spec.name

    @property
    def batch_size(self) -> int:
        return self.pieces.size

    @property
    def compiled(self) -> bool:
        return self.forward is not self.module

    def new_measurement(self) -> Throughput:
        """Start measuring afresh (a unit reports what it measured itself)."""
        self.throughput = Throughput(batch_size=self.batch_size, compiled=self.compiled)
        return self.throughput

    def top_k(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Top-k classes and float32 probabilities of every image of the batch."""
        try:
            parts = self.pieces.map(self._timed, images, self.name)
        except FatalDeviceError:
            raise
        except OutOfMemoryAtOne as error:
            raise ModelRunError(str(error)) from error
        except Exception as error:
            if not self.compiled:
                raise ModelRunError(f"{type(error).__name__}: {error}") from error
            logger.warning("%s: torch.compile failed (%s); it runs eager", self.name, error)
            self.forward = self.module
            self.timed_shapes.clear()  # eager's first call has its own set-up to leave out
            self.new_measurement()
            return self.top_k(images)
        return np.concatenate([c for c, _ in parts]), np.concatenate([p for _, p in parts])

    @torch.no_grad()
    def _timed(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        self.throughput.batch_size = self.batch_size
        timed = tuple(images.shape) in self.timed_shapes
        self.timed_shapes.add(tuple(images.shape))
        device = self.device
        device.synchronize()
        before = device.allocated()
        device.reset_peak()
        start = time.perf_counter()
        if self.options.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.options.amp):
            logits = self.forward(images)
        probs = torch.softmax(logits.float(), dim=-1)
        top = probs.topk(min(TOP_K, probs.shape[-1]), dim=-1)
        device.synchronize()
        seconds = time.perf_counter() - start
        if timed:
            self.throughput.images += len(images)
            self.throughput.seconds += seconds
        if timed and device.is_cuda:  # the first call's peak holds compilation's workspace
            own_peak = (self.model.nbytes + device.peak() - before) / 2**20
            self.throughput.peak_memory_mb = max(own_peak, self.throughput.peak_memory_mb or 0.0)
        return top.indices.cpu().numpy(), top.values.cpu().numpy().astype(np.float32)


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class ShardEvaluator:
    """A group of models on one device, evaluating shard after shard.

    Models that share a data config share each preprocessed batch. A model that fails is left
    out of later results and named in ``failed_models``; batch sizes after an OOM and compiled
    models stay with the loaded model, from shard to shard and unit to unit.
    """

    def __init__(self, models: Sequence[LoadedModel], options: EvalOptions | None = None) -> None:
        self.options = options or EvalOptions()
        self.failed_models: dict[str, str] = {}
        self.runners: dict[str, ModelRunner] = {}
        for model in models:
            try:
                self.runners[model.spec.name] = model.runner(self.options)
            except Exception as error:  # noqa: BLE001 - this model alone cannot be placed
                raise_if_fatal(model.spec.name, error)
                self.failed_models[model.spec.name] = f"{type(error).__name__}: {error}"
        for runner in self.runners.values():
            runner.new_measurement()
        self.groups: dict[str, list[ModelRunner]] = {}
        for runner in self.runners.values():
            self.groups.setdefault(runner.model.config_key, []).append(runner)
        configs = {key: group[0].model.config for key, group in self.groups.items()}
        self.inputs = InputBuilder(
            configs, self.options.mode, self.options.on, self.options.batch_size
        )

    def __enter__(self) -> ShardEvaluator:
        return self

    def __exit__(self, *_: object) -> None:
        self.inputs.close()

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
        outputs: dict[str, list[tuple]] = {
            n: [] for n in self.runners if n not in self.failed_models
        }
        batches = _batches(samples, self.options.batch_size)
        # One batch queued ahead and one in the making: on a GPU, decoded images of at most
        # three batches are held at once.
        ahead = (self.inputs.prepare(batch) for batch in batches)
        for prepared in prefetched(ahead, depth=1):
            _record_samples(prepared, result)
            for parts in outputs.values():  # undecodable rows: class -1, probability 0
                parts.append(_blank(len(prepared.samples)))
            if prepared.decoded_rows:
                self.inputs.receive(prepared)
                for key, group in self.groups.items():
                    self._run_group(key, group, prepared, outputs)
        for name, parts in outputs.items():
            if name not in self.failed_models:
                result.predictions[name] = ShardPredictions(
                    np.concatenate([c for c, _ in parts]) if parts else _blank(0)[0],
                    np.concatenate([p for _, p in parts]) if parts else _blank(0)[1],
                )
        result.failed_models = dict(self.failed_models)
        return result

    def _run_group(
        self, key: str, group: list[ModelRunner], prepared: PreparedBatch, outputs: dict
    ) -> None:
        """The models of one data config on one batch: its input built, then each model."""
        running = [runner for runner in group if runner.name not in self.failed_models]
        if not running:
            return
        try:
            images = self.inputs.batch(prepared, key)
        except Exception as error:  # noqa: BLE001 - the input of these models alone failed
            raise_if_fatal(f"preprocessing for {running[0].name}", error)
            for runner in running:
                self.failed_models[runner.name] = f"preprocessing: {type(error).__name__}: {error}"
            return
        rows = prepared.decoded_rows
        for runner in running:
            try:
                classes, probs = runner.top_k(images)
            except ModelRunError as error:
                self.failed_models[runner.name] = str(error)
                continue
            blank_classes, blank_probs = outputs[runner.name][-1]
            blank_classes[rows, : classes.shape[1]] = classes
            blank_probs[rows, : probs.shape[1]] = probs


def evaluate_samples(
    models: Sequence[LoadedModel], samples: Iterable[Sample], options: EvalOptions | None = None
) -> ShardResult:
    """One pass of ``models`` over ``samples`` (a worker used once)."""
    with ShardEvaluator(models, options) as evaluator:
        return evaluator.evaluate(samples)


def _record_samples(prepared: PreparedBatch, result: ShardResult) -> None:
    """Append the batch's keys, labels and decode failures."""
    for sample, image in zip(prepared.samples, prepared.images, strict=True):
        result.keys.append(sample.key)
        result.labels.append(sample.label)
        if isinstance(image, Exception):
            result.failures.reasons[sample.key] = f"{type(image).__name__}: {image}"


def device_type(device: str) -> str:
    """What a measurement names its device by: "cpu" or the GPU's model name."""
    return device_of(device).label()


def _blank(rows: int) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.full((rows, TOP_K), UNDECODABLE_CLASS, dtype=np.int64),
        np.zeros((rows, TOP_K), dtype=np.float32),
    )
