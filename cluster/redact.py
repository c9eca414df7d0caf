"""Passwords hidden from everything printed or logged: database URLs in every form, error text.

A password can sit in a database URL as ``user:password@``, in its query (``?password=``, as
psycopg and libpq accept it), or in a libpq keyword string (``host=db password=secret``) that a
driver's error message may repeat. Every printer of a URL or a database error goes through here.
"""

from __future__ import annotations

import re

HIDDEN = "***"
SECRET_KEYS = ("password", "sslpassword", "passwd", "pwd")
_KEYWORD = re.compile(
    rf"\b({'|'.join(SECRET_KEYS)})(\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)", re.IGNORECASE
)
# Up to the last '@' before the host: a password may hold an unescaped '@' itself.
_USERINFO = re.compile(r"(://[^:/@\s]*:)([^\s/?#]*)(@)")


def redacted(text: str) -> str:
    """``text`` with every password of a URL or keyword string replaced by ``***``."""
    text = _USERINFO.sub(rf"\g<1>{HIDDEN}\g<3>", text)
    return _KEYWORD.sub(rf"\g<1>\g<2>{HIDDEN}", text)


def database_display(url: str) -> str:
    """A database URL safe to print: its password hidden wherever the URL holds one."""
    from sqlalchemy import make_url

    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy reads: hide by pattern
        return redacted(url)
    query = {
        key: HIDDEN if key.lower() in SECRET_KEYS else value for key, value in parsed.query.items()
    }
    return redacted(parsed.set(query=query).render_as_string(hide_password=True))


def error_line(error: BaseException) -> str:
    """A database error as one printable line: its driver's first line, passwords hidden."""
    text = str(getattr(error, "orig", None) or error).strip()
    return redacted(text.splitlines()[0] if text else type(error).__name__)
