"""`saverzoo objectstore up/status/down`: a real SeaweedFS on loopback, started and stopped."""

from __future__ import annotations

import stat

import pytest

from cluster.objectstore import S3Url, get_bytes, put_bytes, s3_client
from tests.factories import saverzoo

pytestmark = pytest.mark.s3


def test_up_status_down_and_clients_use_the_running_store(tmp_path, monkeypatch, free_port_block):
    from cluster.settings import get_settings

    port = free_port_block
    monkeypatch.setenv("SAVERZOO_OBJECTSTORE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("SAVERZOO_OBJECTSTORE_PORT", str(port))
    monkeypatch.delenv("SAVERZOO_S3_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    get_settings.cache_clear()
    try:
        up = saverzoo("objectstore", "up")
        assert up.exit_code == 0, up.output
        assert f"http://127.0.0.1:{port}" in up.stdout
        assert saverzoo("objectstore", "up").exit_code == 0  # idempotent
        assert saverzoo("objectstore", "status").exit_code == 0

        credentials = tmp_path / "store" / "credentials.json"
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        secret = __import__("json").loads(credentials.read_text())["secret_access_key"]
        assert secret not in up.output  # never printed
        client = s3_client()  # no endpoint configured: the running local store, its credentials
        client.create_bucket(Bucket="local-check")
        put_bytes(client, S3Url("local-check", "a"), b"hello")
        assert get_bytes(client, S3Url("local-check", "a")) == b"hello"
    finally:
        down = saverzoo("objectstore", "down")
        get_settings.cache_clear()
    assert down.exit_code == 0 and "stopped" in down.stdout
    status = saverzoo("objectstore", "status")
    assert status.exit_code == 3 and "not running" in status.stdout
