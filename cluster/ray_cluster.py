"""Connecting to Ray: an embedded local instance, or an existing cluster by address.

Embedded (no address): a new local Ray bound to a loopback address (Ray replaces 127.0.0.1 by the
machine's network address, but keeps other loopback addresses as given), no dashboard, token
authentication on (Ray's default). An address (``host:port`` of the head, or ``auto``) joins that
cluster; an address that does not answer fails within seconds instead of Ray's minutes of retries.

Workers get their settings through the Ray runtime environment (``worker_environment``): the
database URL, the object store's endpoint and credentials, the Hugging Face cache settings. They
travel as environment variables of the worker processes and are never logged.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from cluster.errors import InputError, ServiceError

if TYPE_CHECKING:  # Ray's types, re-exported for annotations; Ray itself comes from ray_api()
    from ray import ObjectRef as ObjectRef
    from ray.actor import ActorHandle as ActorHandle
    from ray.exceptions import RayTaskError as RayTaskError

    from cluster.settings import Settings

EMBEDDED_NODE_IP = "127.0.0.2"
CONNECT_TIMEOUT_S = 5.0
# Passed on to workers when set here: where models come from and how (offline or not).
PASSED_VARIABLES = (
    "HF_HUB_OFFLINE",
    "HF_HOME",
    "HF_HUB_CACHE",
    "TORCH_HOME",
    "SAVERZOO_CONFIG",
)


class RayUnavailable(ServiceError):
    """The Ray cluster cannot be reached or started; the message says what to check."""


def worker_environment(settings: Settings) -> dict[str, str]:
    """Environment variables that give a worker process this process's settings."""
    # Imported here: every Ray worker process imports this module, few of them need boto3.
    from cluster.objectstore import CHAIN_VARIABLES, resolve_endpoint

    env = {
        "SAVERZOO_DATABASE_URL": settings.database_url,
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
    if endpoint.credentials is not None:  # the local object store's own keys
        env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = endpoint.credentials
    else:
        env.update({v: os.environ[v] for v in CHAIN_VARIABLES if v in os.environ})
    env.update({v: os.environ[v] for v in PASSED_VARIABLES if v in os.environ})
    return env


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


def ray_api():
    """The ``ray`` module, imported with token authentication on unless the environment says
    otherwise: Ray 2.60 clusters use token authentication (a token in ~/.ray/auth_token or
    RAY_AUTH_TOKEN), and a client must say so before Ray is imported (it reads the mode once)."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    return ray


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
) -> Iterator[None]:
    """Ray initialised for this process (embedded when ``address`` is None), shut down after."""
    ray = ray_api()

    if address is None:
        kwargs = dict(
            address="local",  # always a new instance, never a stale cluster file's
            _node_ip_address=node_ip or EMBEDDED_NODE_IP,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            include_dashboard=False,
        )
    else:
        check_reachable(address)
        kwargs = dict(address=address)
        if node_ip:
            kwargs["_node_ip_address"] = node_ip
    try:
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
