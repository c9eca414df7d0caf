"""Which --host values keep the API on this machine (and so may serve without tokens)."""

from __future__ import annotations

import pytest

from orchestrator.cli.serve import is_loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_addresses_in_every_form_the_system_accepts_are_loopback(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1", "192.168.1.4", "example.org", "0"])
def test_other_addresses_and_host_names_are_not(host):
    assert not is_loopback(host)
