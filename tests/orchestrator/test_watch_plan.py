"""What the watcher decides, and its command line (no sweep runs here)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import timm

from orchestrator.cli.watch import parse_period
from orchestrator.sweeps.watch import NEW, NEW_DATA_CONFIG, NEW_WEIGHTS, Evaluated, plan_changes
from tests.factories import records_dir, saverzoo, small_zoo
from workers.registry import Entry, digest, entry

HUB_A = {"hf_hub_id": "timm/a", "source": "hf-hub"}
HUB_B = {"hf_hub_id": "timm/b", "source": "hf-hub"}
DATA = {"input_size": [3, 224, 224], "crop_pct": 0.9}


def test_each_tag_is_swept_once_for_the_right_reason():
    entries = [
        Entry("fresh.t", HUB_A, DATA),  # never seen
        Entry("same.t", HUB_A, DATA),  # evaluated with these weights
        Entry("reweighted.t", HUB_B, DATA),  # evaluated with HUB_A
        Entry("recropped.t", HUB_A, {**DATA, "crop_pct": 1.0}),  # the last snapshot had 0.9
        Entry("unfinished.t", HUB_A, DATA),  # registered, not complete on the dataset
        Entry("running.t", HUB_B, DATA),  # in a running sweep, whatever changed
        Entry("legacy.t", HUB_A, DATA),  # evaluated before weights identities were recorded
    ]
    evaluated = {
        "same.t": Evaluated(Entry("", HUB_A, {}).weights_id, True),
        "reweighted.t": Evaluated(Entry("", HUB_A, {}).weights_id, True),
        "recropped.t": Evaluated(Entry("", HUB_A, {}).weights_id, True),
        "unfinished.t": Evaluated(Entry("", HUB_A, {}).weights_id, False),
        "running.t": Evaluated(Entry("", HUB_A, {}).weights_id, True),
        "legacy.t": Evaluated(None, True),
    }
    previous = {"recropped.t": DATA, "same.t": DATA}
    changes, skipped = plan_changes(entries, evaluated, previous, active={"running.t": 7})
    assert changes == [
        ("fresh.t", NEW),
        ("reweighted.t", NEW_WEIGHTS),
        ("recropped.t", NEW_DATA_CONFIG),
        ("unfinished.t", NEW),
    ]
    assert skipped == {"up to date": 2, "in a queued or running sweep": 1}


def test_registry_entries_carry_timms_weights_and_data_fields():
    e = entry("resnet18.a1_in1k")
    assert e.weights["hf_hub_id"] == "timm/resnet18.a1_in1k"
    assert e.data_config["crop_pct"] == 0.95 and e.data_config["input_size"] == [3, 224, 224]
    changed = Entry(e.name, {**e.weights, "hf_hub_id": "timm/other"}, e.data_config)
    assert e.weights_id != changed.weights_id
    assert digest([e]) != digest([changed]) and digest([e]) == digest([entry(e.name)])


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("24h", 86400), ("1.5d", 129600)]
)
def test_periods(text, seconds):
    assert parse_period(text) == seconds


@pytest.fixture
def val(use_database, tmp_path):
    assert (
        saverzoo(
            "records", "import", records_dir(tmp_path, small_zoo()), "--dataset", "val"
        ).exit_code
        == 0
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --once for one pass, or --every PERIOD"),
        (["--once", "--every", "1h"], "give --once for one pass, or --every PERIOD"),
        (["--every", "soon"], "--every 'soon': use a number and a unit"),
        (["--once", "--dataset", "nope"], "unknown dataset 'nope'"),
        (["--once", "--models", "no_such_model_*"], "matches no pretrained model of timm"),
    ],
)
def test_bad_input_is_one_line_and_status_1(val, args, message):
    defaults = {"--dataset": "val", "--models": "resnet18.a1_in1k"}
    for option, value in defaults.items():
        if option not in args:
            args = [*args, option, value]
    result = saverzoo("watch", *args)
    assert result.exit_code == 1, result.output
    assert message in result.output


class PyPI(BaseHTTPRequestHandler):
    version = "0"

    def do_GET(self):
        body = json.dumps({"info": {"version": PyPI.version}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def pypi():
    server = HTTPServer(("127.0.0.1", 0), PyPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/pypi/timm/json"
    server.shutdown()


def test_check_pypi_goes_on_with_the_installed_timm_when_it_is_the_newest(val, pypi):
    PyPI.version = timm.__version__
    result = saverzoo(
        "watch",
        "--once",
        "--dataset",
        "val",
        "--models",
        "no_such_model_*",
        "--check-pypi",
        "--pypi-url",
        pypi,
    )
    assert f"PyPI's newest is {timm.__version__}" in result.output
    assert "matches no pretrained model" in result.output  # the pass itself ran


def test_a_newer_timm_needs_a_ray_jobs_address(val, pypi):
    PyPI.version = "999.0"
    result = saverzoo(
        "watch",
        "--once",
        "--dataset",
        "val",
        "--models",
        "resnet18.a1_in1k",
        "--check-pypi",
        "--pypi-url",
        pypi,
    )
    assert result.exit_code == 1
    assert "PyPI has timm 999.0, newer than the installed" in result.output
    assert "--ray-address http://HEAD:8265" in result.output


def test_an_unreachable_pypi_is_one_line(val):
    nobody = "http://127.0.0.1:9/pypi/timm/json"  # the discard port: nothing listens
    result = saverzoo(
        "watch",
        "--once",
        "--dataset",
        "val",
        "--models",
        "resnet18.a1_in1k",
        "--check-pypi",
        "--pypi-url",
        nobody,
    )
    assert result.exit_code == 1
    assert "cannot read timm's newest version" in result.output
