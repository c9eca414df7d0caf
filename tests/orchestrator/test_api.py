"""The HTTP API, served by a real uvicorn on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import httpx
import pytest

from tests.factories import (
    READ_TOKEN,
    WRITE_TOKEN,
    api_server,
    auth,
    records_dir,
    saverzoo,
    saverzoo_json,
    small_zoo,
)
from tests.orchestrator.sweeping import MODELS

TOKENS = {"SAVERZOO_API_READ_TOKENS": READ_TOKEN, "SAVERZOO_API_WRITE_TOKENS": WRITE_TOKEN}


@pytest.fixture
def zoo_api(use_database, tmp_path):
    """Eight models' records on the dataset 'val' (and on 'other', other samples), and a server
    with a read and a write token."""
    zoo = small_zoo(num_models=8)
    imported = saverzoo("records", "import", records_dir(tmp_path, zoo), "--dataset", "val")
    assert imported.exit_code == 0, imported.output
    other = small_zoo(num_models=8, num_samples=300, seed=3)
    other = type(other)(zoo.names, zoo.gmacs, other.labels, other.predictions, other.confidence)
    imported = saverzoo(
        "records", "import", records_dir(tmp_path / "other", other), "--dataset", "other"
    )
    assert imported.exit_code == 0, imported.output
    log = tmp_path / "server.log"
    with api_server(log, tmp_path / "reports", **TOKENS) as url:
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


def test_three_stage_answers_are_the_stored_chains_once_computed(zoo_api):
    path = "/v1/savers?dataset=val&stages=3&candidates=3"
    refused = zoo_api.get(path)
    assert refused.status_code == 409
    assert "saverzoo savers best --dataset val --stages 3" in refused.json()["error"]
    computed = saverzoo_json(
        "savers", "best", "--dataset", "val", "--stages", "3", "--candidates", "3"
    )
    assert zoo_api.get(path).json() == computed


def test_the_answers_are_the_stored_search_results(zoo_api):
    best = zoo_api.get("/v1/savers/zoo007", params={"dataset": "val", "alternatives": 100}).json()
    listed = {row["base"]: row for row in zoo_api.get("/v1/savers?dataset=val").json()}
    assert best["best"]["saver"] == listed["zoo007"]["saver"]
    assert best["best"]["saving"] == listed["zoo007"]["saving"]
    savings = [best["best"]["saving"]] + [a["saving"] for a in best["alternatives"]]
    assert savings == sorted(savings, reverse=True)  # ranked best first
    assert len(best["alternatives"]) + 1 <= best["candidates"] == 7  # every cheaper model
    page = zoo_api.get("/v1/models", params={"limit": 3, "offset": 3}).json()
    assert page["total"] == 8 and [m["name"] for m in page["items"]] == [
        "zoo003",
        "zoo004",
        "zoo005",
    ]


def test_reads_need_a_token_and_submitting_needs_a_write_token(zoo_api):
    url = zoo_api.url
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


def test_tokens_never_reach_the_log(zoo_api):
    zoo_api.get("/v1/datasets")
    httpx.get(f"{zoo_api.url}/v1/datasets", headers=auth("a-wrong-token-0123456789"))
    httpx.post(f"{zoo_api.url}/v1/sweeps", json={}, headers=auth(WRITE_TOKEN))
    log = zoo_api.log.read_text()
    assert "GET /v1/datasets" in log  # the access log is on
    for token in (READ_TOKEN, WRITE_TOKEN, "a-wrong-token-0123456789"):
        assert token not in log


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
    ("/v1/savers?dataset=val&max_drop=0.123", 422, "more than two decimals"),
    ("/v1/savers?dataset=val&criterion=best", 422, "query.criterion"),
    ("/v1/savers?dataset=val&criterion=paper&max_drop=1", 422, "cannot be combined"),
    ("/v1/savers?dataset=val&cost=latency&device_type=cpu", 422, "no model of 'val' has a"),
    ("/v1/savers/zoo000?dataset=val&alternatives=-1", 422, "query.alternatives"),
    ("/v1/pairs/zoo001/zoo007/curve?dataset=val", 422, "is not cheaper than"),
    ("/v1/models?limit=0", 422, "query.limit"),
    ("/v1/sweeps/0", 422, "path.sweep_id"),
    ("/v1/nothing-here", 404, "Not Found"),
]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_unknown_names_are_404_and_bad_parameters_422_in_json(zoo_api):
    for path, status, message in BAD_REQUESTS:
        response = zoo_api.get(path)
        assert response.status_code == status, (path, response.text)
        assert message in response.json()["error"], (path, response.json())


def test_an_unreachable_database_is_503_not_a_crash(tmp_path):
    down = "postgresql+psycopg://postgres@127.0.0.1:9/none"  # nothing listens on the discard port
    with api_server(tmp_path / "server.log", SAVERZOO_DATABASE_URL=down, **TOKENS) as url:
        assert httpx.get(f"{url}/healthz").status_code == 200
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 503 and "unreachable" in ready.json()["error"]
        read = httpx.get(f"{url}/v1/datasets", headers=auth(READ_TOKEN))
        assert read.status_code == 503 and "unreachable" in read.json()["error"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_open_reads_need_no_token_but_submitting_still_does(use_database, tmp_path):
    with api_server(tmp_path / "server.log", SAVERZOO_API_OPEN_READ="1") as url:
        assert httpx.get(f"{url}/v1/datasets").json() == []
        assert httpx.post(f"{url}/v1/sweeps", json={}).status_code == 401


def test_serve_refuses_an_exposed_address_without_tokens(use_database):
    result = saverzoo("serve", "--host", "0.0.0.0")
    assert result.exit_code == 1
    assert "no API token is configured" in result.output


@pytest.mark.slow
def test_a_sweep_submitted_over_http_is_queued_as_the_cli_reports_it(
    sweep_dataset, use_database, tmp_path
):
    with api_server(tmp_path / "server.log", **TOKENS) as url:
        write = auth(WRITE_TOKEN)
        body = {"dataset": "tiny", "models": MODELS[:2], "start": False, "batch_size": 4}
        created = httpx.post(f"{url}/v1/sweeps", json=body, headers=write, timeout=60)
        assert created.status_code == 201, created.text
        sweep = created.json()
        assert sweep["state"] == "queued" and sweep["started"] is None
        assert set(sweep["models"]) == set(MODELS[:2])
        shown = httpx.get(f"{url}/v1/sweeps/{sweep['id']}", headers=write).json()
        assert shown == saverzoo_json("sweep", "status", str(sweep["id"]))
        assert httpx.get(f"{url}/v1/sweeps", headers=write).json() == saverzoo_json("sweep", "list")
        for bad, status, message in [
            ({**body, "dataset": "nope"}, 404, "unknown dataset 'nope'"),
            ({**body, "models": ["no_such_arch_*"]}, 422, "no_such_arch_*"),
            ({**body, "batch_size": 0}, 422, "body.batch_size"),
            ({**body, "models": []}, 422, "body.models"),
        ]:
            refused = httpx.post(f"{url}/v1/sweeps", json=bad, headers=write, timeout=60)
            assert refused.status_code == status, refused.text
            assert message in refused.json()["error"]
        assert len(saverzoo_json("sweep", "list")) == 1  # refused submissions leave nothing
