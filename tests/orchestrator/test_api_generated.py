"""Requests generated from the API's own OpenAPI document (schemathesis): never a 5xx."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from search.synthetic import write_records
from tests.factories import WRITE_TOKEN, api_server, auth, small_zoo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served_schema(tmp_path_factory):
    """A server over an SQLite zoo of eight models, and its schema as schemathesis reads it."""
    tmp = tmp_path_factory.mktemp("api")
    env = {
        "SAVERZOO_DATABASE_URL": f"sqlite:///{tmp / 'saverzoo.db'}",
        "SAVERZOO_API_WRITE_TOKENS": WRITE_TOKEN,
    }
    records = write_records(small_zoo(num_models=8), tmp / "records")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "records",
            "import",
            str(records),
            "--dataset",
            "val",
        ],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )
    with api_server(tmp / "server.log", tmp / "reports", **env) as url:
        yield schemathesis.openapi.from_url(f"{url}/openapi.json")


def operations(schema) -> list:
    return [result.ok() for result in schema.get_all_operations()]


def test_generated_requests_never_get_a_server_error(served_schema):
    checked, statuses = [], []
    for operation in operations(served_schema):

        @given(case=operation.as_strategy())
        @settings(
            max_examples=40,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def never_a_server_error(case):
            # The write token reads too: every route's parameters get past the auth check.
            response = case.call(headers=auth(WRITE_TOKEN), timeout=60)
            statuses.append(response.status_code)
            assert response.status_code < 500, (case.method, case.formatted_path, response.text)
            if response.status_code >= 400:
                assert "error" in response.json()  # every failure explains itself in JSON

        never_a_server_error()
        checked.append(f"{operation.method.upper()} {operation.path}")
    assert "GET /v1/savers/{base}" in checked and "POST /v1/sweeps" in checked
    assert len(statuses) > 10 * len(checked)  # many requests per route
    assert {200, 404, 422} <= set(statuses)  # answers, unknown names and bad parameters alike
