"""Every table the CLI prints reads at 80, 120 and 200 columns and in a pipe.

One SQLite zoo of timm-like names (30 characters and more) answers every command and option; each
is printed at each width (``COLUMNS``), piped (no ``COLUMNS``, not a terminal) and as JSON. At a
width no line is longer than it; every number of the JSON answer is in the text whole, as the
table formats it, or its column is named in the line that says what was left out; piped, the table
is tab-separated fields, every column, nothing cut.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace

import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from db.models import Model, ModelThroughput
from db.session import session_factory
from orchestrator.answers import FIELDS, field_text
from orchestrator.cli import app
from orchestrator.cli.tables import ELLIPSIS, NAME, NUMBER, Column, Row, Table, prose, render
from search.synthetic import SyntheticZoo
from tests.factories import image_folder
from tests.search.test_frontier import shuffled_zoo

WIDTHS = (80, 120, 200)
NAMES = [
    "mobilenetv3_small_050.lamb_in1k",
    "efficientnet_b0.ra4_e3600_r224_in1k",
    "resnet50.a1h_in1k_with_a_long_run",
    "convnext_base.fb_in22k_ft_in1k",
    "convnext_large.fb_in22k_ft_in1k_384",
    "vit_base_patch16_224.augreg2_in21k_ft_in1k",
    "vit_large_patch16_224.augreg_in21k_ft_in1k",
    "eva02_large_patch14_448.mim_m38m_ft_in22k_in1k",
]
DATASET = "imagenet-1k-validation-long-name"
OTHER = "imagenet-v2-matched-frequency-long"
DEVICE = "nvidia-h100-80gb-hbm3-sxm5"
SWEEP_PATTERNS = "test_resnet*,test_efficientnet*,test_convnext*"  # describable on the CPU


def top2_records(directory, zoo: SyntheticZoo, seed: int):
    """The zoo as TinySaver records with the top two classes and probabilities (margin)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True)
    info = {}
    for row, name in enumerate(zoo.names):
        first = zoo.predictions[row]
        second_prob = np.round(zoo.confidence[row] * rng.choice([0.0, 0.5, 1.0], first.shape), 2)
        np.savez(
            directory / f"{name}_test.npz",
            label=zoo.labels[:, None],
            preds=np.stack([first, (first + 3) % 10], axis=1)[None],
            confs=np.stack([zoo.confidence[row], second_prob], axis=1)[None].astype(np.float32),
        )
        info[name] = {"macs": float(zoo.gmacs[row] * 1e9), "params": float(zoo.gmacs[row] * 5e6)}
    (directory / "complexity_info.json").write_text(json.dumps(info))
    return directory


def cli(*args: object, columns: int | None = None):
    """The command in this process, at ``columns`` (None: piped, no COLUMNS)."""
    env = {"COLUMNS": None if columns is None else str(columns)}
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def zoo_database(tmp_path_factory):
    """Two datasets of eight models, with top-two probabilities and a measured latency (on the
    second, the cheapest model is always right: savers picked on the first and scored there are
    beaten by it); shards on disk, for the watcher's sweeps."""
    from cluster.settings import get_settings

    tmp = tmp_path_factory.mktemp("tables")
    url = f"sqlite:///{tmp / 'saverzoo.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SAVERZOO_DATABASE_URL", url)
        get_settings.cache_clear()
        zoo = replace(shuffled_zoo(len(NAMES), 400, 4), names=NAMES)
        other = shuffled_zoo(len(NAMES), 300, 9)
        other = SyntheticZoo(NAMES, zoo.gmacs, other.labels, other.predictions, other.confidence)
        other.predictions[0] = other.labels  # there the cheapest model beats every cascade
        cli("records", "import", top2_records(tmp / "a", zoo, 0), "--dataset", DATASET)
        cli("records", "import", top2_records(tmp / "b", other, 1), "--dataset", OTHER)
        with session_factory(url).begin() as session:
            for name, model_id in session.execute(select(Model.name, Model.id)):
                rate = 1e5 / zoo.gmacs[NAMES.index(name)] ** 0.8  # reorders nothing, not linear
                session.add(
                    ModelThroughput(
                        model_id=model_id, device_type=DEVICE, batch_size=256, images_per_s=rate
                    )
                )
        image_folder(tmp / "src", classes=2, per_class=2)
        shards = tmp / "shards-in-a-folder-with-a-rather-long-name"
        cli("datasets", "make-shards", tmp / "src", "--out", shards, "--name", "tiny")
        pattern = f"{shards}/tiny-{{000000..000000}}.tar"
        for width in ("piped", *WIDTHS):  # a dataset for each watcher's pass
            cli("datasets", "add", f"tiny-{width}", "--shards", pattern)
        yield url
    get_settings.cache_clear()


@pytest.fixture
def zoo(zoo_database, monkeypatch):
    from cluster.settings import get_settings

    monkeypatch.setenv("SAVERZOO_DATABASE_URL", zoo_database)
    get_settings.cache_clear()
    return zoo_database


# ----- what a table must show ------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    header: str
    text: str
    name: bool = False  # may be shortened in the middle


def pair_cells(row: dict, leading=("base", "saver")) -> list[Cell]:
    """A saver row's cells as the table formats them, from its JSON."""
    cells = [Cell(key, row[key] or "none", name=True) for key in leading if key != "saver_gmacs"]
    if "saver_gmacs" in leading:
        cells.append(Cell("GMACs", f"{row['saver_gmacs']:.4g}"))
    for field, value in row.items():
        if field in FIELDS:
            text = field_text(field, value, missing="-")
            cells.append(Cell(FIELDS[field].label, text, name=field == "frontier_model"))
    return cells


def chain_cells(row: dict) -> list[Cell]:
    cells = [Cell("base", row["base"], name=True)]
    cells += [Cell(f"saver {i + 1}", name, name=True) for i, name in enumerate(row["chain"])]
    for i, t in enumerate(row["thresholds"] or []):
        cells.append(Cell(f"threshold {i + 1}", field_text("threshold", t)))
    for i, r in enumerate(row["exit_ratios"] or []):
        cells.append(Cell(f"exits % at {i + 1}", field_text("exit_ratio", r)))
    for field in ("accuracy", "base_accuracy", "relative_cost", "saving", "frontier_saving"):
        cells.append(Cell(FIELDS[field].label, field_text(field, row[field], missing="-")))
    return [*cells, Cell("frontier", row["frontier_model"] or "-", name=True)]


def rows_of_best(answer):
    if answer and "chain" in answer[0]:
        return [chain_cells(row) for row in answer]
    return [pair_cells(row) for row in answer]


def rows_of_show(answer):
    ranked = [answer["best"], *answer["alternatives"]] if answer["best"] else []
    return [pair_cells(row, ("saver", "saver_gmacs")) for row in ranked]


def rows_of_curve(answer):
    """At most 20 points of the front, evenly spaced, its first and last among them."""
    front = answer["pareto_front"]
    shown = front if len(front) <= 20 else [front[i * (len(front) - 1) // 19] for i in range(20)]
    return [
        [Cell(FIELDS[f].label, field_text(f, point[f])) for f in point if f in FIELDS]
        for point in shown
    ]


def rows_of_models(answer):
    return [
        [
            Cell("model", row["name"], name=True),
            Cell("GMACs", f"{row['gmacs']:.4g}"),
            Cell("params (M)", f"{row['params_m']:.2f}"),
            Cell("source", row["source"]),
            *(Cell(f"img/s {d}", f"{rate:,.0f}") for d, rate in row["images_per_s"].items()),
        ]
        for row in answer["items"]
    ]


def rows_of_datasets(answer):
    return [
        [
            Cell("dataset", row["name"], name=True),
            *(
                Cell(h, str(row[k]))
                for h, k in (("samples", "num_samples"), ("classes", "num_classes"))
            ),
            *(
                Cell(h, str(row[k]))
                for h, k in (("shards", "num_shards"), ("models", "num_models"))
            ),
            Cell("budgets (pts)", ", ".join(f"{b:g}" for b in row["budgets"])),
            *([Cell("location", row["shards"], name=True)] if row["shards"] else []),
        ]
        for row in answer
    ]


def rows_of_shards(answer):
    return [
        [
            Cell("shard", str(s["index"])),
            Cell("samples", str(s["num_samples"])),
            Cell("failed", str(len(s["failed_samples"]))),
            Cell("url", s["url"], name=True),
        ]
        for s in answer["shard_list"]
    ]


def rows_of_status(answer):
    return [
        [Cell("model", name, name=True), Cell("shards done", f"{p['shards_done']}/{p['shards']}")]
        for name, p in answer["models"].items()
    ]


def rows_of_sweeps(answer):
    return [
        [
            Cell("id", str(s["id"])),
            Cell("dataset", s["dataset"], name=True),
            Cell("state", s["state"]),
            Cell("models", str(s["models"])),
            Cell("submitted at", s["submitted_at"]),
        ]
        for s in answer
    ]


# ----- reading the printed text ----------------------------------------------------------------
def in_line(cell: Cell, line: str) -> bool:
    """The cell stands whole in the line (a name may be shortened around an ellipsis)."""
    if re.search(rf"(^|\s){re.escape(cell.text)}(\s|$)", line):
        return True
    return cell.name and any(
        ELLIPSIS in token
        and cell.text.startswith(token.split(ELLIPSIS)[0])
        and cell.text.endswith(token.split(ELLIPSIS)[1])
        for token in line.split()
    )


def table_rows(lines: list[str], count: int) -> tuple[list[str], str]:
    """The ``count`` rows under the header's rule, and the prose after them, joined."""
    rule = next(i for i, line in enumerate(lines) if re.fullmatch(r"[- ]*-[- ]*", line))
    return lines[rule + 1 : rule + 1 + count], " ".join(lines[rule + 1 + count :])


def check_fitted(text: str, width: int, rows: list[list[Cell]]) -> None:
    lines = text.splitlines()
    # A path or URL longer than the width stands whole on a line of its own: copied, it works.
    too_long = [line for line in lines if len(line) > width and len(line.split()) > 1]
    assert not too_long, f"wider than {width}:\n" + "\n".join(too_long)
    assert "\t" not in text and not set("│┃─━┏┡└") & set(text)
    if not rows:
        return
    printed, after = table_rows(lines, len(rows))
    left_out = re.search(rf"left out at {width} columns: (.*?) \(--wide", after)
    for line, cells in zip(printed, rows, strict=True):
        for cell in cells:
            if not in_line(cell, line):
                assert left_out and cell.header in left_out[1], (cell, line, text)


def check_piped(text: str, rows: list[list[Cell]]) -> None:
    """Tab-separated: a header line of every column, then a line of fields a row."""
    lines = text.splitlines()
    assert not set("│┃─━┏┡└…") & set(text) and "left out" not in text
    if not rows:
        return
    header = next(i for i, line in enumerate(lines) if "\t" in line)
    headers = lines[header].split("\t")
    for line, cells in zip(lines[header + 1 :], rows, strict=False):
        fields = line.split("\t")
        assert len(fields) == len(headers), line
        for cell in cells:
            assert fields[headers.index(cell.header)] == cell.text, (cell, line)


COMMANDS = {
    "models list": (["models", "list"], rows_of_models),
    "datasets list": (["datasets", "list"], rows_of_datasets),
    "datasets show": (["datasets", "show", "tiny"], rows_of_shards),
    "savers best": (["savers", "best", "--dataset", DATASET], rows_of_best),
    "savers best --max-drop 2": (
        ["savers", "best", "--dataset", DATASET, "--max-drop", "2"],
        rows_of_best,
    ),
    "savers best --holdout": (["savers", "best", "--dataset", DATASET, "--holdout"], rows_of_best),
    "savers best --criterion paper": (
        ["savers", "best", "--dataset", DATASET, "--criterion", "paper"],
        rows_of_best,
    ),
    "savers best --cost latency": (
        ["savers", "best", "--dataset", DATASET, "--cost", "latency", "--device-type", DEVICE],
        rows_of_best,
    ),
    "savers best --score-on": (
        ["savers", "best", "--dataset", DATASET, "--score-on", OTHER],
        rows_of_best,
    ),
    "savers best --stages 3": (
        ["savers", "best", "--dataset", DATASET, "--stages", "3", "--max-drop", "1"],
        rows_of_best,
    ),
    "savers best --confidence margin": (
        ["savers", "best", "--dataset", DATASET, "--confidence", "margin"],
        rows_of_best,
    ),
    "savers show": (["savers", "show", NAMES[-1], "--dataset", DATASET], rows_of_show),
    "savers show --holdout": (
        ["savers", "show", NAMES[-1], "--dataset", DATASET, "--holdout", "--max-drop", "1"],
        rows_of_show,
    ),
    "savers show --criterion paper": (
        ["savers", "show", NAMES[-1], "--dataset", DATASET, "--criterion", "paper"],
        rows_of_show,
    ),
    "savers curve": (["savers", "curve", NAMES[-1], NAMES[0], "--dataset", DATASET], rows_of_curve),
}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_table_fits_each_width_and_pipes_as_tab_separated_fields(zoo, command):
    args, expected_rows = COMMANDS[command]
    rows = expected_rows(json.loads(cli(*args, "--json").stdout))
    assert rows or command == "datasets show"

    for width in WIDTHS:
        check_fitted(cli(*args, columns=width).stdout, width, rows)
    piped = cli(*args)
    check_piped(piped.stdout, rows)
    if command.startswith("savers"):  # the rows alone on stdout: title and notes on stderr
        assert "\t" in piped.stdout.splitlines()[0] and DATASET in piped.stderr
    wide = cli(*args, "--wide", columns=80).stdout
    assert "left out" not in wide
    for line, cells in zip(table_rows(wide.splitlines(), len(rows))[0], rows, strict=True):
        assert all(re.search(rf"(^|\s){re.escape(c.text)}(\s|$)", line) for c in cells), line


def test_the_left_out_line_names_what_a_narrow_terminal_does_not_show(zoo):
    text = cli("savers", "best", "--dataset", DATASET, "--holdout", columns=80).stdout
    joined = " ".join(text.split())  # the note may wrap, at spaces
    assert joined.count("left out at 80 columns:") == 1
    left_out = joined.split("left out at 80 columns:")[1]
    for label in ("top-1 95% CI", "saving 95% CI", "relative cost"):
        assert label in left_out
    assert "(--wide shows every column, --json every field)" in left_out
    wide = cli("savers", "best", "--dataset", DATASET, "--holdout", "--wide", columns=80).stdout
    assert "top-1 95% CI" in wide and "left out" not in wide


def test_rows_beaten_by_their_frontier_say_so_without_colour(zoo):
    args = ("savers", "best", "--dataset", DATASET, "--score-on", OTHER)
    answer = json.loads(cli(*args, "--json").stdout)
    beaten = [row["base"] for row in answer if (row["frontier_saving"] or 0) < 0]
    assert beaten
    result = cli(*args)
    piped = result.stdout
    marked = [line.split("\t")[1] for line in piped.splitlines() if line.startswith("*\t")]
    assert marked == beaten
    assert "\x1b[" not in piped
    note = f"* ({len(beaten)} rows): the frontier model alone is as accurate and cheaper"
    assert note in result.stderr and note not in piped  # the rows alone on stdout
    narrow = cli(*args, columns=80).stdout
    rows, _ = table_rows(narrow.splitlines(), len(answer))
    assert sum(line.startswith("* ") for line in rows) == len(beaten)
    assert note in " ".join(narrow.split())


def test_sweep_and_watch_tables_fit_each_width(zoo):
    passes: dict[int | None, str] = {}
    for width in (None, *WIDTHS):  # None: piped
        dataset = f"tiny-{width or 'piped'}"
        args = ["watch", "--once", "--no-start", "--dataset", dataset, "--models", SWEEP_PATTERNS]
        passes[width] = cli(*args, columns=width).stdout
    summary = json.loads(
        cli(
            "watch",
            "--once",
            "--no-start",
            "--json",
            "--dataset",
            "tiny",
            "--models",
            SWEEP_PATTERNS,
        ).stdout
    )
    changes = [
        [Cell("model", c["model"], name=True), Cell("change", f"to sweep: {c['why']}")]
        for c in summary["changes"]
    ]
    assert changes
    for width in WIDTHS:
        assert f"{summary['entries']} pretrained tags in scope" in passes[width]
        check_fitted(passes[width], width, changes)
    check_piped(passes[None], changes)

    sweeps = json.loads(cli("sweep", "list", "--json").stdout)
    status = json.loads(cli("sweep", "status", "--json").stdout)
    for args, rows in (
        (["sweep", "list"], rows_of_sweeps(sweeps)),
        (["sweep", "status"], rows_of_status(status)),
    ):
        for width in WIDTHS:
            check_fitted(cli(*args, columns=width).stdout, width, rows)
        check_piped(cli(*args).stdout, rows)


def test_a_model_and_its_numbers_in_prose_fit_each_width(zoo):
    detail = json.loads(cli("models", "show", NAMES[-1], "--json").stdout)
    for width in WIDTHS:
        text = cli("models", "show", NAMES[-1], columns=width).stdout
        assert max(map(len, text.splitlines())) <= width
        joined = " ".join(text.split())
        assert f"{detail['gmacs']:.4g} GMACs" in joined
        for dataset, accuracy in detail["accuracy"].items():
            assert f"top-1 accuracy on {dataset}: {100 * accuracy:.2f}%" in joined
        for device, rate in detail["images_per_s"].items():
            assert f"throughput on {device}: {rate:,.0f} images/s" in joined


# ----- the renderer alone: what no stored answer holds today ----------------------------
def test_a_table_too_wide_for_any_column_keeps_its_most_important_one():
    table = Table(
        [Column("relative cost", NUMBER, 1), Column("saving %", NUMBER, 2)], [Row(["0.5", "50.00"])]
    )
    for width in (1, 4, 10):
        lines = [line.text for line in render(table, width)]
        assert any("0.5" in line for line in lines) and "left out" in " ".join(lines)
    assert [line.text for line in render(Table([], []), 80)] == [""]  # nothing, no crash


def test_cells_count_their_display_width_and_stay_one_line_one_field():
    wide_name = "模型" * 20  # 40 cells in 20 characters
    table = Table(
        [Column("model", NAME), Column("GMACs", NUMBER)],
        [Row([wide_name, "1.5"]), Row(["a\tb\nc\x1b[31m", "2.5"])],
    )
    fitted = [line.text for line in render(table, 30)]
    from rich.cells import cell_len

    assert all(cell_len(line) <= 30 for line in fitted), fitted
    assert len({cell_len(line) for line in fitted[2:]}) == 1  # the rows line up, cell for cell
    piped = [line.text for line in render(table, None)]
    assert [len(line.split("\t")) for line in piped] == [2, 2, 2]
    assert "\x1b" not in "".join(fitted + piped)


def test_prose_never_breaks_a_word_a_reader_would_copy():
    url = "s3://a-bucket/with/a/long/prefix/shard-{000000..000099}.tar"
    assert url in prose(f"shards: {url}", 40)


def test_the_left_out_line_keeps_each_header_whole():
    columns = [
        Column("base", NAME),
        Column("saving 95% CI", NUMBER, 9),
        Column("params (M)", NUMBER, 8),
    ]
    table = Table(columns, [Row(["resnet50.a1_in1k", "70.10–72.30", "25.56"])])
    lines = [line.text for line in render(table, 18)]  # both left out
    assert any("saving 95% CI" in line for line in lines) and any(
        "params (M)" in line for line in lines
    )


def test_text_that_looks_like_markup_prints_as_written(capsys):
    from orchestrator.cli.console import err, out, say_error

    out.print("model [red]x[/] on [/]")
    err.print("warning: [bold]y")
    say_error("a range [0, 1] and [/]")
    captured = capsys.readouterr()
    assert "model [red]x[/] on [/]" in captured.out
    assert "warning: [bold]y" in captured.err and "a range [0, 1] and [/]" in captured.err
