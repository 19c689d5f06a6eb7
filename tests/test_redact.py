"""Secrets never survive redaction."""

from __future__ import annotations

import pytest

from provisioner.redact import REDACTED, describe_secret, redact, redact_dsn


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgresql://owner:s3cret@db:5432/demo", f"postgresql://owner:{REDACTED}@db:5432/demo"),
        ("postgresql://:s3cret@db/demo", f"postgresql://:{REDACTED}@db/demo"),
        ("postgresql://owner@db/demo", "postgresql://owner@db/demo"),
        ("postgres://u:p%40ss@h/d?sslmode=require", f"postgres://u:{REDACTED}@h/d?sslmode=require"),
        ("host=h password=sekret port=1", f"host=h password={REDACTED} port=1"),
        ("host=h password = 'se cret' dbname=d", f"host=h password = {REDACTED} dbname=d"),
        (
            "postgresql://h/d?user=u&password=sekret&sslmode=require",
            f"postgresql://h/d?user=u&password={REDACTED}&sslmode=require",
        ),
    ],
)
def test_redact_dsn_hides_the_password(dsn: str, expected: str) -> None:
    assert redact_dsn(dsn) == expected


def test_redact_removes_known_secrets_urls_and_api_keys() -> None:
    text = "login with hunter22 at postgresql://a:b@c/d using mb_AbCdEfGhIjKlMnOp"
    out = redact(text, ["hunter22"])
    assert "hunter22" not in out and ":b@" not in out and "mb_AbCdEf" not in out
    assert out.count(REDACTED) == 3


def test_describe_secret_shows_only_the_length() -> None:
    assert describe_secret("abcdef") == f"{REDACTED} (length 6)"
    assert describe_secret(None) == "not set"
