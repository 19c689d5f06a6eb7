"""The DSN helper: psycopg's parser for both forms, rewrites that keep the rest, errors without the secret."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from provisioner.dsn import dsn_with, parse_dsn
from provisioner.errors import ConfigError


def test_a_url_is_read_with_its_percent_encoded_password() -> None:
    parts = parse_dsn("postgresql://ro:p%40ss%2Fw@db.example.com:6543/demo?sslmode=require")
    assert (parts.host, parts.port, parts.dbname, parts.user) == ("db.example.com", 6543, "demo", "ro")
    assert parts.password is not None and parts.password.get_secret_value() == "p@ss/w"
    assert parts.sslmode == "require" and parts.single_host


def test_a_key_value_string_reads_the_same_as_the_url() -> None:
    url = parse_dsn("postgresql://ro:pw@db:6543/demo")
    keywords = parse_dsn("host=db port=6543 dbname=demo user=ro password=pw")
    assert url == keywords


def test_missing_parts_take_libpq_defaults_for_host_and_port_only() -> None:
    parts = parse_dsn("postgresql:///demo")
    assert (parts.host, parts.port, parts.user, parts.password) == ("localhost", 5432, None, None)


def test_a_host_list_is_not_a_single_host() -> None:
    assert not parse_dsn("postgresql://u@db1,db2/demo").single_host


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u:Hidden-pw@db:abc/demo",
        "postgresql://u:Hidden-pw@db:70000/demo",
        "postgresql://u:Hidden pw@db/demo",
        "postgresql://u:Hidden-pw@db/demo?bogus=1",
        "Hidden-pw",
    ],
)
def test_an_unusable_dsn_is_a_config_error_that_never_quotes_it(dsn: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_dsn(dsn, what="--database-url")
    assert caught.value.message.startswith("--database-url ")
    assert "Hidden" not in caught.value.message and caught.value.hint


def test_dsn_with_replaces_the_login_and_keeps_the_rest() -> None:
    changed = dsn_with("postgresql://owner:o-pw@db:6543/demo?sslmode=require", user="ro", password="it's @/")
    assert conninfo_to_dict(changed) == {
        "user": "ro",
        "password": "it's @/",
        "host": "db",
        "port": "6543",
        "dbname": "demo",
        "sslmode": "require",
    }


def test_dsn_with_an_unreadable_dsn_is_a_config_error_without_it() -> None:
    with pytest.raises(ConfigError) as caught:
        dsn_with("postgresql://u:Hidden pw@db/demo", dbname="other")
    assert "Hidden" not in caught.value.message
