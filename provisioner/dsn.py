"""PostgreSQL connection strings, read and rewritten with psycopg's own conninfo parser (URL or key=value).

Errors never quote the DSN: psycopg's parse errors can repeat the password, and a string that does not
parse may hold it where no redaction finds it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from provisioner.errors import ConfigError

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 5432
_FORMAT_HINT = "use postgresql://user:password@host:5432/dbname"


@dataclass(frozen=True)
class DsnParts:
    """What a DSN names: host and port (the first when it lists several), database, user, password."""

    host: str
    port: int
    dbname: str | None
    user: str | None
    password: SecretStr | None
    sslmode: str | None
    sslrootcert: str | None
    # libpq allows lists of hosts and ports (failover); Metabase and the tool's checks need exactly one.
    single_host: bool

    @property
    def encrypted(self) -> bool:
        """Whether the sslmode requires SSL (`require`, `verify-ca`, `verify-full`)."""
        return self.sslmode in ("require", "verify-ca", "verify-full")

    @property
    def verifies_server(self) -> bool:
        """Whether the sslmode also checks the server's certificate against a root (`verify-*`)."""
        return self.sslmode in ("verify-ca", "verify-full")


def parse_dsn(dsn: str, *, what: str = "the database URL") -> DsnParts:
    """The parts of `dsn`; raises ConfigError naming `what` if it does not parse or its port is no number."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        values = conninfo_to_dict(dsn)
    except Exception as exc:  # psycopg raises ProgrammingError for any conninfo it cannot read
        raise ConfigError(f"{what} is not a valid PostgreSQL connection string", hint=_FORMAT_HINT) from exc
    host = str(values.get("host") or DEFAULT_HOST)
    ports = str(values.get("port") or DEFAULT_PORT)
    first_port = ports.split(",")[0] or str(DEFAULT_PORT)  # an empty entry of a list is the default
    if not first_port.isdigit() or not 0 < int(first_port) < 65536:
        raise ConfigError(f"{what} has a port that is not a number from 1 to 65535", hint=_FORMAT_HINT)
    password = values.get("password")
    return DsnParts(
        host=host,
        port=int(first_port),
        dbname=_text(values.get("dbname")),
        user=_text(values.get("user")),
        password=SecretStr(str(password)) if password else None,
        sslmode=_text(values.get("sslmode")),
        sslrootcert=_text(values.get("sslrootcert")),
        single_host="," not in host and "," not in ports,
    )


def dsn_with(dsn: str, **changes: str | int) -> str:
    """`dsn` with the named conninfo keywords (user, password, host, port, dbname) replaced, the rest kept.

    The result is in key=value form, values quoted by psycopg. Raises ConfigError when `dsn` does not parse.
    """
    from psycopg.conninfo import make_conninfo

    try:
        return make_conninfo(dsn, **changes)
    except Exception as exc:  # ProgrammingError, as for parse_dsn
        raise ConfigError(
            "the database URL is not a valid PostgreSQL connection string", hint=_FORMAT_HINT
        ) from exc


def _text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None
