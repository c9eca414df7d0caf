"""What the HTTP API refuses, and how: one database a module, on SQLite and PostgreSQL; the app in
this process (TestClient), and a real uvicorn for its access log."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import httpx
import pytest
import typer
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from cluster.validate import MAX_BATCH_SIZE
from db.models import Sweep
from db.session import session_factory
from orchestrator.cli.console import print_json
from tests.factories import (
    WRITE_TOKEN,
    api_client,
    api_server,
    auth,
    records_dir,
    saverzoo,
    small_zoo,
)
from tests.orchestrator.test_api import TOKENS

SECRET = "a-secret-in-the-query-0123456789"


@pytest.fixture(scope="module")
def four_models(module_database, tmp_path_factory) -> str:
    """Records of four models on 'val', in the module's database."""
    folder = records_dir(tmp_path_factory.mktemp("zoo"), small_zoo(num_models=4))
    imported = saverzoo("records", "import", folder, "--dataset", "val")
    assert imported.exit_code == 0, imported.output
    return module_database


@pytest.fixture(scope="module")
def served(four_models, tmp_path_factory) -> Iterator[TestClient]:
    """The app over the four models, with reports, a client with the write token (which reads
    too)."""
    with api_client(four_models, tmp_path_factory.mktemp("reports")) as client:
        client.headers.update(auth(WRITE_TOKEN))
        yield client


@pytest.fixture(scope="module")
def server(four_models, tmp_path_factory) -> Iterator[httpx.Client]:
    """``saverzoo serve`` over the four models (``client.log``: its output)."""
    tmp = tmp_path_factory.mktemp("server")
    log = tmp / "server.log"
    with api_server(log, tmp / "reports", **TOKENS) as url:
        with httpx.Client(base_url=url, headers=auth(WRITE_TOKEN), timeout=30) as client:
            client.log = log
            yield client


def sweeps_stored(url: str) -> int:
    with session_factory(url).begin() as session:
        return session.scalar(select(func.count()).select_from(Sweep))


# ----- the access log ----------------------------------------------------------------------------
def test_query_strings_never_reach_the_access_log(server):
    server.get("/v1/datasets", params={"token": SECRET})
    httpx.get(f"{server.base_url}/v1/datasets?token={SECRET}")  # refused: no bearer token
    server.get("/v1/savers", params={"dataset": "val", "api_key": SECRET})
    server.get("/report/", params={"token": SECRET})
    server.get(f"/v1/nothing?{SECRET}")

    log = server.log.read_text()
    assert '"GET /v1/datasets HTTP/1.1" 200' in log  # the access log is on, paths kept
    assert '"GET /v1/datasets HTTP/1.1" 401' in log
    assert '"GET /v1/savers HTTP/1.1" 200' in log
    assert SECRET not in log and "token=" not in log and "api_key" not in log


# ----- report paths ------------------------------------------------------------------------------
UNUSABLE_REPORT_PATHS = [
    "/report/val/%00",
    "/report/val/index.html%00.png",
    "/report/val/" + "a" * 5000,
    "/report/val/curves/" + "b" * 300 + ".png",
    "/report/val/" + "c/" * 600 + "d",
    "/report/val/%2E%2E/%2E%2E/etc/passwd",
    "/report/val/curves/%5C..%5Cx",
    "/report/%00/",
    "/report/%00",
    "/report/" + "x" * 5000 + "/",
    "/report/" + "x" * 5000,
    "/report/a%2Fb/index.html",
    "/report/..%2F..%2Fetc/",
]


def test_report_paths_that_cannot_be_file_names_are_404_in_json(server):
    for path in UNUSABLE_REPORT_PATHS:  # as uvicorn decodes them
        response = server.get(path)
        assert response.status_code == 404, (path[:80], response.text[:200])
        assert response.json()["error"], path[:80]


# ----- dataset and model names -------------------------------------------------------------------
INVALID_NAMES = ["\x00", "val\x00", "x" * 5000, "../val", "a/b", " val", "", "é" * 200]


def test_a_dataset_name_no_dataset_can_have_is_404_on_every_lookup(served):
    for name in INVALID_NAMES:
        for path in (
            "/v1/savers",
            "/v1/savers/zoo003",
            "/v1/pairs/zoo003/zoo000/curve",
            "/v1/models",
        ):
            response = served.get(path, params={"dataset": name})
            assert response.status_code == 404, (path, name[:20], response.text[:200])
            assert "unknown dataset" in response.json()["error"]


def test_a_model_name_no_model_can_have_is_404_not_a_database_error(served):
    for name in ("%00", "zoo000%00", "x" * 5000, "%01"):
        for path in (
            f"/v1/models/{name}",
            f"/v1/savers/{name}?dataset=val",
            f"/v1/pairs/{name}/zoo000/curve?dataset=val",
        ):
            response = served.get(path)
            assert response.status_code == 404, (path[:80], response.text[:200])
            assert "unknown model" in response.json()["error"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_unknown_dataset_names_at_most_five_and_the_command_that_lists_all(
    use_database, tmp_path
):
    zoo = small_zoo(num_models=2, num_samples=20)
    names = [f"set{i}" for i in range(7)]
    for name in names:
        imported = saverzoo(
            "records", "import", records_dir(tmp_path / name, zoo), "--dataset", name
        )
        assert imported.exit_code == 0, imported.output

    result = saverzoo("savers", "best", "--dataset", "nope")

    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "set0, set1, set2, set3, set4 and 2 more" in result.stderr
    assert "set5" not in result.stderr and "`saverzoo datasets list`" in result.stderr


# ----- sweep requests ----------------------------------------------------------------------------
BAD_SWEEPS = [
    ({"dataset": "val\x00"}, "dataset"),
    ({"dataset": "x" * 5000}, "dataset"),
    ({"dataset": "../val"}, "dataset"),
    ({"dataset": ""}, "dataset"),
    ({"dataset": 7}, "dataset"),
    ({"models": ["@/etc/passwd"]}, "@FILE"),
    ({"models": ["zoo000,@/etc/passwd"]}, "@FILE"),
    ({"models": ["zoo 000"]}, "model pattern"),
    ({"models": ["zoo\x00"]}, "model pattern"),
    ({"models": ["a" * 500]}, "model pattern"),
    ({"models": [""]}, "model pattern"),
    ({"models": ["zoo000", "x/y"]}, "model pattern"),
    ({"exclude": ["@secrets.txt"]}, "@FILE"),
    ({"idempotency_key": ""}, "idempotency key"),
    ({"idempotency_key": "k" * 500}, "idempotency key"),
    ({"idempotency_key": "two words"}, "idempotency key"),
]


def test_a_sweep_request_with_a_bad_dataset_or_model_pattern_is_422(served, four_models):
    body = {"dataset": "val", "models": ["zoo000"], "start": False}
    for change, message in BAD_SWEEPS:
        response = served.post("/v1/sweeps", json={**body, **change})
        assert response.status_code == 422, (change, response.text[:300])
        error = response.json()["error"]
        assert message in error, (change, error)
        assert "root:" not in error  # an @FILE is never read
    for header in (b"", "é".encode(), b"with space", b"k" * 500):
        response = served.post("/v1/sweeps", json=body, headers={"Idempotency-Key": header})
        assert response.status_code == 422, (header, response.text[:300])
        assert "Idempotency-Key" in response.json()["error"]
    assert sweeps_stored(four_models) == 0


def test_a_sweep_on_a_dataset_imported_from_records_is_422_and_leaves_no_sweep(served, four_models):
    response = served.post(
        "/v1/sweeps", json={"dataset": "val", "models": ["zoo000"], "start": False}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == (
        "dataset 'val' has no shards to evaluate (it was imported from records); sweep a "
        "dataset registered from its shards (`saverzoo datasets add`)"
    )
    assert sweeps_stored(four_models) == 0


NO_SHARDS = "has no shards to evaluate"  # refused after every option passed its checks
SWEEP = {"dataset": "val", "models": ["zoo000"], "start": False}
WRONGLY_TYPED = [
    ("batch_size", True),
    ("batch_size", "64"),
    ("batch_size", 64.0),
    ("max_attempts", False),
    ("workers", True),
    ("bundle_seconds", True),
    ("bundle_gmacs", "1"),
    ("random_weights", 1),
    ("compile", "true"),
    ("start", "false"),
    ("models", "zoo000"),
    ("input_sizes", [True]),
    ("input_sizes", ["128"]),
    ("device", 0),
    ("idempotency_key", 42),
]


def test_a_boolean_batch_size_or_any_wrongly_typed_sweep_field_is_422_naming_it(
    served, four_models
):
    for field, value in WRONGLY_TYPED:
        response = served.post("/v1/sweeps", json={**SWEEP, field: value})
        assert response.status_code == 422, (field, value, response.text[:300])
        assert f"body.{field}" in response.json()["error"], (field, value, response.json())
    assert sweeps_stored(four_models) == 0


def test_an_unknown_sweep_field_is_422_naming_it_not_dropped(served, four_models):
    response = served.post("/v1/sweeps", json={**SWEEP, "random_weight": True})

    assert response.status_code == 422, response.text
    assert response.json()["error"] == "body.random_weight: Extra inputs are not permitted"
    assert sweeps_stored(four_models) == 0


# (API field, CLI option, a value both take, a value both refuse)
SWEEP_BOUNDS = [
    ("batch_size", "--batch-size", MAX_BATCH_SIZE, MAX_BATCH_SIZE + 1),
    ("batch_size", "--batch-size", 1, 0),
    ("max_attempts", "--max-attempts", 1000, 0),
    ("cpus_per_worker", "--cpus-per-worker", 4096, 0),
    ("workers", "--workers", 1_000_000, 0),
    ("bundle_seconds", "--bundle-seconds", 0, -1),
    ("bundle_seconds", "--bundle-seconds", 86400, 86401),
    ("bundle_gmacs", "--bundle-gmacs", 1e9, 1.1e9),
]


def test_the_api_takes_and_refuses_the_same_sweep_options_as_the_cli(served, four_models):
    command = ["sweep", "submit", "--models", "zoo000", "--dataset", "val"]
    for field, option, taken, refused in SWEEP_BOUNDS:
        # Taken: refused only later, for the dataset's missing shards.
        response = served.post("/v1/sweeps", json={**SWEEP, field: taken})
        assert response.status_code == 422 and NO_SHARDS in response.json()["error"], (
            field,
            taken,
            response.text[:300],
        )
        result = saverzoo(*command, option, taken)
        assert result.exit_code == 1 and NO_SHARDS in result.stderr, (option, taken, result.output)

        response = served.post("/v1/sweeps", json={**SWEEP, field: refused})
        assert response.status_code == 422, (field, refused, response.text[:300])
        assert f"body.{field}" in response.json()["error"], (field, refused, response.json())
        result = saverzoo(*command, option, refused)
        assert result.exit_code == 1 and option in result.stderr, (option, refused, result.output)
        assert NO_SHARDS not in result.stderr
    assert sweeps_stored(four_models) == 0


# ----- JSON on the command line ------------------------------------------------------------------
@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_print_json_refuses_a_non_finite_number_in_one_line_naming_where(bad, capsys):
    with pytest.raises(typer.Exit) as exited:
        print_json({"savers": [{"base": "a", "saving": 0.5}, {"base": "b", "saving": bad}]})

    assert exited.value.exit_code == 1
    printed = capsys.readouterr()
    assert printed.out == ""  # never half a document, never NaN or Infinity
    assert len(printed.err.strip().splitlines()) == 1
    assert "$.savers[1].saving" in printed.err and "without --json" in printed.err


def test_print_json_prints_strict_json(capsys):
    print_json({"a": [1, 2.5, None, "x"]})
    assert json.loads(capsys.readouterr().out) == {"a": [1, 2.5, None, "x"]}
