"""The path a GPU takes, run on the CPU: its options, its failures, what it measures."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import workers.preprocess as preprocess
from tests.workers.models import natural_samples, seeded, wrapped
from workers.device import FatalDeviceError
from workers.evaluate import EvalOptions, LoadedModel, ShardEvaluator, evaluate_samples
from workers.preprocess import (
    MAX_DEVICE_DOWNSCALE,
    DeviceTransform,
    decode_batch,
    decode_cpu,
    jpeg_channels,
)
from workers.shards import Sample
from workers.spec import ModelSpec
from workers.synthetic_images import natural_jpeg

REFERENCE = EvalOptions.choose("cpu", "reference", 4)
FAST = EvalOptions.choose("cpu", "fast", 4)


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    return natural_samples(12)


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(natural_jpeg(seed, (64, 48)))).save(buffer, format="PNG")
    return buffer.getvalue()


BAD_FILES = {
    "empty": b"",
    "truncated": natural_jpeg(5, (200, 150))[:300],
    "not-an-image": b"hello, I am text " * 10,
    "header-only": natural_jpeg(6, (64, 48))[:20],
}


@pytest.mark.slow
def test_the_gpus_settings_run_on_the_cpu_compiled_once_per_model(samples):
    """Fast mode, bf16 autocast, channels_last and torch.compile together, as on a GPU; a
    second unit reuses the compiled model and a short last batch compiles once more at most."""
    from torch._dynamo.utils import counters

    model = seeded("test_resnet", 0)
    reference = evaluate_samples([model], samples, REFERENCE).predictions["test_resnet"]
    gpu_like = EvalOptions.choose("cpu", "fast", 4, amp=True, channels_last=True, compile=True)
    counters.clear()
    try:
        with ShardEvaluator([model], gpu_like) as first_unit:
            first = first_unit.evaluate(samples[:8])
    except Exception as error:  # noqa: BLE001 - no C compiler here: say so, don't pass silently
        pytest.skip(f"torch.compile is not usable on this machine: {error}")
    compiled = model.runner(gpu_like).forward
    with ShardEvaluator([model], gpu_like) as second_unit:
        second = second_unit.evaluate(samples[8:11])  # a batch of 3: a new shape

    assert model.runner(gpu_like).forward is compiled and model.runner(gpu_like).compiled
    assert counters["stats"]["unique_graphs"] <= 2
    got = np.concatenate([r.predictions["test_resnet"].classes for r in (first, second)])
    probs = np.concatenate([r.predictions["test_resnet"].probs for r in (first, second)])
    # Random weights give near-uniform outputs (top two within 0.5%), so bf16 reorders near
    # ties: its answer is one of the reference's top five, with the same top probability.
    assert all(got[i, 0] in reference.classes[i] for i in range(11))
    np.testing.assert_allclose(probs[:, 0], reference.probs[:11, 0], rtol=0.02)
    assert model.runner(gpu_like).throughput.compiled


def test_channels_last_skips_the_5d_weights_of_lambda_layers(samples):
    """timm's lambda layers hold 5-D weights; ``module.to(memory_format=channels_last)`` raises
    for them and once failed the whole bundle."""
    lam = seeded("lambda_resnet26t", 0, input_size=(3, 64, 64))
    five_d = [p for p in lam.module.parameters() if p.dim() == 5]
    assert five_d
    with pytest.raises(RuntimeError, match="rank 4"):
        torch.nn.Conv3d(1, 1, 1).to(memory_format=torch.channels_last)

    options = EvalOptions.choose("cpu", "fast", 4, channels_last=True)
    result = evaluate_samples([lam], samples[:4], options)

    assert set(result.predictions) == {"lambda_resnet26t"} and not result.failed_models
    assert all(
        p.is_contiguous(memory_format=torch.channels_last)
        for p in lam.module.parameters()
        if p.dim() == 4
    )


def test_a_model_that_cannot_be_placed_fails_alone(samples):
    class Unplaceable(torch.nn.Module):
        def _apply(self, fn, recurse=True):
            raise RuntimeError("cannot move this model")

    plain = seeded("test_resnet", 0)
    bad = LoadedModel(
        ModelSpec("unplaceable", "x", "random"), Unplaceable(), plain.config, plain.profile
    )

    result = evaluate_samples([bad, plain], samples[:4], FAST)

    assert set(result.predictions) == {"test_resnet"}
    assert "cannot move this model" in result.failed_models["unplaceable"]


@pytest.mark.parametrize("mode", ["reference", "fast"])
def test_every_kind_of_bad_file_is_one_bad_sample_in_both_modes(samples, mode):
    good = samples[:3]
    mixed = [
        *good[:1],
        *(Sample(k, b, 0, "") for k, b in BAD_FILES.items()),
        *good[1:],
        Sample("png", _png(7), 1, ""),
    ]
    model = seeded("test_resnet", 0)

    result = evaluate_samples([model], mixed, EvalOptions.choose("cpu", mode, 3))

    assert set(result.failures.reasons) == set(BAD_FILES)  # a PNG decodes (by PIL), as in timm
    classes = result.predictions["test_resnet"].classes
    bad_rows = [result.keys.index(key) for key in BAD_FILES]
    assert (classes[bad_rows] == -1).all() and (np.delete(classes, bad_rows, 0) >= 0).all()


def test_the_frame_header_tells_grey_colour_and_cmyk_jpegs_apart():
    assert [jpeg_channels(natural_jpeg(1, (50, 40), mode)) for mode in ("L", "RGB", "CMYK")] == [
        1,
        3,
        4,
    ]
    assert {
        jpeg_channels(b""),
        jpeg_channels(b"text"),
        jpeg_channels(BAD_FILES["header-only"]),
    } == {None}


def test_on_a_gpu_cmyk_jpegs_are_decoded_by_pil_and_the_rest_in_one_batch(monkeypatch):
    """torchvision leaves nvJPEG's CMYK conversion off. The meta device stands in for a GPU:
    what reaches the batched decode, and where the CMYK image lands, are what is checked."""
    jpegs = [natural_jpeg(i, (40, 30), mode) for i, mode in enumerate(["RGB", "CMYK", "L", "RGB"])]
    batched = []

    def on_device(tensors, mode, device):
        batched.append(len(tensors))
        return [torch.empty(3, 30, 40, dtype=torch.uint8, device=device) for _ in tensors]

    monkeypatch.setattr(preprocess, "decode_jpeg", on_device)
    decoded = decode_batch(jpegs, "meta")

    assert batched == [3]
    assert all(image.device.type == "meta" and image.shape == (3, 30, 40) for image in decoded)


def test_one_refused_image_does_not_make_the_batch_decode_one_by_one(monkeypatch):
    jpegs = [natural_jpeg(i, (40, 30)) for i in range(16)]
    jpegs[5] = b""
    calls = []
    real = preprocess.decode_jpeg

    def counting(tensors, **options):
        calls.append(len(tensors))
        return real(tensors, **options)

    monkeypatch.setattr(preprocess, "decode_jpeg", counting)
    decoded = decode_batch(jpegs, "cpu")

    assert [isinstance(image, Exception) for image in decoded] == [i == 5 for i in range(16)]
    assert len(calls) <= 2 * 4 + 1  # halves down to the one image: a few calls, not 16
    assert sum(calls) < 3 * len(jpegs)


@pytest.mark.parametrize(
    "error",
    [
        torch.AcceleratorError("CUDA error: an illegal instruction was encountered"),
        torch.OutOfMemoryError("CUDA out of memory"),
    ],
    ids=["sticky", "out-of-memory"],
)
def test_a_device_failure_while_decoding_is_never_taken_for_a_bad_image(monkeypatch, error):
    def failing(tensors, **options):
        raise error

    monkeypatch.setattr(preprocess, "decode_jpeg", failing)
    with pytest.raises(type(error) if "memory" in str(error) else FatalDeviceError):
        decode_batch([natural_jpeg(0, (40, 30))], "cpu")


def test_a_sticky_error_in_decoding_ends_the_shard_storing_nothing(monkeypatch, samples):
    def failing(tensors, **options):
        raise torch.AcceleratorError("CUDA error: uncorrectable ECC error encountered")

    monkeypatch.setattr(preprocess, "decode_jpeg", failing)
    with pytest.raises(FatalDeviceError, match="must end"):
        evaluate_samples([seeded("test_resnet", 0)], samples[:4], FAST)


def test_out_of_memory_while_decoding_decodes_in_smaller_pieces(monkeypatch, samples):
    real = preprocess.decode_jpeg

    def tight(tensors, **options):
        if len(tensors) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(tensors, **options)

    model = seeded("test_resnet", 0)
    expected = evaluate_samples([model], samples[:6], FAST).predictions["test_resnet"]
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # one piece of 4 per batch
    monkeypatch.setattr(preprocess, "decode_jpeg", tight)

    got = evaluate_samples([model], samples[:6], FAST)

    assert not got.failures.reasons
    assert (got.predictions["test_resnet"].classes == expected.classes).all()


def test_out_of_memory_while_preprocessing_builds_the_input_in_pieces(samples):
    model = seeded("test_resnet", 0)
    expected = evaluate_samples([model], samples[:8], FAST).predictions["test_resnet"]
    with ShardEvaluator([model], FAST) as evaluator:
        key = model.config_key
        transform = evaluator.inputs.transforms[key]
        sizes = []

        def tight(images):
            sizes.append(len(images))
            if len(images) > 2:
                raise torch.OutOfMemoryError("CUDA out of memory")
            return transform(images)

        evaluator.inputs.transforms[key] = tight
        got = evaluator.evaluate(samples[:8]).predictions["test_resnet"]

    assert (got.classes == expected.classes).all()
    assert evaluator.inputs.transform_pieces[key].size == 2 and sizes[-2:] == [2, 2]


def test_the_batch_size_an_out_of_memory_error_left_is_kept_for_the_next_unit(samples):
    plain = seeded("test_resnet", 0)
    tight = wrapped(plain, "tight", 2, torch.OutOfMemoryError("CUDA out of memory"))

    with ShardEvaluator([tight], REFERENCE) as first_unit:
        first_unit.evaluate(samples[:4])
    raised = tight.module.raised
    with ShardEvaluator([tight], REFERENCE) as next_unit:
        next_unit.evaluate(samples[4:8])

    assert raised >= 1 and tight.module.raised == raised  # no out-of-memory error again
    assert next_unit.throughput["tight"].batch_size == 2


def test_an_allocation_failure_in_cublas_shrinks_the_batch_instead_of_dropping_the_model(samples):
    plain = seeded("test_resnet", 0)
    error = RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate`")
    tight = wrapped(plain, "tight", 2, error)

    result = evaluate_samples([plain, tight], samples[:4], REFERENCE)

    assert not result.failed_models
    assert (result.predictions["tight"].classes == result.predictions["test_resnet"].classes).all()


def test_a_sticky_error_in_a_forward_pass_ends_the_run(samples):
    error = torch.AcceleratorError("CUDA error: invalid program counter")
    crashing = wrapped(seeded("test_resnet", 0), "crashing", 0, error)
    with pytest.raises(FatalDeviceError, match="crashing: the GPU failed"):
        evaluate_samples([crashing], samples[:4], FAST)


def test_the_first_batch_of_each_shape_is_not_timed(samples):
    model = seeded("test_resnet", 0)
    with ShardEvaluator([model], REFERENCE) as evaluator:
        evaluator.evaluate(samples[:10])  # batches of 4, 4 and 2: the second 4 alone is timed
        assert evaluator.throughput["test_resnet"].images == 4
    with ShardEvaluator([model], REFERENCE) as next_unit:
        next_unit.evaluate(samples[:10])  # every shape has run once: all timed
        assert next_unit.throughput["test_resnet"].images == 10


def test_decoding_threads_follow_the_cpus_the_process_was_given(samples):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # what a Ray actor given 2 CPUs sets
        with ShardEvaluator([seeded("test_resnet", 0)], REFERENCE) as evaluator:
            assert evaluator.inputs.threads == 2
    finally:
        torch.set_num_threads(threads)


def test_an_image_far_larger_than_the_model_input_is_resized_on_the_host():
    """CUDA's antialiased resize refuses to shrink more than about 47 times (a 12,000-pixel
    photo for a 224-pixel model); the CPU's does not."""
    config = {
        "input_size": (3, 16, 16),
        "interpolation": "bilinear",
        "crop_pct": 0.875,
        "mean": (0.5,) * 3,
        "std": (0.5,) * 3,
    }
    transform = DeviceTransform(config, "cpu")
    largest = 16 * MAX_DEVICE_DOWNSCALE
    assert transform.resizes_on_host((2, 3, 30, largest + 1))
    assert not transform.resizes_on_host((2, 3, largest, largest))
    assert not DeviceTransform({**config, "input_size": (3, 224, 224)}, "cpu").resizes_on_host(
        (1, 3, 375, 500)
    )

    large = decode_cpu(natural_jpeg(1, (largest + 8, 40)))
    small = decode_cpu(natural_jpeg(2, (40, 30)))
    together = transform([large, small])
    assert together.shape == (2, 3, 16, 16)
    assert torch.equal(together[0], transform([large])[0])


def test_a_model_torch_compile_cannot_compile_runs_eager_and_is_measured_as_eager(
    samples, monkeypatch
):
    """Never eager while recorded as compiled: a compile failure (here injected) is said, the
    model runs eager, and its measurement is an eager one."""
    model = seeded("test_resnet", 0)
    expected = evaluate_samples([model], samples[:8], FAST).predictions["test_resnet"]

    def failing_compile(module, **options):
        def forward(images):
            raise RuntimeError("backend compiler failed: recompile limit reached")

        return forward

    monkeypatch.setattr(torch, "compile", failing_compile)
    options = EvalOptions.choose("cpu", "fast", 4, compile=True)
    with ShardEvaluator([model], options) as evaluator:
        got = evaluator.evaluate(samples[:8])

    assert not got.failed_models
    assert (got.predictions["test_resnet"].classes == expected.classes).all()
    runner = model.runner(options)
    assert not runner.compiled and not evaluator.throughput["test_resnet"].compiled


def test_a_device_too_full_to_decode_one_image_leaves_decoding_to_the_host(monkeypatch, samples):
    """The meta device stands in for a full GPU: its decoding always runs out of memory."""
    from workers.device import Device
    from workers.inputs import InputBuilder

    real = preprocess.decode_jpeg

    def full_device(tensors, mode, device):
        if device != "cpu":
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(tensors, mode=mode, device=device)

    monkeypatch.setattr(preprocess, "decode_jpeg", full_device)
    builder = InputBuilder({}, "fast", Device("meta"), batch_size=4)
    try:
        prepared = builder.prepare(samples[:4])
    finally:
        builder.close()

    assert prepared.decoded_rows == [0, 1, 2, 3]
    assert all(image.device.type == "cpu" for image in prepared.images)
