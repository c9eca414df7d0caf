"""`savers refresh --ray-address` refuses an address it cannot use in one line, before any work."""

from __future__ import annotations

import pytest

from tests.factories import saverzoo


@pytest.mark.parametrize(
    ("address", "said"),
    [
        ("http://127.0.0.1:8265", "Ray Jobs addresses are for `sweep submit`"),
        ("no-port", "use host:port of the Ray head"),
        ("127.0.0.1:1", "no Ray cluster answers at 127.0.0.1:1"),
    ],
)
def test_an_address_it_cannot_use_is_one_line(use_database, address, said):
    refused = saverzoo("savers", "refresh", "--dataset", "val", "--ray-address", address)
    assert refused.exit_code == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and said in lines[0] and "internal error" not in lines[0], lines
