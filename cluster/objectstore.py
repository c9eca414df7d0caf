"""S3-compatible object storage: boto3 clients from settings, uploads, and clear errors.

Which endpoint and credentials, in order: ``SAVERZOO_S3_ENDPOINT_URL`` with the usual AWS
credential chain (environment, ``~/.aws``, instance roles); else the local SeaweedFS store when it
runs (``saverzoo objectstore up``) with the credentials it was started with; else AWS itself
with the chain. Credentials are never logged or printed.

Retries: botocore's standard mode retries throttling, 5xx and connection errors with exponential
backoff (``SAVERZOO_S3_MAX_ATTEMPTS`` attempts). Uploads are multipart above 64 MiB; an object
becomes visible only when its upload completes (boto3 aborts a failed multipart upload).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import boto3
import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from cluster.errors import ServiceError
from cluster.localstore import LocalObjectStore
from cluster.settings import Settings, get_settings

MULTIPART_BYTES = 64 * 1024 * 1024
CHAIN_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)


class ObjectStoreError(ServiceError):
    """An object store operation failed; the message names the object and what to do."""


@dataclass(frozen=True)
class S3Url:
    bucket: str
    key: str

    @classmethod
    def parse(cls, url: str) -> S3Url:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"{url!r} is not an s3://bucket/key URL")
        return cls(parsed.netloc, parsed.path.lstrip("/"))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def child(self, name: str) -> S3Url:
        return S3Url(self.bucket, f"{self.key.rstrip('/')}/{name}" if self.key else name)


@dataclass(frozen=True, repr=False)
class Endpoint:
    url: str | None  # None: AWS itself
    credentials: tuple[str, str] | None  # None: the AWS credential chain
    # The chain's environment at resolution time: a client made under other variables is another
    # client (kept only as a cache key, never shown).
    environment: tuple[str | None, ...] = ()


def resolve_endpoint(settings: Settings) -> Endpoint:
    """The endpoint and credentials clients use (see the module docstring for the order)."""
    chain = tuple(os.environ.get(v) for v in CHAIN_VARIABLES)
    if settings.s3_endpoint_url is not None:
        return Endpoint(settings.s3_endpoint_url, None, chain)
    local = LocalObjectStore(settings.objectstore_dir, settings.objectstore_port)
    state = local.status()
    if state is not None:
        return Endpoint(state.endpoint, local.credentials())
    return Endpoint(None, None, chain)


def s3_client(settings: Settings | None = None):  # a botocore S3 client
    """A boto3 S3 client for the configured endpoint, with retries and path-style addressing."""
    settings = settings or get_settings()
    return _client(resolve_endpoint(settings), settings.s3_region, settings.s3_max_attempts)


@lru_cache(maxsize=8)
def _client(endpoint: Endpoint, region: str, max_attempts: int):
    config = Config(
        retries={"max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=5,
        read_timeout=120,
        s3={"addressing_style": "path"},
        signature_version="s3v4",
    )
    keys = {}
    if endpoint.credentials is not None:
        keys = {
            "aws_access_key_id": endpoint.credentials[0],
            "aws_secret_access_key": endpoint.credentials[1],
        }
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint.url, region_name=region, config=config, **keys
    )


# Error codes of S3 and botocore, each with what the user should do about it.
_ADVICE = {
    "NoSuchKey": "does not exist",
    "404": "does not exist",
    "NoSuchBucket": "is in a bucket that does not exist",
    "AccessDenied": "was refused: access denied (check the credentials and their permissions)",
    "403": "was refused: access denied (check the credentials and their permissions)",
    "InvalidAccessKeyId": "was refused: the access key is unknown to the object store; check "
    "AWS_ACCESS_KEY_ID",
    "SignatureDoesNotMatch": "was refused: the secret key does not match; check "
    "AWS_SECRET_ACCESS_KEY",
    "PreconditionFailed": "changed while it was being read (it was rewritten); read it again",
    "412": "changed while it was being read (it was rewritten); read it again",
    "InvalidBucketName": "names an invalid bucket (3-63 lowercase letters, digits, dots, dashes)",
}


def explain(error: Exception, what: str) -> ObjectStoreError:
    """Turn a boto3/botocore error about ``what`` (an object URL) into a one-line message."""
    if isinstance(error, botocore.exceptions.ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        advice = _ADVICE.get(code, f"failed ({code or error})")
        return ObjectStoreError(f"{what} {advice}")
    if isinstance(error, botocore.exceptions.NoCredentialsError):
        stopped = _stopped_local_store()
        if stopped is not None:  # the local store died: clients fell back to AWS, keyless
            return ObjectStoreError(
                f"the object store at {stopped} is unreachable ({what}): the local store is "
                "not running; start it with `saverzoo objectstore up` (or set "
                "SAVERZOO_S3_ENDPOINT_URL)"
            )
        return ObjectStoreError(
            f"no credentials for {what}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or start the local store with `saverzoo objectstore up`)"
        )
    if isinstance(error, botocore.exceptions.SSLError):
        return ObjectStoreError(f"{what}: the object store's TLS certificate was refused ({error})")
    if isinstance(error, botocore.exceptions.ConnectionError):  # refused, timed out, reset
        return ObjectStoreError(
            f"the object store at {_endpoint_of(error)} is unreachable ({what}); is it running? "
            "(`saverzoo objectstore status`)"
        )
    return ObjectStoreError(f"{what}: {error}")


def _endpoint_of(error: botocore.exceptions.BotoCoreError) -> str:
    """``scheme://host:port`` of the URL a connection error names (never its path or query)."""
    url = urlparse(str(error.kwargs.get("endpoint_url") or error.kwargs.get("proxy_url") or ""))
    return f"{url.scheme}://{url.netloc}" if url.netloc else "the configured endpoint"


def _stopped_local_store() -> str | None:
    """The local store's endpoint when one was set up here and is not running, else None.

    Only then does a missing key mean "the store is down": with no local store and no endpoint
    setting, saverzoo talks to AWS itself, and a missing key is just that.
    """
    settings = get_settings()
    if settings.s3_endpoint_url is not None:
        return None
    local = LocalObjectStore(settings.objectstore_dir, settings.objectstore_port)
    if not local.directory.is_dir() or local.status() is not None:
        return None
    return local.endpoint


def ensure_bucket(client, bucket: str) -> None:  # a botocore S3 client
    try:
        client.head_bucket(Bucket=bucket)
        return
    except botocore.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
            raise explain(error, f"s3://{bucket}") from None
    except botocore.exceptions.BotoCoreError as error:
        raise explain(error, f"s3://{bucket}") from None
    region = client.meta.region_name
    location = (
        {}
        if region in (None, "us-east-1")
        else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    )
    try:
        client.create_bucket(Bucket=bucket, **location)
    except botocore.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") not in (
            "BucketAlreadyOwnedByYou",
            "BucketAlreadyExists",
        ):
            raise explain(error, f"s3://{bucket}") from None


def upload_file(client, path: Path, url: S3Url) -> None:
    """Upload a local file; the object appears complete or not at all."""
    transfer = TransferConfig(
        multipart_threshold=MULTIPART_BYTES, multipart_chunksize=MULTIPART_BYTES
    )
    try:
        client.upload_file(str(path), url.bucket, url.key, Config=transfer)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        raise explain(error, str(url)) from None
    except boto3.exceptions.S3UploadFailedError as error:
        raise ObjectStoreError(f"upload of {url} failed: {error}") from None


def object_exists(client, url: S3Url) -> bool:
    try:
        client.head_object(Bucket=url.bucket, Key=url.key)
    except botocore.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
            return False
        raise explain(error, str(url)) from None
    except botocore.exceptions.BotoCoreError as error:
        raise explain(error, str(url)) from None
    return True


def delete_object(client, url: S3Url) -> None:
    try:
        client.delete_object(Bucket=url.bucket, Key=url.key)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        raise explain(error, str(url)) from None


def put_bytes(client, url: S3Url, data: bytes) -> None:
    try:
        client.put_object(Bucket=url.bucket, Key=url.key, Body=data)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        raise explain(error, str(url)) from None


def get_bytes(client, url: S3Url, missing_ok: bool = False) -> bytes | None:
    """The object's bytes; with ``missing_ok``, None when it does not exist."""
    try:
        return client.get_object(Bucket=url.bucket, Key=url.key)["Body"].read()
    except botocore.exceptions.ClientError as error:
        if missing_ok and error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
            return None
        raise explain(error, str(url)) from None
    except botocore.exceptions.BotoCoreError as error:
        raise explain(error, str(url)) from None
