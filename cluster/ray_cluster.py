"""Connecting to Ray: an embedded local instance, or an existing cluster by address.

Embedded (no address): a new local Ray on this machine alone, no dashboard, token authentication on
(Ray's default). Ray binds a server to loopback only when the node's address is 127.0.0.1, and
turns 127.0.0.1 into the machine's network address unless it runs as a single machine
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read once when Ray is imported): so the embedded Ray
is imported in that mode, on 127.0.0.1, and every one of its listening ports is on loopback. Its
temp root is saverzoo's own (``embedded_ray_root``), where a later command finds and ends what
an earlier, killed one left (``cluster.ray_orphans``).

An address (``host:port`` of the head, or ``auto``) joins that cluster; an address that does not
answer fails within seconds instead of Ray's minutes of retries.

Workers get their settings in two ways, by whether they are secret:
- the rest (the object store's endpoint, region, the shard cache, the Hugging Face cache settings)
  travels in Ray's runtime environment (``worker_environment``);
- secrets (the database URL, the object store's keys) never do: Ray writes a runtime environment
  into its agents' logs and shows it in ``ray job list``. Workers read them from their node's own
  environment (the launcher's, or a cluster's mounted secrets). An embedded Ray's processes inherit
  the driver's environment at start, which ``connected`` fills from the settings
  (``secret_environment``). A worker checks that it reaches the driver's database (by its printable
  form, which hides the password) before it runs anything.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from cluster.errors import InputError, ServiceError
from cluster.ray_orphans import end_orphans

if TYPE_CHECKING:  # Ray's types, re-exported for annotations; Ray itself comes from ray_api()
    from ray import ObjectRef as ObjectRef
    from ray.actor import ActorHandle as ActorHandle
    from ray.exceptions import RayTaskError as RayTaskError

    from cluster.settings import Settings

EMBEDDED_NODE_IP = "127.0.0.1"
SINGLE_MACHINE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray keeps 127.0.0.1, binds loopback
CONNECT_TIMEOUT_S = 5.0
# Passed on to workers when set here: where models come from and how (offline or not).
PASSED_VARIABLES = (
    "HF_HUB_OFFLINE",
    "HF_HOME",
    "HF_HUB_CACHE",
    "TORCH_HOME",
    "SAVERZOO_CONFIG",
)


# Never in a runtime environment; the node's own environment holds them.
SECRET_VARIABLES = (
    "SAVERZOO_DATABASE_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)
EXPECTED_DATABASE = "SAVERZOO_DRIVER_DATABASE"  # the driver's database, password hidden


class RayUnavailable(ServiceError):
    """The Ray cluster cannot be reached or started; the message says what to check."""


def worker_environment(settings: Settings) -> dict[str, str]:
    """Environment variables that give a worker process this process's settings, secrets
    excepted (``secret_environment``): what Ray's runtime environment may carry."""
    # Imported here: every Ray worker process imports this module, few of them need boto3.
    from cluster.objectstore import CHAIN_VARIABLES, resolve_endpoint

    env = {
        EXPECTED_DATABASE: settings.database_display,
        "SAVERZOO_S3_REGION": settings.s3_region,
        "SAVERZOO_S3_MAX_ATTEMPTS": str(settings.s3_max_attempts),
        "SAVERZOO_SHARD_CACHE_GB": str(settings.shard_cache_gb),
    }
    if settings.shard_cache_dir is not None:  # else each node's own data directory
        env["SAVERZOO_SHARD_CACHE_DIR"] = str(settings.shard_cache_dir)
    if settings.timm_plugins:
        env["SAVERZOO_TIMM_PLUGINS"] = ",".join(settings.timm_plugins)
    endpoint = resolve_endpoint(settings)
    if endpoint.url is not None:
        env["SAVERZOO_S3_ENDPOINT_URL"] = endpoint.url
    if endpoint.credentials is None:  # where boto3's chain looks, not what it finds there
        env.update({v: os.environ[v] for v in CHAIN_VARIABLES if v in os.environ})
    env.update({v: os.environ[v] for v in PASSED_VARIABLES if v in os.environ})
    return {name: value for name, value in env.items() if name not in SECRET_VARIABLES}


def secret_environment(settings: Settings) -> dict[str, str]:
    """The settings a worker needs that must not pass through Ray: the database URL and the
    object store's keys (the local store's own, or boto3's from this environment)."""
    from cluster.objectstore import resolve_endpoint

    env = {v: os.environ[v] for v in SECRET_VARIABLES if v in os.environ}
    env["SAVERZOO_DATABASE_URL"] = settings.database_url  # the driver's, whatever set it
    credentials = resolve_endpoint(settings).credentials
    if credentials is not None:
        env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = credentials
    return env


def check_worker_database(settings: Settings) -> None:
    """In a process Ray started (a worker, a Ray Job's driver): refuse to run against another
    database than the one of the command that started it (a node without that database's URL
    would otherwise use its own default SQLite file)."""
    expected = os.environ.get(EXPECTED_DATABASE)
    if expected is not None and settings.database_display != expected:
        raise ServiceError(
            f"this node reaches the database {settings.database_display}, the sweep's is "
            f"{expected}: give every node its SAVERZOO_DATABASE_URL (its environment or "
            "SAVERZOO_CONFIG); secrets never travel through Ray"
        )


def check_reachable(address: str | None) -> None:
    """Fail within seconds when ``address`` (host:port) does not answer; None and auto pass."""
    if address is None or address == "auto":
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--ray-address {address!r}: use host:port of the Ray head, or auto")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as error:
        raise RayUnavailable(
            f"no Ray cluster answers at {address} ({error.strerror or error}); start one with "
            "`ray start --head` or check --ray-address"
        ) from None


def ray_api(*, embedded: bool = False):
    """The ``ray`` module, imported with token authentication on unless the environment says
    otherwise: Ray 2.60 clusters use token authentication (a token in ~/.ray/auth_token or
    RAY_AUTH_TOKEN), and a client must say so before Ray is imported (it reads the mode once).
    ``embedded``: imported as a single machine, if this process has not imported Ray yet."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    if embedded and "ray" not in sys.modules:
        os.environ.setdefault(SINGLE_MACHINE, "0")
    import ray

    return ray


def embedded_ray_root() -> Path:
    """The temp root of this user's embedded Rays (short: Ray's socket paths must fit 107
    bytes)."""
    return Path(tempfile.gettempdir()) / f"saverzoo-ray-{os.getuid()}"


def job_client(address: str):
    """A Ray Jobs client of the head's dashboard at ``address`` (``http://HEAD:8265``)."""
    ray_api()
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address)


@contextmanager
def connected(
    address: str | None = None,
    *,
    node_ip: str | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    secrets: Mapping[str, str] | None = None,
) -> Iterator[None]:
    """Ray initialised for this process (embedded when ``address`` is None), shut down after.

    ``secrets``: environment variables an embedded Ray's processes inherit (they are set in
    this process while Ray starts, then restored); a cluster's nodes have their own.
    """
    ray = ray_api(embedded=address is None)

    if address is None:
        root = embedded_ray_root()
        end_orphans(root)
        kwargs = {
            "address": "local",  # always a new instance, never a stale cluster file's
            "_node_ip_address": node_ip or EMBEDDED_NODE_IP,
            "_temp_dir": str(root),
            "num_cpus": num_cpus,
            "num_gpus": num_gpus,
            "include_dashboard": False,
        }
    else:
        check_reachable(address)
        kwargs = {"address": address}
        if node_ip:
            kwargs["_node_ip_address"] = node_ip
    try:
        with _environment(secrets if address is None else None):
            ray.init(log_to_driver=False, configure_logging=False, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        where = "an embedded Ray" if address is None else f"the Ray cluster at {address}"
        hint = (
            ""
            if address is None
            else " (is its auth token in ~/.ray/auth_token or RAY_AUTH_TOKEN?)"
        )
        raise RayUnavailable(f"cannot start or join {where}: {reason}{hint}") from None
    try:
        yield
    finally:
        ray.shutdown()


@contextmanager
def _environment(values: Mapping[str, str] | None) -> Iterator[None]:
    """``values`` set in this process's environment for the block, the old values restored."""
    saved = {name: os.environ.get(name) for name in values or {}}
    os.environ.update(values or {})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
