"""The HTTP API: its answers (FastAPI's TestClient, one database a module, on SQLite and
PostgreSQL) and what only a real server shows (uvicorn on loopback: tokens, the access log, an
unreachable database)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.factories import (
    READ_TOKEN,
    WRITE_TOKEN,
    api_client,
    api_server,
    auth,
    records_dir,
    saverzoo,
    saverzoo_json,
    small_zoo,
)
from tests.orchestrator.sweeping import MODELS

TOKENS = {"SAVERZOO_API_READ_TOKENS": READ_TOKEN, "SAVERZOO_API_WRITE_TOKENS": WRITE_TOKEN}


@pytest.fixture(scope="module")
def zoo_url(module_database, tmp_path_factory) -> str:
    """Eight models' records on the dataset 'val' (and on 'other', other samples)."""
    tmp = tmp_path_factory.mktemp("zoo")
    zoo = small_zoo(num_models=8)
    imported = saverzoo("records", "import", records_dir(tmp, zoo), "--dataset", "val")
    assert imported.exit_code == 0, imported.output
    other = small_zoo(num_models=8, num_samples=300, seed=3)
    other = type(other)(zoo.names, zoo.gmacs, other.labels, other.predictions, other.confidence)
    imported = saverzoo(
        "records", "import", records_dir(tmp / "other", other), "--dataset", "other"
    )
    assert imported.exit_code == 0, imported.output
    return module_database


@pytest.fixture(scope="module")
def zoo_api(zoo_url, tmp_path_factory) -> Iterator[TestClient]:
    with api_client(zoo_url, tmp_path_factory.mktemp("reports")) as client:
        yield client


@pytest.fixture(scope="module")
def zoo_server(zoo_url, tmp_path_factory) -> Iterator[httpx.Client]:
    """``saverzoo serve`` over the zoo, with a read and a write token; a client with the read
    token (``client.log``: the server's output)."""
    tmp = tmp_path_factory.mktemp("server")
    log = tmp / "server.log"
    with api_server(log, tmp / "reports", **TOKENS) as url:
        with httpx.Client(base_url=url, headers=auth(READ_TOKEN), timeout=30) as client:
            client.log, client.url = log, url
            yield client


# (API path, the CLI command answering the same query)
SAME_ANSWERS = [
    ("/v1/datasets", ["datasets", "list"]),
    ("/v1/models?limit=100", ["models", "list", "--limit", "100"]),
    (
        "/v1/models?name=zoo00*&offset=2&limit=3",
        ["models", "list", "--name", "zoo00*", "--offset", "2", "--limit", "3"],
    ),
    (
        "/v1/models?dataset=val&source=records",
        ["models", "list", "--dataset", "val", "--source", "records", "--limit", "100"],
    ),
    ("/v1/models/zoo003", ["models", "show", "zoo003"]),
    ("/v1/savers?dataset=val", ["savers", "best", "--dataset", "val"]),
    (
        "/v1/savers?dataset=val&max_drop=0.5&holdout=true",
        ["savers", "best", "--dataset", "val", "--max-drop", "0.5", "--holdout"],
    ),
    (
        "/v1/savers?dataset=val&criterion=paper",
        ["savers", "best", "--dataset", "val", "--criterion", "paper"],
    ),
    (
        "/v1/savers?dataset=val&score_on=other",
        ["savers", "best", "--dataset", "val", "--score-on", "other"],
    ),
    ("/v1/savers/zoo007?dataset=val", ["savers", "show", "zoo007", "--dataset", "val"]),
    (
        "/v1/savers/zoo007?dataset=val&max_drop=1&holdout=true&alternatives=2",
        [
            "savers",
            "show",
            "zoo007",
            "--dataset",
            "val",
            "--max-drop",
            "1",
            "--holdout",
            "--alternatives",
            "2",
        ],
    ),
    (
        "/v1/savers/zoo006?dataset=val&criterion=paper",
        ["savers", "show", "zoo006", "--dataset", "val", "--criterion", "paper"],
    ),
    (
        "/v1/pairs/zoo007/zoo002/curve?dataset=val",
        ["savers", "curve", "zoo007", "zoo002", "--dataset", "val"],
    ),
    ("/v1/sweeps", ["sweep", "list"]),
]


def test_every_answer_equals_the_cli_json_for_the_same_query(zoo_api):
    for path, command in SAME_ANSWERS:
        response = zoo_api.get(path)
        assert response.status_code == 200, (path, response.text)
        assert response.json() == saverzoo_json(*command), path


def test_the_report_tabulates_the_same_rows_as_the_api(zoo_api, tmp_path):
    """The report's savers.csv has the API's bases, savers, thresholds and frontier models."""
    import csv
    import io

    rows = zoo_api.get("/v1/savers?dataset=val&max_drop=0.5").json()
    out = tmp_path / "report"
    written = saverzoo("report", "--dataset", "val", "--max-drop", "0.5", "--out", out)
    assert written.exit_code == 0, written.output
    table = list(csv.DictReader(io.StringIO((out / "savers.csv").read_text())))
    assert [(r["base"], r["saver"] or None) for r in table] == [
        (r["base"], r["saver"]) for r in rows
    ]
    for csv_row, row in zip(table, rows, strict=True):
        if row["saver"] is not None:
            assert float(csv_row["threshold"]) == pytest.approx(row["threshold"], abs=1e-6)
            assert float(csv_row["saving_pct"]) == pytest.approx(100 * row["saving"], abs=1e-3)
        assert (csv_row["frontier_model"] or None) == row["frontier_model"]


def test_three_stage_answers_are_the_stored_chains_once_computed(zoo_api):
    path = "/v1/savers?dataset=val&stages=3&candidates=3"
    refused = zoo_api.get(path)
    assert refused.status_code == 409
    assert "saverzoo savers best --dataset val --stages 3" in refused.json()["error"]
    computed = saverzoo_json(
        "savers", "best", "--dataset", "val", "--stages", "3", "--candidates", "3"
    )
    answered = zoo_api.get(path).json()
    assert answered == computed
    assert len(answered) == 8 and all(isinstance(row["chain"], list) for row in answered)


def test_the_answers_are_the_stored_search_results(zoo_api):
    best = zoo_api.get("/v1/savers/zoo007", params={"dataset": "val", "alternatives": 100}).json()
    listed = {row["base"]: row for row in zoo_api.get("/v1/savers?dataset=val").json()}
    assert best["best"] is not None
    assert best["best"]["saver"] == listed["zoo007"]["saver"]
    assert best["best"]["saving"] == listed["zoo007"]["saving"]
    savings = [best["best"]["saving"]] + [a["saving"] for a in best["alternatives"]]
    assert savings == sorted(savings, reverse=True)  # ranked best first
    assert best["candidates"] == 7  # every cheaper model
    assert len(best["alternatives"]) + 1 == sum(s > 0 for s in savings)  # every saver that saves
    page = zoo_api.get("/v1/models", params={"limit": 3, "offset": 3}).json()
    assert page["total"] == 8 and [m["name"] for m in page["items"]] == [
        "zoo003",
        "zoo004",
        "zoo005",
    ]


# Each kind of saver row, and the fields it reports (the CLI's --json gives the same keys).
ROW_KINDS = [
    ("/v1/savers?dataset=val", "BudgetRow"),
    ("/v1/savers?dataset=val&criterion=paper", "PaperRow"),
    ("/v1/savers?dataset=val&holdout=true", "HoldoutRow"),
    ("/v1/savers?dataset=val&score_on=other", "TransferRow"),
]


def test_the_openapi_document_describes_every_field_of_every_answer(zoo_api):
    schema = zoo_api.get("/openapi.json").json()
    models = schema["components"]["schemas"]
    for name, model in models.items():
        if name in ("HTTPValidationError", "ValidationError", "SweepRequest"):
            continue  # FastAPI's own, and the request body
        for field, spec in model["properties"].items():
            assert spec.get("description"), f"{name}.{field} has no description"
    for path, kind in ROW_KINDS:
        keys = set(models[kind]["properties"])
        assert all(set(row) == keys for row in zoo_api.get(path).json()), (path, kind)
    paths = schema["paths"]
    answers = {
        "/v1/datasets": "DatasetSummary",
        "/v1/models": "ModelsPage",
        "/v1/models/{name}": "ModelDetail",
        "/v1/savers/{base}": "SaversOfBase",
        "/v1/pairs/{base}/{saver}/curve": "PairCurve",
        "/v1/sweeps/{sweep_id}": "SweepStatus",
    }
    for path, model in answers.items():
        ok = paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert model in str(ok), (path, ok)
    rows = paths["/v1/savers"]["get"]["responses"]["200"]["content"]["application/json"]
    assert {"BudgetRow", "PaperRow", "HoldoutRow", "TransferRow", "ChainRow"} <= {
        ref["$ref"].rsplit("/", 1)[-1] for ref in rows["schema"]["items"]["anyOf"]
    }
    assert "ErrorAnswer" in str(paths["/v1/savers"]["get"]["responses"]["422"])


# A parameter error as each asker words it: the API's query parameter, the CLI's flag.
PARAMETER_ERRORS = [
    (
        "/v1/savers?dataset=val&device_type=cpu",
        ["savers", "best", "--dataset", "val", "--device-type", "cpu"],
        "device_type picks latency measurements; it needs cost latency",
        "--device-type picks latency measurements; it needs --cost latency",
    ),
    (
        "/v1/savers?dataset=val&cost=latency",
        ["savers", "best", "--dataset", "val", "--cost", "latency"],
        "cost latency needs device_type (no model of 'val' has a measured throughput yet)",
        "--cost latency needs --device-type (no model of 'val' has a measured throughput yet)",
    ),
    (
        "/v1/savers?dataset=val&criterion=paper&max_drop=1",
        ["savers", "best", "--dataset", "val", "--criterion", "paper", "--max-drop", "1"],
        "max_drop sets a budget; it cannot be combined with criterion paper",
        "--max-drop sets a budget; it cannot be combined with --criterion paper",
    ),
    (
        "/v1/savers?dataset=val&score_on=other&holdout=true",
        ["savers", "best", "--dataset", "val", "--score-on", "other", "--holdout"],
        "score_on already scores on other data, in GMACs: drop holdout and cost latency",
        "--score-on already scores on other data, in GMACs: drop --holdout and --cost latency",
    ),
    (
        "/v1/savers?dataset=val&score_on=val",
        ["savers", "best", "--dataset", "val", "--score-on", "val"],
        "score_on 'val' is the dataset itself; drop it",
        "--score-on 'val' is the dataset itself; drop it",
    ),
    (
        "/v1/savers?dataset=val&stages=3&confidence=learned",
        ["savers", "best", "--dataset", "val", "--stages", "3", "--confidence", "learned"],
        "stages 3 exits on the top-1 probability: drop confidence learned",
        "--stages 3 exits on the top-1 probability: drop --confidence learned",
    ),
]


def test_a_parameter_error_names_the_query_parameter_in_the_api_and_the_flag_in_the_cli(zoo_api):
    for path, command, api_words, cli_words in PARAMETER_ERRORS:
        response = zoo_api.get(path)
        assert response.status_code == 422, (path, response.text)
        assert response.json() == {"error": api_words}
        result = saverzoo(*command)
        assert result.exit_code == 1, command
        assert result.stderr.strip() == f"error: {cli_words}", command


BAD_REQUESTS = [
    ("/v1/models/nope", 404, "unknown model 'nope'"),
    ("/v1/savers?dataset=nope", 404, "unknown dataset 'nope'"),
    ("/v1/savers/nope?dataset=val", 404, "unknown model 'nope'"),
    ("/v1/pairs/zoo007/nope/curve?dataset=val", 404, "unknown model 'nope'"),
    ("/v1/sweeps/99", 404, "no sweep 99"),
    ("/v1/savers", 422, "query.dataset: Field required"),
    ("/v1/savers?dataset=val&max_drop=-1", 422, "query.max_drop"),
    ("/v1/savers?dataset=val&max_drop=abc", 422, "query.max_drop"),
    ("/v1/savers?dataset=val&max_drop=0.3", 422, "keeps the budgets 0, 0.1, 0.5, 1, 2"),
    ("/v1/savers?dataset=val&max_drop=0.123", 422, "max_drop 0.123 has more than two decimals"),
    ("/v1/savers?dataset=val&criterion=best", 422, "query.criterion"),
    ("/v1/savers?dataset=val&cost=latency&device_type=cpu", 422, "no model of 'val' has a"),
    ("/v1/savers/zoo000?dataset=val&alternatives=-1", 422, "query.alternatives"),
    ("/v1/pairs/zoo001/zoo007/curve?dataset=val", 422, "is not cheaper than"),
    ("/v1/models?limit=0", 422, "query.limit"),
    ("/v1/sweeps/0", 422, "path.sweep_id"),
    ("/v1/nothing-here", 404, "Not Found"),
]


def test_unknown_names_are_404_and_bad_parameters_422_in_json(zoo_api):
    for path, status, message in BAD_REQUESTS:
        response = zoo_api.get(path)
        assert response.status_code == status, (path, response.text)
        assert message in response.json()["error"], (path, response.json())


# ----- a real server: tokens and the access log; what the settings change ---------------------
def test_reads_need_a_token_and_submitting_needs_a_write_token(zoo_server):
    url = zoo_server.url
    no_token = httpx.get(f"{url}/v1/datasets")
    assert no_token.status_code == 401 and no_token.headers["www-authenticate"] == "Bearer"
    assert "bearer token" in no_token.json()["error"]
    assert httpx.get(f"{url}/v1/datasets", headers=auth("not-a-token-at-all")).status_code == 401
    assert httpx.get(f"{url}/v1/datasets", headers=auth(WRITE_TOKEN)).status_code == 200
    body = {"dataset": "val", "models": ["zoo000"]}
    assert httpx.post(f"{url}/v1/sweeps", json=body).status_code == 401
    assert (
        httpx.post(f"{url}/v1/sweeps", json=body, headers=auth(READ_TOKEN + "x")).status_code == 401
    )
    refused = httpx.post(f"{url}/v1/sweeps", json=body, headers=auth(READ_TOKEN))
    assert refused.status_code == 403 and "write token" in refused.json()["error"]
    for probe in ("/healthz", "/readyz", "/openapi.json"):
        assert httpx.get(f"{url}{probe}").status_code == 200, probe


def test_tokens_never_reach_the_log(zoo_server):
    zoo_server.get("/v1/datasets")
    httpx.get(f"{zoo_server.url}/v1/datasets", headers=auth("a-wrong-token-0123456789"))
    httpx.post(f"{zoo_server.url}/v1/sweeps", json={}, headers=auth(WRITE_TOKEN))
    log = zoo_server.log.read_text()
    assert "GET /v1/datasets" in log  # the access log is on
    for token in (READ_TOKEN, WRITE_TOKEN, "a-wrong-token-0123456789"):
        assert token not in log


def test_an_unreachable_database_is_503_not_a_crash():
    down = "postgresql+psycopg://postgres@127.0.0.1:9/none"  # nothing listens on the discard port
    with api_client(down) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json() == {"error": "the database is unreachable"}
        read = client.get("/v1/datasets")
        assert read.status_code == 503
        assert read.json() == {"error": "the database is unreachable; try again shortly"}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_open_reads_need_no_token_but_submitting_still_does(use_database, tmp_path):
    with api_client(use_database, api_open_read=True) as client:
        client.headers.clear()
        assert client.get("/v1/datasets").json() == []
        refused = client.post("/v1/sweeps", json={})
        assert refused.status_code == 401 and "write token" in refused.json()["error"]


def test_serve_refuses_an_exposed_address_without_tokens(use_database):
    result = saverzoo("serve", "--host", "0.0.0.0")
    assert result.exit_code == 1
    assert "no API token is configured" in result.output


@pytest.mark.slow
def test_a_sweep_submitted_over_http_is_queued_as_the_cli_reports_it(
    sweep_dataset, use_database, tmp_path
):
    with api_client(use_database) as client:
        write = auth(WRITE_TOKEN)
        body = {"dataset": "tiny", "models": MODELS[:2], "start": False, "batch_size": 4}
        created = client.post("/v1/sweeps", json=body, headers=write)
        assert created.status_code == 201, created.text
        sweep = created.json()
        assert sweep["state"] == "queued" and sweep["started"] is None
        assert set(sweep["models"]) == set(MODELS[:2])
        shown = client.get(f"/v1/sweeps/{sweep['id']}", headers=write).json()
        assert shown == saverzoo_json("sweep", "status", str(sweep["id"]))
        assert client.get("/v1/sweeps", headers=write).json() == saverzoo_json("sweep", "list")
        for bad, status, message in [
            ({**body, "dataset": "nope"}, 404, "unknown dataset 'nope'"),
            ({**body, "models": ["no_such_arch_*"]}, 422, "no_such_arch_*"),
            ({**body, "batch_size": 0}, 422, "body.batch_size"),
            ({**body, "models": []}, 422, "body.models"),
        ]:
            refused = client.post("/v1/sweeps", json=bad, headers=write)
            assert refused.status_code == status, refused.text
            assert message in refused.json()["error"]
        assert len(saverzoo_json("sweep", "list")) == 1  # refused submissions leave nothing
