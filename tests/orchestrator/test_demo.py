"""`make demo` runs `saverzoo demo`: real digits, a trained zoo, a Ray sweep, best savers.

A reduced demo (three models, one epoch) is interrupted during its sweep and run again: the second
run finishes without duplicate rows, and its best savers agree with a brute force over every
operating point computed from the stored predictions. What it prints fits 100 columns, and its
tables have the columns of the README's excerpt (generated from a full demo by
``orchestrator.demo.excerpt``, itself checked here on a copy of a README).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from db.models import SweepUnit
from db.session import session_factory
from orchestrator.demo.excerpt import (
    BEGIN,
    END,
    excerpt,
    header_differences,
    main,
    table_headers,
    with_excerpt,
)
from tests.factories import brute_force_best_saving, row_counts, stored_zoo
from tests.orchestrator.sweeping import wait_for

MODELS, SHARDS = 3, 6  # 719 validation digits in shards of 120
README = Path(__file__).resolve().parents[2] / "README.md"


def demo(workdir, **popen):
    """The reduced demo, run from the work directory's parent as a user would (COLUMNS unset)."""
    command = [
        sys.executable,
        "-m",
        "orchestrator",
        "demo",
        "--workdir",
        workdir.name,
        "--models",
        str(MODELS),
        "--epochs",
        "1",
    ]
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    return subprocess.Popen(
        command,
        env=env,
        cwd=workdir.parent,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **popen,
    )


def sweep_running(url: str) -> bool:
    try:
        with session_factory(url).begin() as session:
            return session.scalar(select(SweepUnit.id).where(SweepUnit.state == "running"))
    except Exception:  # noqa: BLE001 - the database may not exist yet
        return False


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.s3
def test_the_demo_survives_an_interrupted_sweep_and_finds_the_savers(tmp_path):
    workdir = tmp_path / "demo"
    url = f"sqlite:///{workdir / 'saverzoo.db'}"
    first = demo(workdir, start_new_session=True)
    wait_for(lambda: sweep_running(url), timeout=400, what="the demo's sweep")
    os.killpg(first.pid, signal.SIGKILL)  # interrupted mid-sweep, its Ray with it
    first.wait()

    second = demo(workdir)
    output, _ = second.communicate(timeout=600)

    assert second.returncode == 0, output
    counts = row_counts(url)
    assert counts["models"] == MODELS
    assert counts["prediction_chunks"] == MODELS * SHARDS  # nothing twice, nothing missing
    assert (workdir / "zoo.png").read_bytes().startswith(b"\x89PNG")
    zoo, accuracy = stored_zoo(url, "digits-val")
    assert len({round(a, 3) for a in accuracy.values()}) == MODELS  # they differ
    assert max(accuracy.values()) > 0.5  # chance is 0.1
    best = json.loads((workdir / "best-savers.json").read_text())
    assert any(row["saver"] for row in best)  # a non-empty best-saver table
    for row in best:
        expected = brute_force_best_saving(zoo, zoo.names.index(row["base"]))
        if row["saver"] is None:
            assert expected <= 1e-12, row
        else:
            assert row["saving"] == pytest.approx(expected, abs=1e-9), row
    too_wide = [line for line in output.splitlines() if len(line) > 100]
    assert not too_wide, "\n".join(too_wide)
    for shown in ("--max-drop 0.5 --holdout", "zoo.png", "What to type next"):
        assert shown in output
    assert header_differences(output, README.read_text()) == []


@pytest.mark.slow
def test_demo_training_gives_the_same_weights_whatever_the_thread_count(tmp_path):
    import torch
    from safetensors.torch import load_file

    from orchestrator.demo.data import digits, train

    samples = digits()[0][:96]
    weights = []
    for threads in (1, 2):
        torch.set_num_threads(threads)  # the caller's count: training must not depend on it
        path = tmp_path / f"threads-{threads}.safetensors"
        train("resnet10t", samples, path, epochs=1)
        weights.append(load_file(str(path)))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])


# ----- the README's excerpt ---------------------------------------------------------------------
OUTPUT = """saverzoo demo in demo-out: 2 timm models trained on handwritten digits, 1 epochs each
  data:  719 validation digits

$ saverzoo savers best --dataset digits-val
digits-val: best savers, accuracy drop <= 0 pts, picked on the calibration half, scored on the
other half

                                             exits   top-1
base                  saver      threshold       %       %
--------------------  ---------  ---------  ------  ------
demo-resnet18         demo-a        0.2653  100.00   99.17
left out at 60 columns: relative cost,
frontier (--wide shows every column, --json every field)

The zoo's cost against accuracy, and each base with its saver: demo-out/zoo.png
"""
README_TEXT = f"""# saverzoo

An excerpt:

{BEGIN}
```console
old output
```
{END}

More text.
"""


def test_the_excerpt_is_the_demos_output_from_its_first_query_on():
    shown = excerpt("\x1b[1msaverzoo demo\x1b[0m ...\n" + OUTPUT)
    assert shown.startswith("$ saverzoo savers best --dataset digits-val\n")
    assert shown.endswith("demo-out/zoo.png") and "\x1b" not in shown
    with pytest.raises(ValueError, match="no query"):
        excerpt("saverzoo demo in demo-out\n")


def test_the_generator_writes_the_excerpt_between_the_markers_of_a_readme_copy(tmp_path):
    readme, output = tmp_path / "README.md", tmp_path / "demo-output.txt"
    readme.write_text(README_TEXT)
    output.write_text(OUTPUT)

    main(["--readme", str(readme), "--output", str(output)])

    written = readme.read_text()
    assert written.startswith("# saverzoo\n\nAn excerpt:\n\n")
    assert written.endswith(f"{END}\n\nMore text.\n")
    assert "old output" not in written
    assert f"{BEGIN}\n```console\n$ saverzoo savers best" in written
    assert header_differences(OUTPUT, written) == []
    main(["--readme", str(readme), "--output", str(output)])  # again: the same README
    assert readme.read_text() == written
    with pytest.raises(ValueError, match="no <!-- demo-output:begin -->"):
        with_excerpt("# no markers\n", "text")


def test_tables_are_compared_by_the_columns_they_hold_not_by_row_or_by_what_fits():
    columns = {"base", "saver", "threshold", "exits %", "top-1 %", "relative cost", "frontier"}
    assert table_headers(OUTPUT) == {"$ saverzoo savers best --dataset digits-val": [columns]}
    readme = with_excerpt(README_TEXT, excerpt(OUTPUT))
    row = "demo-resnet34         demo-a        0.1000   50.00   98.00\n"
    more_rows = OUTPUT.replace("left out", row + "left out")
    assert header_differences(more_rows, readme) == []
    narrower = OUTPUT.replace("  top-1\n", "\n").replace("       %\n", "\n")
    narrower = narrower.replace("  ------\n", "\n").replace("   99.17\n", "\n")
    narrower = narrower.replace("cost,\n", "cost, top-1 %,\n")
    assert header_differences(narrower, readme) == []  # top-1 % left out, not gone
    fewer = narrower.replace("cost, top-1 %,\n", "cost,\n")
    assert header_differences(fewer, readme) == [
        "$ saverzoo savers best --dataset digits-val: the README's tables hold base, exits %, "
        "frontier, relative cost, saver, threshold, top-1 %, the demo's base, exits %, "
        "frontier, relative cost, saver, threshold"
    ]
