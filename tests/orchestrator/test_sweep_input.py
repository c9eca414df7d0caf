"""Submitting sweeps: idempotency keys and datasets without shards, over HTTP and the CLI.

Every sweep here is only queued (``start: false``, or refused before it starts): no Ray runs.
"""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from db.models import Sweep
from db.session import session_factory
from tests.factories import (
    WRITE_TOKEN,
    api_client,
    auth,
    image_folder,
    records_dir,
    saverzoo,
    small_zoo,
)

pytestmark = pytest.mark.slow

BODY = {"dataset": "tiny", "models": ["test_resnet"], "random_weights": True, "start": False}


@pytest.fixture
def datasets(use_database, tmp_path):
    """'tiny': two shards of real JPEGs; 'val': records of four models, no shards."""
    image_folder(tmp_path / "src", classes=2, per_class=2)
    made = saverzoo(
        "datasets",
        "make-shards",
        tmp_path / "src",
        "--out",
        tmp_path / "shards",
        "--name",
        "tiny",
        "--shard-size",
        "2",
    )
    assert made.exit_code == 0, made.output
    imported = saverzoo(
        "records", "import", records_dir(tmp_path, small_zoo(num_models=4)), "--dataset", "val"
    )
    assert imported.exit_code == 0, imported.output
    return use_database


@pytest.fixture
def api(datasets):
    """The app in this process (what is tested is the store's answer to a request, not the
    process boundary); concurrent requests run in its thread pool as under uvicorn."""
    with api_client(datasets) as client:
        client.headers.update(auth(WRITE_TOKEN))
        yield client


def sweep_ids(url: str) -> list[int]:
    with session_factory(url).begin() as session:
        return list(session.scalars(select(Sweep.id).order_by(Sweep.id)))


def test_a_repeated_request_with_its_idempotency_key_answers_the_first_sweep(api, datasets):
    first = api.post("/v1/sweeps", json=BODY, headers={"Idempotency-Key": "nightly-42"})
    assert first.status_code == 201, first.text
    again = api.post("/v1/sweeps", json=BODY, headers={"Idempotency-Key": "nightly-42"})
    in_body = api.post("/v1/sweeps", json={**BODY, "idempotency_key": "nightly-42"})

    assert again.status_code == in_body.status_code == 200, (again.text, in_body.text)
    assert again.json()["id"] == in_body.json()["id"] == first.json()["id"]
    assert again.json()["state"] == "queued" and again.json()["started"] is None
    assert sweep_ids(datasets) == [first.json()["id"]]

    other = api.post("/v1/sweeps", json=BODY, headers={"Idempotency-Key": "nightly-43"})
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    plain = [api.post("/v1/sweeps", json=BODY) for _ in range(2)]  # no key: a sweep each
    assert [r.status_code for r in plain] == [201, 201]
    assert len(sweep_ids(datasets)) == 4


def test_the_same_idempotency_key_with_another_request_is_409(api, datasets):
    key = {"Idempotency-Key": "nightly-42"}
    first = api.post("/v1/sweeps", json=BODY, headers=key)
    assert first.status_code == 201, first.text

    for change in (
        {"batch_size": 8},
        {"models": ["test_resnet", "test_vit"]},
        {"exclude": ["test_v*"]},
        {"random_weights": False},
    ):
        response = api.post("/v1/sweeps", json={**BODY, **change}, headers=key)
        assert response.status_code == 409, (change, response.text)
        assert response.json()["error"] == (
            f"the idempotency key 'nightly-42' was used for sweep {first.json()['id']}, a "
            "different request; send a new key for a new sweep"
        )
    header_and_body = api.post("/v1/sweeps", json={**BODY, "idempotency_key": "other"}, headers=key)
    assert header_and_body.status_code == 422 and "differ" in header_and_body.json()["error"]
    assert sweep_ids(datasets) == [first.json()["id"]]


def test_identical_requests_sent_at_once_make_one_sweep(api, datasets):
    def post(_):
        return api.post("/v1/sweeps", json=BODY, headers={"Idempotency-Key": "at-once"})

    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(post, range(4)))

    assert sorted(r.status_code for r in responses) == [200, 200, 200, 201], [
        r.text for r in responses
    ]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(sweep_ids(datasets)) == 1


def test_sweep_submit_with_the_same_idempotency_key_finds_the_first_sweep(api, datasets):
    first = api.post("/v1/sweeps", json=BODY, headers={"Idempotency-Key": "from-cron"})
    assert first.status_code == 201, first.text
    args = [
        "sweep",
        "submit",
        "--models",
        "test_resnet",
        "--random-weights",
        "--dataset",
        "tiny",
        "--idempotency-key",
        "from-cron",
    ]

    again = saverzoo(*args)  # the same request: nothing submitted, nothing started
    assert again.exit_code == 0, again.output
    assert f"sweep {first.json()['id']} was submitted with this key before (queued)" in again.stdout

    changed = saverzoo(*args, "--batch-size", "8")
    assert changed.exit_code == 1 and len(changed.stderr.strip().splitlines()) == 1
    assert "was used for sweep" in changed.stderr

    bad_key = saverzoo(*args[:-1], "two words")
    assert bad_key.exit_code == 1 and "--idempotency-key" in bad_key.stderr
    assert sweep_ids(datasets) == [first.json()["id"]]


def test_sweep_submit_on_a_dataset_imported_from_records_fails_in_one_line(datasets):
    result = saverzoo(
        "sweep",
        "submit",
        "--models",
        "test_resnet",
        "--random-weights",
        "--dataset",
        "val",
        "--wait",
    )

    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: dataset 'val' has no shards to evaluate (it was imported from records); sweep "
        "a dataset registered from its shards (`saverzoo datasets add`)"
    ]
    assert sweep_ids(datasets) == []


def test_sweep_submit_refuses_an_invalid_dataset_name_in_one_line(datasets):
    for name in ("../tiny", "x" * 5000, "tiny\x01"):
        result = saverzoo("sweep", "submit", "--models", "test_resnet", "--dataset", name)
        assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
        assert "unknown dataset" in result.stderr
    assert sweep_ids(datasets) == []


def test_refused_sweep_requests_leave_no_sweep(api, datasets):
    for body in ({**BODY, "dataset": "val"}, {**BODY, "dataset": "nope"}):
        response = api.post("/v1/sweeps", json=body, headers={"Idempotency-Key": "k-1"})
        assert response.status_code in (404, 422), response.text
    assert sweep_ids(datasets) == []
    assert api.post("/v1/sweeps", json=BODY, headers={"Idempotency-Key": "k-1"}).status_code == 201
    assert len(sweep_ids(datasets)) == 1


def test_evaluate_on_a_dataset_imported_from_records_is_refused_and_registers_no_model(datasets):
    from tests.factories import row_counts

    before = row_counts(datasets)["models"]
    result = saverzoo("evaluate", "--models", "test_resnet", "--random-weights", "--dataset", "val")

    assert result.exit_code == 1
    assert "dataset 'val' has no shards to evaluate" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert row_counts(datasets)["models"] == before


def test_a_sweep_for_a_ray_jobs_address_that_does_not_answer_is_never_stored(datasets):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.2", 0))
        port = probe.getsockname()[1]
    result = saverzoo(
        "sweep",
        "submit",
        "--models",
        "test_resnet",
        "--random-weights",
        "--dataset",
        "tiny",
        "--ray-address",
        f"http://127.0.0.2:{port}",
    )

    assert result.exit_code == 1
    assert f"no Ray cluster answers at 127.0.0.2:{port}" in result.stderr
    assert sweep_ids(datasets) == []


@pytest.mark.parametrize("command", ["status", "resume", "cancel"])
def test_a_sweep_id_no_database_can_hold_is_an_unknown_sweep(datasets, command):
    result = saverzoo("sweep", command, "99999999999999999999999")

    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "error: no sweep 99999999999999999999999; `saverzoo sweep list` shows the sweeps"
    )
