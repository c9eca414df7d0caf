"""The parts of ``python -m bench.gpu`` that are not benches of their own.

    python -m bench.gpu_parts PART --device cuda --json FILE --seconds N [--tiny]

Each part writes a JSON object with ``verdict`` ("ok", "failed" or "skipped") and its figures.
Random weights throughout (a GPU machine may have no network): agreement figures are
therefore also given where the reference's answer is clear (its top two probabilities more than
1% apart), since near-uniform outputs flip on any arithmetic difference.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from timm.data import create_transform
from torchvision.io import ImageReadMode, decode_jpeg

from workers.device import Device, classify, device_of
from workers.evaluate import EvalOptions, LoadedModel, ShardEvaluator, evaluate_samples
from workers.preprocess import DeviceTransform, decode_batch
from workers.shards import Sample, decode_rgb
from workers.spec import ModelSpec
from workers.synthetic_images import natural_image, natural_jpeg

FULL_MODELS = ("resnet50", "efficientnet_b0", "vit_small_patch16_224")
TINY_MODELS = ("test_resnet", "test_efficientnet")
THROUGHPUT_MODELS = (  # common families first: the sweep's cost model needs their shapes
    "mobilenetv3_small_050",
    "mobilenetv3_large_100",
    "resnet18",
    "resnet50",
    "efficientnet_b0",
    "efficientnet_b3",
    "convnext_tiny",
    "convnext_base",
    "regnety_040",
    "vit_tiny_patch16_224",
    "vit_small_patch16_224",
    "vit_base_patch16_224",
    "deit_base_patch16_224",
    "swin_tiny_patch4_window7_224",
    "vit_large_patch16_224",
    "eva02_base_patch14_224",
    "beit_base_patch16_224",
)
CLEAR = 0.99  # the reference's second probability below 99% of its first: a clear answer


def _model(name: str, seed: int = 0, **overrides) -> LoadedModel:
    torch.manual_seed(seed)
    return LoadedModel.load(ModelSpec(name, name, "random", data_overrides=overrides))


def _samples(count: int, modes=("RGB",) * 48 + ("L", "CMYK"), progressive=False) -> list[Sample]:
    """ImageNet-like JPEGs (about 30 ms each to make: made on every core)."""
    from concurrent.futures import ProcessPoolExecutor

    jobs = [(i, modes[i % len(modes)], progressive) for i in range(count)]
    with ProcessPoolExecutor() as pool:
        jpegs = list(pool.map(_jpeg, jobs, chunksize=max(1, count // 64)))
    return [Sample(f"{i:06d}", jpeg, i % 1000, "") for i, jpeg in enumerate(jpegs)]


def _jpeg(job: tuple[int, str, bool]) -> bytes:
    index, mode, progressive = job
    size = [(500, 375), (375, 500), (500, 333), (640, 480)][index % 4]
    if not progressive:
        return natural_jpeg(index, size, mode)
    buffer = io.BytesIO()
    natural_image(index, size).save(buffer, "JPEG", quality=90, progressive=True)
    return buffer.getvalue()


def _agreement(reference, other) -> dict:
    same = reference.classes[:, 0] == other.classes[:, 0]
    clear = reference.probs[:, 1] < CLEAR * reference.probs[:, 0]
    return {
        "top1_agreement": float(same.mean()),
        "top1_agreement_where_clear": float(same[clear].mean()) if clear.any() else None,
        "clear_share": float(clear.mean()),
    }


# ----- parts ---------------------------------------------------------------------------------
def agreement(args) -> dict:
    """Fast mode against reference mode: per model, top-1 agreement; the pixel bound."""
    count = 8 if args.tiny else 2000
    samples = _samples(count)
    rows = {}
    for name in TINY_MODELS if args.tiny else FULL_MODELS:
        model = _model(name)
        # float32 both: the preprocessing alone differs (bf16 is measured in confirm).
        options = EvalOptions.choose(args.device, "reference", 64)
        reference = evaluate_samples([model], samples, options)
        fp32_fast = EvalOptions.choose(args.device, "fast", 64, amp=False, channels_last=False)
        fast = evaluate_samples([model], samples, fp32_fast)
        rows[name] = _agreement(reference.predictions[name], fast.predictions[name])
    config: dict[str, Any] = {
        "input_size": (3, 224, 224),
        "interpolation": "bicubic",
        "crop_pct": 0.875,
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
    }
    reference = create_transform(**config, is_training=False)
    device_images = [
        i
        for i in decode_batch([s.jpeg for s in samples[:64]], args.device)
        if isinstance(i, torch.Tensor)
    ]
    got = DeviceTransform(config, args.device)(device_images).float().cpu()
    expected = torch.stack([reference(decode_rgb(s.jpeg)) for s in samples[:64]])
    grey = ((got - expected).abs() * torch.tensor(config["std"]).view(1, 3, 1, 1) * 255).flatten()
    pixels = {
        "p999_grey": float(grey.quantile(0.999)),
        "max_grey": float(grey.max()),
        "mean_grey": float(grey.mean()),
    }
    worst = min(r["top1_agreement_where_clear"] or 1.0 for r in rows.values())
    return {
        "images": count,
        "models": rows,
        "pixels": pixels,
        "verdict": "ok" if worst >= 0.995 and pixels["mean_grey"] <= 0.25 else "failed",
    }


def confirm(args) -> dict:
    """What only a GPU can confirm, one pass/fail line each (docs/gpu.md)."""
    checks = {}
    for mode in ("L", "RGB", "CMYK"):
        jpegs = [natural_jpeg(i, (500, 375), mode) for i in range(8)]
        checks[f"decode {mode} equals PIL"] = _decoded_like_pil(jpegs, args.device)
    progressive = [s.jpeg for s in _samples(8, progressive=True)]
    checks["decode progressive equals PIL"] = _decoded_like_pil(progressive, args.device)
    truncated = natural_jpeg(3, (500, 375))[:4000]
    on_device = decode_batch([truncated], args.device)[0]
    checks["a truncated JPEG is bad on both paths"] = {
        "pass": isinstance(on_device, Exception) == _pil_refuses(truncated)
    }
    try:
        decode_jpeg(
            [torch.frombuffer(bytearray(b"not a jpeg" * 10), dtype=torch.uint8)],
            mode=ImageReadMode.RGB,
            device=args.device,
        )
        checks["a bad image's error is 'other', not fatal"] = {"pass": True, "raised": False}
    except Exception as error:  # noqa: BLE001 - the class is what is checked
        checks["a bad image's error is 'other', not fatal"] = {
            "pass": classify(error).value == "other",
            "message": str(error)[:200],
        }
    side = max(16, 8 * 224) if args.tiny else 12_000  # past CUDA's ~47x antialiased limit
    huge = torch.zeros(3, side, side * 3 // 4, dtype=torch.uint8, device=args.device)
    config: dict[str, Any] = {
        "input_size": (3, 224, 224),
        "interpolation": "bicubic",
        "crop_pct": 0.875,
        "mean": (0.5,) * 3,
        "std": (0.5,) * 3,
    }
    checks["a 12,000-pixel image is resized"] = _passes(
        lambda: DeviceTransform(config, args.device)([huge]).shape == (1, 3, 224, 224)
    )
    checks["bf16 top-1 against float32"] = _bf16_against_fp32(args)
    checks["decoding ahead on its own stream"] = _side_stream(args)
    failed = [name for name, check in checks.items() if not check.get("pass")]
    for name, check in checks.items():
        print(f"{'pass' if check.get('pass') else 'FAIL'}  {name}  {check}", flush=True)
    return {"checks": checks, "verdict": "failed" if failed else "ok"}


def oom(args) -> dict:
    """An out-of-memory batch decays, and keeps the size it settles on."""
    if not args.device.startswith("cuda"):
        return {"verdict": "skipped", "why": "out of memory needs a GPU's fixed memory"}
    torch.cuda.set_per_process_memory_fraction(0.05)  # a few GB: resnet50 at 2,048 cannot fit
    model = _model("resnet50")
    options = EvalOptions.choose(args.device, "fast", 2048)
    runner = model.runner(options)
    images = torch.randn(2048, 3, 224, 224, device="cpu").to(args.device)
    runner.top_k(images)
    settled = runner.batch_size
    runner.top_k(images[:512])
    return {
        "started_at": 2048,
        "settled_at": settled,
        "kept": runner.batch_size == settled,
        "verdict": "ok" if settled < 2048 and runner.batch_size == settled else "failed",
    }


def compile_count(args) -> dict:
    """torch.compile compiles once per loaded model and shape, not once per shard."""
    from torch._dynamo.utils import counters

    counters.clear()
    names = TINY_MODELS if args.tiny else ("resnet50", "vit_small_patch16_224")
    models = [_model(name) for name in names]
    options = EvalOptions.choose(args.device, "fast", 4 if args.tiny else 128, compile=True)
    shard = _samples(10 if args.tiny else 300)
    seconds = []
    for _ in range(3):  # three shards, each with a short last batch
        started = time.monotonic()
        with ShardEvaluator(models, options) as evaluator:
            evaluator.evaluate(shard)
        seconds.append(round(time.monotonic() - started, 2))
    graphs = int(counters["stats"]["unique_graphs"])
    compiled = [m.runner(options).compiled for m in models]
    return {
        "models": list(names),
        "unique_graphs": graphs,
        "shard_seconds": seconds,
        "still_compiled": compiled,
        "verdict": "ok" if graphs <= 2 * len(names) and all(compiled) else "failed",
    }


def throughput(args) -> dict:
    """Forward img/s per architecture (random input, the worker's settings), as many as fit."""
    options = EvalOptions.choose(args.device, "fast", 8 if args.tiny else 256)
    device = device_of(args.device)
    deadline = time.monotonic() + args.seconds - 15
    rows = []
    for name in TINY_MODELS if args.tiny else THROUGHPUT_MODELS:
        if time.monotonic() > deadline:
            break
        model = _model(name)
        runner = model.runner(options)
        images = torch.randn(options.batch_size, *model.config["input_size"], device=args.device)
        runner.top_k(images)  # compiled kernels, cuDNN's choices: untimed
        steps = 2 if args.tiny else 10
        device.synchronize()
        started = time.perf_counter()
        for _ in range(steps):
            runner.top_k(images)
        seconds = time.perf_counter() - started
        rows.append(
            {
                "model": name,
                "gmacs": model.profile.gmacs,
                "params_m": model.profile.params_m,
                "input_size": list(model.config["input_size"]),
                "batch_size": runner.batch_size,
                "images_per_s": steps * len(images) / seconds,
            }
        )
        model.unload()  # its runner points back at it: freed now, not at the next collection
        del model, runner, images
        if device.is_cuda:
            torch.cuda.empty_cache()
    return {
        "device": device.label(),
        "dtype": "bf16" if options.amp else "float32",
        "channels_last": options.channels_last,
        "models": rows,
        "verdict": "ok",
    }


# ----- helpers of the checks -------------------------------------------------------------------
def _passes(check) -> dict:
    try:
        return {"pass": bool(check())}
    except Exception as error:  # noqa: BLE001 - a failed check is a result, not a crash
        return {"pass": False, "error": f"{type(error).__name__}: {str(error)[:200]}"}


def _pil_refuses(jpeg: bytes) -> bool:
    try:
        decode_rgb(jpeg)
    except Exception:  # noqa: BLE001 - any refusal counts
        return True
    return False


def _decoded_like_pil(jpegs: list[bytes], device: str) -> dict:
    decoded = decode_batch(jpegs, device)
    diffs = []
    for jpeg, image in zip(jpegs, decoded, strict=True):
        if isinstance(image, Exception):
            return {"pass": False, "error": str(image)[:200]}
        expected = torch.from_numpy(np.asarray(decode_rgb(jpeg)).copy()).permute(2, 0, 1)
        diffs.append((image.cpu().int() - expected.int()).abs().float())
    every = torch.cat([d.flatten() for d in diffs])
    # nvJPEG's inverse DCT may round differently from libjpeg-turbo: a grey level, rarely two.
    summary = {"max": float(every.max()), "mean": float(every.mean())}
    return {"pass": summary["max"] <= 3 and summary["mean"] <= 0.5, **summary}


def _bf16_against_fp32(args) -> dict:
    name = TINY_MODELS[0] if args.tiny else "resnet50"
    model = _model(name)
    samples = _samples(8 if args.tiny else 512)
    plain = EvalOptions.choose(args.device, "fast", 64, amp=False, channels_last=False)
    fp32 = evaluate_samples([model], samples, plain).predictions[name]
    gpu_like = EvalOptions.choose(args.device, "fast", 64, amp=True, channels_last=True)
    bf16 = evaluate_samples([model], samples, gpu_like)
    result = _agreement(fp32, bf16.predictions[name])
    in_top5 = [bf16.predictions[name].classes[i, 0] in fp32.classes[i] for i in range(len(samples))]
    result["top1_in_fp32_top5"] = float(np.mean(in_top5))
    result["pass"] = result["top1_in_fp32_top5"] == 1.0
    return result


def _side_stream(args) -> dict:
    """The same predictions with decoding on its own stream as on the computing stream, and the
    wall time of each."""
    model = _model(TINY_MODELS[0] if args.tiny else "resnet50")
    samples = _samples(8 if args.tiny else 512)
    options = EvalOptions.choose(args.device, "fast", 4 if args.tiny else 128)
    evaluate_samples([model], samples[:8], options)  # warm-up
    started = time.monotonic()
    ahead = evaluate_samples([model], samples, options).predictions[model.spec.name]
    ahead_s = time.monotonic() - started
    with _decoding_on_the_computing_stream():
        started = time.monotonic()
        inline = evaluate_samples([model], samples, options).predictions[model.spec.name]
        inline_s = time.monotonic() - started
    same = bool((ahead.classes == inline.classes).all()) and np.allclose(ahead.probs, inline.probs)
    return {"pass": same, "ahead_s": round(ahead_s, 3), "same_stream_s": round(inline_s, 3)}


@contextlib.contextmanager
def _decoding_on_the_computing_stream():
    ahead, mark = Device.ahead, Device.mark_ready
    setattr(Device, "ahead", lambda _device: contextlib.nullcontext())  # noqa: B010
    setattr(Device, "mark_ready", lambda _device: None)  # noqa: B010
    try:
        yield
    finally:
        setattr(Device, "ahead", ahead)  # noqa: B010
        setattr(Device, "mark_ready", mark)  # noqa: B010


PARTS = {
    "agreement": agreement,
    "confirm": confirm,
    "oom": oom,
    "compile": compile_count,
    "throughput": throughput,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=sorted(PARTS))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=60.0, help="this part's time limit")
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    result = PARTS[args.part](args)
    args.json.write_text(json.dumps(result, indent=1, default=str))
    print(f"{args.part}: {result['verdict']}")


if __name__ == "__main__":
    main()
