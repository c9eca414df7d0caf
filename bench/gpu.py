"""Everything a GPU should measure and confirm, as one command with a time limit per part.

    python -m bench.gpu --out DIR [--device cuda] [--tiny]

A GPU comes for minutes, so the whole measurement is prepared and proven on the CPU first
(``--device cpu --tiny``, as a test runs it). Each part runs in a process of its own with its own
time limit: a part that fails or hangs loses only itself. ``DIR/summary.json`` holds each part's
status, seconds, last message and results; ``DIR/log.txt`` the parts' output (two files: a remote
machine sends back a few files only). One line a part is printed. The full run is sized to finish
in about 9 minutes on an H100 or H200.

Parts (``bench.gpu_parts`` holds those that are not benches of their own):
  worker      ``python -m bench.worker``: each model's forward ceiling, the decode-once worker
              from shards and one timm-style DataLoader per model (goals: the zoo's decode-once
              time within 1.11x the sum of the ceilings, and 4x faster than per-model loaders)
  cascade     ``python -m bench.cascade``: measured against predicted relative cost
  agreement   fast mode against reference mode: top-1 agreement and the pixel bound
  confirm     what only a GPU can confirm (docs/gpu.md), one pass/fail line each
  oom         an out-of-memory batch decays, and the size it settles on
  compile     torch.compile compiles once per model and shape, not once per shard
  throughput  forward img/s per timm architecture, as many as fit: the cost model's table
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Seconds per part, full run and --tiny. The full run's sum (about 9 minutes with each
# process's start) fits a 10-minute call; each part's own loop stops itself before its limit
# where it can, and the limit is the backstop.
LIMITS = {
    "confirm": (75, 120),
    "oom": (40, 60),
    "compile": (70, 180),
    "agreement": (110, 120),
    "worker": (130, 180),
    "cascade": (45, 120),
    "throughput": (60, 120),
}
WORKER_FULL = ["--images", "3000", "--shard-size", "500", "--batch-size", "256", "--steps", "20"]
WORKER_TINY = [
    "--images",
    "6",
    "--shard-size",
    "4",
    "--batch-size",
    "2",
    "--steps",
    "1",
    "--models",
    "test_resnet,test_efficientnet",
]
CASCADE_FULL = ["--images", "512", "--batch-size", "128"]
CASCADE_TINY = ["--images", "4", "--batch-size", "2", "--pairs", "test_efficientnet:test_resnet"]


def command(part: str, args: argparse.Namespace) -> list[str]:
    """The process that runs ``part``."""
    out = str(args.work / f"{part}.json")
    if part == "worker":
        sizes = WORKER_TINY if args.tiny else WORKER_FULL
        workdir = str(args.work / "shards")
        return [
            "-m",
            "bench.worker",
            "--device",
            args.device,
            *sizes,
            "--workdir",
            workdir,
            "--json",
            out,
        ]
    if part == "cascade":
        sizes = CASCADE_TINY if args.tiny else CASCADE_FULL
        return ["-m", "bench.cascade", "--device", args.device, *sizes, "--json", out]
    tiny = ["--tiny"] if args.tiny else []
    limit = str(LIMITS[part][1 if args.tiny else 0])
    return [
        "-m",
        "bench.gpu_parts",
        part,
        "--device",
        args.device,
        "--json",
        out,
        "--seconds",
        limit,
        *tiny,
    ]


def run_part(part: str, args: argparse.Namespace) -> dict:
    """One part in its own process; its status, seconds and last line of output."""
    limit = LIMITS[part][1 if args.tiny else 0]
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, *command(part, args)],
            capture_output=True,
            text=True,
            timeout=limit + 30,  # the backstop of a part that cannot stop itself
        )
    except subprocess.TimeoutExpired as stopped:  # what it printed says how far it got
        printed = [_text(stopped.stdout), _text(stopped.stderr)]
        with open(args.out / "log.txt", "a") as log:
            log.write(f"===== {part} (stopped after {limit + 30} s)\n" + "\n".join(printed) + "\n")
        return _status(part, "timeout", started, f"stopped after {limit + 30} s")
    output = (done.stdout + done.stderr).strip().splitlines()
    with open(args.out / "log.txt", "a") as log:
        log.write(f"===== {part} (exit {done.returncode})\n" + "\n".join(output[-300:]) + "\n")
    if done.returncode != 0:
        return _status(part, "failed", started, output[-1] if output else f"exit {done.returncode}")
    path = args.work / f"{part}.json"
    result = json.loads(path.read_text()) if path.exists() else {}
    verdict = result.get("verdict", "ok") if isinstance(result, dict) else "ok"
    return _status(part, verdict, started, output[-1] if output else "", result)


def _text(output: bytes | str | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def _status(part: str, status: str, started: float, message: str, result=None) -> dict:
    return {
        "part": part,
        "status": status,
        "seconds": round(time.monotonic() - started, 1),
        "message": message[-300:],
        "result": result,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSON results")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny models and sizes (a CPU test)")
    parser.add_argument("--parts", default=",".join(LIMITS), help="comma-separated, in order")
    args = parser.parse_args(argv)
    parts = args.parts.split(",")
    unknown = [part for part in parts if part not in LIMITS]
    if unknown:
        parser.error(f"unknown part {unknown[0]!r}; the parts are {', '.join(LIMITS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "log.txt").write_text("")
    args.work = Path(tempfile.mkdtemp(prefix="saverzoo-gpu-bench-"))  # shards, parts' results
    summary = []
    for part in parts:
        summary.append(run_part(part, args))
        line = summary[-1]
        print(
            f"{line['part']:<11} {line['status']:<8} {line['seconds']:>6.1f} s  {line['message']}",
            flush=True,
        )
        (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    return 0 if all(s["status"] in ("ok", "skipped") for s in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
