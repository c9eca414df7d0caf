"""The one gate every user-given name, URL and number passes before saverzoo uses or stores it.

Every edge (the CLI, the HTTP API, records import, shard registration, shard reading) calls these
functions; nothing else decides what a valid name or shard URL is. Each refusal is an
``InputError`` whose one-line message says what is accepted.

Names (datasets and models) become file names (record exports, report curves, cascade folders,
shard files) and object keys, so they are kept to a set that is safe as both: letters and digits
(any script), and ``. _ - + @ =`` inside; no separators, no ``..``, no control characters, at most
``MAX_NAME_LENGTH`` characters.

Shard URLs reach a reader only with the schemes saverzoo reads itself: ``s3://bucket/key``,
``file:///absolute/path`` (no host) and plain local paths. Everything else (``pipe:``, ``http://``,
``gs://``, ``-`` for standard input ...) is refused: webdataset would hand those to a shell or a
subprocess.
"""

from __future__ import annotations

import itertools
import math
import numbers
import re
import unicodedata
import urllib.parse
from pathlib import Path

from cluster.errors import InputError

MAX_NAME_LENGTH = 128
NAME_PUNCTUATION = "._-+@="
NAME_RULE = (
    f"letters, digits and {' '.join(NAME_PUNCTUATION)} (starting with a letter or digit, "
    f"no '..', at most {MAX_NAME_LENGTH} characters)"
)
SHARD_SCHEMES = ("s3", "file")
SHARD_URL_RULE = "s3://bucket/key, file:///absolute/path or a local path"
# int16 classes and int64 labels are what the database stores; int32 covers every label file.
MAX_CLASSES = 2**15 - 1
MAX_SAMPLES = 2**31 - 1
# A shard is read whole by one worker: beyond a million samples it no longer fits a worker's RAM.
MAX_SHARD_SIZE = 1_000_000
# Images per forward pass; more never fits a device. Here, not in workers.evaluate, so that the
# HTTP API checks a sweep's batch size against the same bound without importing torch.
MAX_BATCH_SIZE = 65_536
_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(\d{1,18})\.\.(\d{1,18})$")


def _printable(value: str, limit: int = 60) -> str:
    """A value as it may appear in a one-line message: quoted, escaped, cut."""
    shown = repr(value[:limit])
    return shown + ("…" if len(value) > limit else "")


def name(value: object, what: str = "name") -> str:
    """``value`` if it is a valid dataset or model name, else an ``InputError`` with the rule."""
    if not isinstance(value, str):
        raise InputError(f"{what} must be a string, not {type(value).__name__}")
    problem = name_problem(value)
    if problem is not None:
        raise InputError(f"{what} {_printable(value)} {problem}: use {NAME_RULE}")
    return value


def name_problem(value: str) -> str | None:
    """Why ``value`` is not a valid name, or None."""
    if not value:
        return "is empty"
    if len(value) > MAX_NAME_LENGTH:
        return f"has {len(value)} characters"
    if ".." in value:
        return "contains '..'"
    if not value[0].isalnum():
        return "does not start with a letter or digit"
    if unicodedata.normalize("NFKC", value) != value:
        # Two spellings of one name (a ligature, a full-width digit) must not be two models.
        return f"is not in Unicode's NFKC form ({unicodedata.normalize('NFKC', value)!r})"
    bad = sorted({c for c in value if not (c.isalnum() or c in NAME_PUNCTUATION)})
    if bad:
        return f"contains {' '.join(repr(c) for c in bad[:5])}"
    return None


def child_path(directory: Path, name_: str, suffix: str = "", what: str = "name") -> Path:
    """``directory/name+suffix`` for a valid name, proven to stay inside ``directory``."""
    name(name_, what)
    path = Path(directory) / f"{name_}{suffix}"
    if path.resolve().parent != Path(directory).resolve():
        raise InputError(f"{what} {_printable(name_)} would leave {directory}")
    return path


def shard_url(url: object) -> str:
    """``url`` if saverzoo itself can read it as a shard, else an ``InputError``."""
    if not isinstance(url, str):
        raise InputError(f"a shard URL must be a string, not {type(url).__name__}")
    if not url.strip():
        raise InputError(f"empty shard URL: use {SHARD_URL_RULE}")
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        raise InputError(f"shard URL {_printable(url)} contains control characters")
    if url.strip() == "-":
        raise InputError(f"shard URL '-' (standard input) is not supported: use {SHARD_URL_RULE}")
    scheme = _scheme(url)
    if scheme is None:
        return url
    if scheme not in SHARD_SCHEMES:
        raise InputError(
            f"shard URL {_printable(url)}: the scheme {scheme!r} is not supported "
            f"(it could run a command); use {SHARD_URL_RULE}"
        )
    parsed = urllib.parse.urlparse(url)
    if scheme == "s3" and not (parsed.netloc and parsed.path.strip("/")):
        raise InputError(f"shard URL {_printable(url)}: write s3://bucket/key")
    if scheme == "file" and parsed.netloc not in ("", "localhost"):
        raise InputError(
            f"shard URL {_printable(url)} names a host; write file:///absolute/path or a path"
        )
    return url


def _scheme(url: str) -> str | None:
    """The URL's scheme, or None for a local path (``C:``-like one-letter prefixes included)."""
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", url)
    if match is None or len(match.group(1)) == 1:
        return None
    return match.group(1).lower()


def pattern_size(pattern: str) -> int:
    """How many URLs saverzoo's brace notation expands ``pattern`` to, without expanding it.

    ``{000..063}`` is a range, ``{a,b}`` a list; several ``::``-joined patterns add up.
    """
    total = 0
    for part in pattern.split("::"):
        count = 1
        for body in _BRACE.findall(part):
            span = _RANGE.match(body)
            if span is None and ".." in body:
                raise InputError(
                    f"--shards {_printable(part)}: write ranges as {{000..999}}, ascending, "
                    "with at most 18 digits"
                )
            count *= int(span.group(2)) - int(span.group(1)) + 1 if span else body.count(",") + 1
            if count <= 0:
                raise InputError(f"--shards {_printable(part)} has a descending range")
        total += count
    return total


def shard_pattern(pattern: object, max_shards: int) -> str:
    """A brace pattern whose expansion is at most ``max_shards`` URLs, each a valid shard URL."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise InputError(f"--shards must name shards: use {SHARD_URL_RULE}, with {{000..099}}")
    size = pattern_size(pattern)
    if size > max_shards:
        raise InputError(
            f"--shards {_printable(pattern)} expands to {size:,} shards, more than the "
            f"{max_shards:,} allowed (setting SAVERZOO_MAX_SHARDS)"
        )
    for part in pattern.split("::"):
        shard_url(part)
    return pattern


def _alternatives(body: str, part: str) -> list[str]:
    """What one brace stands for: a range ``000..063`` (padded as written) or a list ``a,b``."""
    span = _RANGE.match(body)
    if span is not None:
        first, last = span.groups()
        padded = any(bound.startswith("0") and bound != "0" for bound in (first, last))
        width = max(len(first), len(last)) if padded else 0
        return [f"{i:0{width}d}" for i in range(int(first), int(last) + 1)]
    if "," in body:
        return body.split(",")
    raise InputError(
        f"--shards {_printable(part)}: {{{body[:40]}}} is neither a range like {{000..063}} nor "
        "a list like {a,b}"
    )


def _expand(part: str) -> list[str]:
    pieces = _BRACE.split(part)  # literal, brace body, literal, brace body, ..., literal
    if any("{" in literal or "}" in literal for literal in pieces[0::2]):
        raise InputError(f"--shards {_printable(part)}: braces may not nest and must be balanced")
    choices = [
        _alternatives(piece, part) if odd else [piece]
        for odd, piece in zip(itertools.cycle((False, True)), pieces)
    ]
    return ["".join(combination) for combination in itertools.product(*choices)]


def expand_shards(pattern: str, max_shards: int) -> list[str]:
    """``s3://b/p/val-{000000..000063}.tar`` as a list of URLs, each one saverzoo reads itself.

    The count is checked before expanding (a range of a billion shards is refused, not built);
    every URL is checked after, since a brace may hold a scheme (``{pipe:cmd,x}``).
    """
    shard_pattern(pattern, max_shards)
    urls = [url for part in pattern.split("::") for url in _expand(part)]
    if not urls:
        raise InputError(f"--shards {_printable(pattern)} names no shard")
    return [shard_url(url) for url in urls]


def integer(value: object, what: str, low: int, high: int) -> int:
    """An integer (never a bool or a float) in ``[low, high]``; numpy integers count."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{what} must be an integer, not {value!r}")
    result = int(value)
    if not low <= result <= high:
        raise InputError(f"{what} {result} is outside {low}..{high}")
    return result


def number(
    value: object,
    what: str,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
) -> float:
    """A finite real number (never a bool) in ``[low, high]`` (``(low, high]`` if low_open)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{what} must be a number, not {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise InputError(f"{what} must be a finite number, not {value!r}")
    if result < low or result > high or (low_open and result == low):
        bounds = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise InputError(f"{what} {value!r} is outside {bounds}")
    return result


def class_indices(values, what: str, num_classes: int | None = None):
    """An integer array of class indices in ``0..num_classes-1`` (or ``0..MAX_CLASSES-1``)."""
    import numpy as np

    array = np.asarray(values)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"{what} must be integer class indices, not {array.dtype}")
    limit = MAX_CLASSES if num_classes is None else num_classes
    if array.size and (int(array.min()) < 0 or int(array.max()) >= limit):
        low, high = int(array.min()), int(array.max())
        raise InputError(f"{what} range {low}..{high} falls outside 0..{limit - 1}")
    return array


def unique_keys(keys, what: str) -> None:
    """Refuse sample keys that repeat: a held-out split and a shard's samples need each once."""
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            raise InputError(f"{what}: sample key {_printable(str(key))} appears more than once")
        seen.add(key)


MAX_FILE_NAME_BYTES = 255  # NAME_MAX of the usual Linux and macOS file systems
MAX_RELATIVE_PATH = 1024
PATTERN_WILDCARDS = "*?[]!"
MAX_REQUEST_KEY_LENGTH = 128


def file_name_problem(value: str) -> str | None:
    """Why ``value`` cannot be one component of a path on disk, or None."""
    if value in ("", ".", ".."):
        return f"is {value!r}"
    if "/" in value or "\\" in value:
        return "contains a path separator"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "contains control characters"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid Unicode"
    if size > MAX_FILE_NAME_BYTES:
        return f"has {size} bytes, more than the {MAX_FILE_NAME_BYTES} a file name may have"
    return None


def relative_path_problem(value: str) -> str | None:
    """Why ``value`` (``a/b.png``, components joined by ``/``) cannot name a file below a
    folder, or None: every component must be a file name, none ``..``."""
    if len(value) > MAX_RELATIVE_PATH:
        return f"has {len(value)} characters, more than {MAX_RELATIVE_PATH}"
    for part in value.split("/"):
        problem = file_name_problem(part)
        if problem is not None:
            return f"has a component {_printable(part)} that {problem}"
    return None


def model_pattern(value: object, what: str = "model pattern") -> str:
    """A model name or a timm wildcard pattern (``vit_*``, ``resnet?0``, ``[!r]*``).

    Never ``@FILE``: that form reads a file, which only the command line may ask for.
    """
    if not isinstance(value, str):
        raise InputError(f"{what} must be a string, not {type(value).__name__}")
    if value.startswith("@"):
        raise InputError(f"{what} {_printable(value)}: send names or patterns, not an @FILE")
    if not value or len(value) > MAX_NAME_LENGTH:
        raise InputError(f"{what} {_printable(value)} must have 1 to {MAX_NAME_LENGTH} characters")
    allowed = NAME_PUNCTUATION + PATTERN_WILDCARDS
    bad = sorted({c for c in value if not (c.isalnum() or c in allowed)})
    if bad:
        raise InputError(
            f"{what} {_printable(value)} contains {' '.join(repr(c) for c in bad[:5])}: use "
            f"letters, digits, {' '.join(NAME_PUNCTUATION)} and the wildcards {PATTERN_WILDCARDS}"
        )
    return value


def request_key(value: object, what: str = "idempotency key") -> str:
    """A client's key for a request it may repeat: 1 to 128 visible ASCII characters."""
    if not isinstance(value, str):
        raise InputError(f"{what} must be a string, not {type(value).__name__}")
    if not 1 <= len(value) <= MAX_REQUEST_KEY_LENGTH or not all("!" <= c <= "~" for c in value):
        raise InputError(
            f"{what} {_printable(value)}: use 1 to {MAX_REQUEST_KEY_LENGTH} visible ASCII "
            "characters (a UUID, say)"
        )
    return value


def shard_scheme(url: object) -> str:
    """How a valid shard URL is read: ``"s3"``, ``"file"`` or ``""`` (a plain local path)."""
    return _scheme(shard_url(url)) or ""
