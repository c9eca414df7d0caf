"""Read WebDataset shards from object storage or disk: (key, JPEG bytes, label, file name).

A shard is opened through saverzoo's own scheme dispatch (``SHARD_OPENERS``): ``s3://`` streams the
object with boto3, ``file:///path`` and plain paths open the file. Every other URL is refused by
``cluster.validate.shard_url`` before anything is opened: webdataset's ``gopen`` would run
``pipe:`` URLs as shell commands and hand ``http://`` and friends to curl, so it is never called,
not even for URLs already stored in the database. The tar is expanded by webdataset's own
``tar_file_expander`` and ``group_by_keys``. Every stage is a small generator.

Failures: a transient read error (dropped connection, timeout, 5xx after botocore's own retries)
re-reads the shard from the start and skips what the caller already has, so the caller never sees
a sample twice. A missing object, refused credentials, an unreachable store or a truncated tar raise
``ShardError`` naming the shard. A JPEG that does not decode is not the shard's failure: the decode
stage (``decoded``) records it with its key and goes on.
"""

from __future__ import annotations

import io
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import botocore.exceptions
import urllib3.exceptions
from PIL import Image
from webdataset.tariterators import group_by_keys, tar_file_expander

from cluster.errors import InputError, ServiceError
from cluster.objectstore import ObjectStoreError, S3Url, explain, s3_client
from cluster.validate import MAX_CLASSES, integer, shard_scheme

READ_ATTEMPTS = 4
BACKOFF_S = 0.5


class ShardError(ServiceError):
    """A shard cannot be read; the message names the shard and the cause."""


# Errors after which reading the shard again may succeed.
TRANSIENT_ERRORS = (
    botocore.exceptions.IncompleteReadError,  # the connection closed before the object's end
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectionClosedError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.ReadTimeoutError,
    ConnectionError,
    TimeoutError,
)


@dataclass(frozen=True)
class Sample:
    key: str
    jpeg: bytes
    label: int
    filename: str


def _open_s3(url: str, version: str | None = None) -> BinaryIO:
    """``s3://bucket/key`` as a boto3 streaming body.

    The body carries the object's ETag as ``version``; opening with ``version`` reads that very
    object again or fails, never a newer one.
    """
    location = S3Url.parse(url)
    pinned = {"IfMatch": version} if version is not None else {}
    try:
        response = s3_client().get_object(Bucket=location.bucket, Key=location.key, **pinned)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        raise explain(error, f"shard {url}") from None
    body = response["Body"]
    body.version = response.get("ETag")
    return body


def object_version(url: str) -> str:
    """The ETag of the object at ``s3://bucket/key``: what a cached copy is kept under, so an
    object written again is copied again."""
    location = S3Url.parse(url)
    try:
        response = s3_client().head_object(Bucket=location.bucket, Key=location.key)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        raise ShardError(str(explain(error, f"shard {url}"))) from None
    return str(response.get("ETag", ""))


def local_path(url: str) -> str:
    """``file:///path`` URLs and plain paths as a path; ``file://host/...`` is refused."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "file":
        return url
    if parsed.netloc not in ("", "localhost"):
        raise InputError(f"{url!r} names a host; write file:///absolute/path or a plain path")
    return urllib.parse.unquote(parsed.path)


def _open_local(url: str, version: str | None = None) -> BinaryIO:  # noqa: ARG001
    """A file on this machine (files have no versions: ``version`` is never set for them)."""
    return open(local_path(url), "rb")


# How a shard is opened, by the scheme ``shard_scheme`` names ("" is a plain local path). There is
# no fallback: a scheme missing here is refused, never handed to another library's opener.
SHARD_OPENERS: dict[str, Callable[..., BinaryIO]] = {
    "s3": _open_s3,
    "file": _open_local,
    "": _open_local,
}


def opener_for(url: str) -> Callable[..., BinaryIO]:
    """The opener of ``url``'s scheme; any URL saverzoo does not read itself is a ShardError."""
    try:
        scheme = shard_scheme(url)
    except InputError as error:  # e.g. a pipe: URL stored before URLs were checked
        raise ShardError(f"{error}; register the dataset again with such URLs") from None
    try:
        return SHARD_OPENERS[scheme]
    except KeyError:
        raise ShardError(f"shard {url!r}: saverzoo has no reader for {scheme}:// URLs") from None


def open_shard(url: str, version: str | None = None) -> BinaryIO:
    """A readable stream of the shard's bytes, whatever its scheme (``version``: see s3)."""
    opener = opener_for(url)
    try:
        return opener(url, version=version)
    except FileNotFoundError:
        raise ShardError(f"shard {url} does not exist") from None
    except IsADirectoryError:
        raise ShardError(f"shard {url} is a folder, not a tar file") from None
    except PermissionError:
        raise ShardError(f"shard {url} cannot be read: permission denied") from None
    except ObjectStoreError as error:
        raise ShardError(str(error)) from None


def _as_sample(raw: dict, url: str) -> Sample:
    key: str = raw["__key__"]  # group_by_keys gives every sample one
    missing = [field for field in ("jpg", "cls") if field not in raw]
    if missing:
        raise ShardError(f"shard {url}: sample {key!r} has no {' or '.join(missing)} entry")
    try:
        label = int(raw["cls"])
    except ValueError:  # also what int() says of a number with thousands of digits
        raise ShardError(f"shard {url}: sample {key!r} has a non-integer cls") from None
    integer(label, f"shard {url}: sample {key!r} has cls", 0, MAX_CLASSES - 1)
    filename = raw.get("filename", b"")
    return Sample(key, raw["jpg"], label, filename.decode() if filename else "")


def _samples_once(url: str, stream: BinaryIO) -> Iterator[Sample]:
    try:
        sources = [{"url": url, "stream": stream}]
        for raw in group_by_keys(tar_file_expander(sources)):
            yield _as_sample(raw, url)
    finally:
        stream.close()


def read_shard(
    url: str,
    *,
    expected_samples: int | None = None,
    attempts: int = READ_ATTEMPTS,
    opener: Callable[..., BinaryIO] = open_shard,
) -> Iterator[Sample]:
    """Every sample of one shard, in order, each exactly once.

    ``expected_samples`` (the registered count) turns a shard cut exactly between two samples,
    which a tar reader cannot tell from a short shard, into an error.
    """
    delivered = 0
    version = None  # the object first read: a retry reads it again, not a rewritten shard
    for attempt in range(1, attempts + 1):
        try:
            stream = opener(url) if version is None else opener(url, version=version)
            version = getattr(stream, "version", None)
            position = 0
            for sample in _samples_once(url, stream):
                position += 1
                if position > delivered:  # samples of an earlier attempt are not repeated
                    delivered += 1
                    yield sample
            break
        except TRANSIENT_ERRORS as error:
            if attempt == attempts:
                raise ShardError(
                    f"shard {url}: reading failed {attempts} times, last: {error}"
                ) from None
            time.sleep(BACKOFF_S * 2 ** (attempt - 1))
        except Exception as error:  # tarfile.ReadError and friends, wrapped by webdataset
            if isinstance(error, ShardError | InputError):
                raise
            # webdataset appends the stream and URL to the arguments: keep the reason only.
            reason = str(error.args[0] if error.args else error).split(" @ ")[0]
            if "duplicate file name" in reason:  # group_by_keys: one key twice in a row
                raise ShardError(
                    f"shard {url}: the file {reason.split(':')[0]!r} appears twice (two samples "
                    "with one key); every sample needs its own key"
                ) from None
            raise ShardError(f"shard {url} is truncated or not a tar file ({reason})") from None
    if expected_samples is not None and delivered != expected_samples:
        raise ShardError(
            f"shard {url} has {delivered} samples but {expected_samples} are registered: "
            "it is truncated; write it again"
        )


@dataclass
class SampleFailures:
    """Samples whose image could not be decoded, by key, with the reason."""

    reasons: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.reasons)


# A decoder can fail in many ways on bad bytes (OSError, SyntaxError, struct.error, ...): every
# exception of decoding means "this sample's image is bad", never "stop the shard".
DECODE_ERRORS = (Exception,)


def decode_rgb(jpeg: bytes) -> Image.Image:
    """Decode fully (a truncated JPEG fails here, not later) and convert to RGB like timm."""
    with Image.open(io.BytesIO(jpeg)) as image:
        image.load()
        return image.convert("RGB")


def decode_problem(jpeg: bytes) -> str | None:
    """Why a JPEG does not decode, or None when it does."""
    try:
        decode_rgb(jpeg)
    except DECODE_ERRORS as error:
        return f"{type(error).__name__}: {error}"
    return None


def decoded(
    samples: Iterable[Sample], failures: SampleFailures
) -> Iterator[tuple[Sample, Image.Image]]:
    """Samples with their RGB image; an undecodable one is recorded in ``failures``, not yielded."""
    for sample in samples:
        try:
            image = decode_rgb(sample.jpeg)
        except DECODE_ERRORS as error:
            failures.reasons[sample.key] = f"{type(error).__name__}: {error}"
            continue
        yield sample, image
