"""The "same preprocessing" key: models whose data configs have one key share decoded batches.

Light on purpose (no torch, no timm): the sweep planner groups stored models by it, the worker
groups loaded ones, and both must agree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping


def preprocessing_key(config: Mapping[str, object] | None) -> str:
    """A timm data config as canonical JSON: keys sorted, tuples as lists, so a config as timm
    resolves it and the same config read back from the database have one key."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
