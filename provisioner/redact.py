"""Redaction of secrets in anything we print or log."""

from __future__ import annotations

import re
from collections.abc import Iterable

# userinfo password in a URL: scheme://user:PASSWORD@host
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?=@)", re.I)
_API_KEY = re.compile(r"\bmb_[A-Za-z0-9+/=_-]{8,}")
# password (or the client key's sslpassword) in a key=value DSN (`host=h password=secret`), quoted or not,
# and in a URL's query string
_KEYWORD_PASSWORD = re.compile(
    r"(?P<head>\b(?:ssl)?password\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|[^\s&'\"]+)", re.I
)

REDACTED = "<redacted>"


def redact_dsn(dsn: str) -> str:
    """The DSN (URL or key=value form) with its password replaced, safe to print."""
    dsn = _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED, dsn)
    return _KEYWORD_PASSWORD.sub(lambda m: m.group("head") + REDACTED, dsn)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with every known secret, URL password and Metabase API key replaced."""
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return _API_KEY.sub(REDACTED, redact_dsn(text))


def describe_secret(value: str | None) -> str:
    """How `doctor` shows a secret: never its value."""
    return "not set" if not value else f"{REDACTED} (length {len(value)})"
