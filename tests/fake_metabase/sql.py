"""The fake's warehouse side, on real PostgreSQL: connection tests, schema sync, native queries."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import re
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 30_000

# Metabase's postgres driver: database type → base type (driver/postgres.clj `default-base-types`).
_BASE_TYPES = {
    "int2": "type/Integer",
    "int4": "type/Integer",
    "int8": "type/BigInteger",
    "oid": "type/Integer",
    "float4": "type/Float",
    "float8": "type/Float",
    "numeric": "type/Decimal",
    "money": "type/Decimal",
    "text": "type/Text",
    "varchar": "type/Text",
    "bpchar": "type/Text",
    "char": "type/Text",
    "name": "type/Text",
    "citext": "type/Text",
    "bool": "type/Boolean",
    "date": "type/Date",
    "timestamp": "type/DateTime",
    "timestamptz": "type/DateTimeWithLocalTZ",
    "time": "type/Time",
    "timetz": "type/TimeWithLocalTZ",
    "uuid": "type/UUID",
    "json": "type/JSON",
    "jsonb": "type/JSON",
    "inet": "type/IPAddress",
    "xml": "type/Structured",
    "interval": "type/*",
    "bytea": "type/*",
}


TEMPORAL_TYPES = frozenset({"type/Date", "type/DateTime", "type/DateTimeWithLocalTZ"})


def base_type_for(database_type: str, *, is_enum: bool = False, is_array: bool = False) -> str:
    """Return Metabase's base_type for a PostgreSQL type name."""
    if is_array or database_type.startswith("_"):
        return "type/Array"
    if is_enum:
        return "type/PostgresEnum"
    return _BASE_TYPES.get(database_type, "type/*")


class ConnectionFailed(Exception):
    """A database connection test failed; `body` is Metabase's 400 answer."""

    def __init__(self, body: dict) -> None:
        super().__init__(body["message"])
        self.body = body


class QueryFailed(Exception):
    """A native query could not run; the message goes into the 202 `failed` body."""


def _connect_args(details: dict) -> dict[str, Any]:
    return {
        "host": str(details.get("host") or "localhost"),
        "port": details.get("port") or 5432,
        "dbname": details.get("dbname") or details.get("db") or "",
        "user": details.get("user") or "",
        "password": details.get("password") or "",
        "connect_timeout": CONNECT_TIMEOUT_S,
        **_ssl_options(details),
        "prepare_threshold": _prepare_threshold(details),
    }


def connect(details: dict) -> psycopg.Connection:
    """Return a connection to the warehouse `details` name; raises ConnectionFailed like Metabase."""
    host, port = str(details.get("host") or "localhost"), details.get("port") or 5432
    try:
        return psycopg.connect(**{**_connect_args(details), "port": int(port)})
    except (ValueError, psycopg.Error) as exc:
        raise ConnectionFailed(_humanize(str(exc), host, port)) from exc


class _Pool:
    """Idle warehouse connections kept for the next query, as Metabase keeps a c3p0 pool per database.

    A connection goes back only when it is idle and healthy after a rollback; connection tests and sync
    always open their own (as Metabase's do). Keyed by every connection argument, so a database whose
    details change gets new connections. `close()` drops them all (the fake calls it when it stops).
    """

    def __init__(self, size: int = 2) -> None:
        self._size = size
        self._idle: dict[str, list[psycopg.Connection]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def connection(self, details: dict) -> Iterator[psycopg.Connection]:
        """A connection to `details`: an idle one that still answers, else a new one."""
        try:
            key = repr(sorted(_connect_args(details).items()))
        except ValueError:  # details connect() refuses as Metabase does
            key = ""
        conn = self._take(key) if key else None
        if conn is None:
            conn = connect(details)
        try:
            yield conn
        finally:
            self._release(key, conn)

    def _take(self, key: str) -> psycopg.Connection | None:
        while True:
            with self._lock:
                idle = self._idle.get(key, [])
                conn = idle.pop() if idle else None
            if conn is None:
                return None
            try:  # the server may have gone or closed it since (c3p0 tests a connection on checkout)
                conn.execute("select 1", prepare=False)
                conn.rollback()
                return conn
            except psycopg.Error:
                conn.close()

    def _release(self, key: str, conn: psycopg.Connection) -> None:
        if not key:
            conn.close()
            return
        try:
            conn.rollback()
        except psycopg.Error:
            conn.close()
        if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.close()
            return
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self._size:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for conn in connections:
                conn.close()


POOL = _Pool()


def _ssl_options(details: dict) -> dict[str, str]:
    """libpq's SSL options for `details`, as driver/postgres.clj `connection-details->spec` builds pgjdbc's.

    Without `ssl`: sslmode=disable. With it: sslmode is `ssl-mode` (require when absent) and the root
    certificate the `ssl-root-cert` secret (`ssl-params`): an uploaded value is written to a file.
    """
    if not details.get("ssl"):
        return {"sslmode": "disable"}
    options = {"sslmode": str(details.get("ssl-mode") or "require")}
    root_cert = _secret_file(details, "ssl-root-cert")
    if root_cert is not None:
        options["sslrootcert"] = root_cert
    return options


def _secret_file(details: dict, name: str) -> str | None:
    """The file holding the secret connection property `name` (secrets/models/secret.clj `value-as-file!`).

    `<name>-options` "local" means `<name>-path`, "uploaded" means `<name>-value` (PEM text, or a base64
    data URL as the admin UI uploads it); without options a value wins over a path.
    """
    options, value, path = (details.get(f"{name}-{key}") for key in ("options", "value", "path"))
    if options == "local" or (options is None and value is None and path is not None):
        return str(path) if path else None
    if value is None:
        return None
    data = str(value).encode()
    match = _DATA_URL.match(str(value))
    if match is not None:
        data = base64.b64decode(str(value)[match.end() :])
    folder = Path(tempfile.gettempdir()) / "fake-metabase-secrets"
    folder.mkdir(mode=0o700, exist_ok=True)
    file = folder / hashlib.sha256(data).hexdigest()
    if not file.exists():
        file.write_bytes(data)
    return str(file)


_DATA_URL = re.compile(r"^data:application/([^;]*);base64,")


def jdbc_options(details: dict) -> dict[str, str]:
    """pgjdbc options from `additional-options`, appended to the JDBC URL (`a=1&b=2`)."""
    text = str(details.get("additional-options") or "")
    pairs = (item.partition("=") for item in text.split("&") if item.strip())
    return {key.strip(): value.strip() for key, _, value in pairs}


def _prepare_threshold(details: dict) -> int | None:
    # pgjdbc's prepareThreshold (default 5; 0 = never a server-side prepared statement, negative = from the
    # first run) maps onto psycopg's prepare_threshold (None = never, 0 = from the first run).
    threshold = int(jdbc_options(details).get("prepareThreshold", "5"))
    if threshold == 0:
        return None
    return max(threshold, 0)


def _humanize(message: str, host: str, port: Any) -> dict:
    # The driver's `connection-error-messages`: the same texts the Metabase admin UI shows.
    lowered = message.lower()
    if "password authentication failed" in lowered or ("role" in lowered and "does not exist" in lowered):
        return {
            "message": "Looks like the username or password is incorrect.",
            "errors": {"user": "check your username", "password": "check your password"},
        }
    if "database" in lowered and "does not exist" in lowered:
        return {
            "message": "Looks like the Database name is incorrect.",
            "errors": {"dbname": "check your database name settings"},
        }
    if "connection refused" in lowered:
        return {
            "message": f"Connection to host '{host}' successful, but port {port} is invalid.",
            "errors": {"port": "check your port settings"},
        }
    unreachable = ("translate host name", "resolve host", "timeout", "timed out", "no route", "unreachable")
    if any(marker in lowered for marker in unreachable):
        return {"message": f"Host '{host}' is not reachable", "errors": {"host": "check your host settings"}}
    return {"message": message.strip()}


def check_connection(details: dict) -> str:
    """Return the server version string after a successful connect; raises ConnectionFailed."""
    with connect(details) as conn:
        return str(conn.execute("show server_version").fetchone()[0])


# The tables sync sees (driver/postgres.clj `get-tables-sql` and `current-user-table-privileges`): tables,
# views, materialized views, partitioned and foreign tables outside pg_* and information_schema, in a schema
# the user may USAGE, that it may SELECT.
_INTROSPECT_COLUMNS = """
select n.nspname, c.relname, c.relkind, obj_description(c.oid, 'pg_class'), c.reltuples::bigint,
       a.attname, a.attnum, t.typname, t.typtype, t.typcategory, a.attnotnull,
       col_description(c.oid, a.attnum), pg_get_expr(d.adbin, d.adrelid)
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
join pg_type t on t.oid = a.atttypid
left join pg_attrdef d on d.adrelid = c.oid and d.adnum = a.attnum
where c.relkind in ('r', 'v', 'm', 'p', 'f')
  and n.nspname !~ '^pg_' and n.nspname <> 'information_schema'
  and has_schema_privilege(n.oid, 'USAGE') and has_any_column_privilege(c.oid, 'SELECT')
order by n.nspname, c.relname, a.attnum
"""

_INTROSPECT_KEYS = """
select con.contype, sn.nspname, src.relname, sa.attname, tn.nspname, tgt.relname, ta.attname
from pg_constraint con
join pg_class src on src.oid = con.conrelid
join pg_namespace sn on sn.oid = src.relnamespace
join pg_attribute sa on sa.attrelid = con.conrelid and sa.attnum = con.conkey[1]
left join pg_class tgt on tgt.oid = con.confrelid
left join pg_namespace tn on tn.oid = tgt.relnamespace
left join pg_attribute ta on ta.attrelid = con.confrelid and ta.attnum = con.confkey[1]
where con.contype in ('p', 'f') and array_length(con.conkey, 1) = 1
"""


def schema_filter(details: dict) -> Callable[[str], bool]:
    """Whether sync reads a schema, from `schema-filters-type` and `-patterns` (driver/sync.clj).

    "inclusion" or "exclusion" of comma-separated patterns, each trimmed, `*` a wildcard unless escaped
    with a backslash, matched against the whole name; any other type (or no patterns) reads every schema.
    Persisted models' `metabase_cache*` schemas are never read (sql_jdbc/sync/describe_database.clj).
    """
    kind = details.get("schema-filters-type")
    patterns = str(details.get("schema-filters-patterns") or "")
    if kind not in ("inclusion", "exclusion") or not patterns.strip():
        return lambda schema: not schema.startswith("metabase_cache")
    regex = re.compile(
        "|".join(re.sub(r"(^|[^\\])\*", r"\1.*", part.strip()) for part in patterns.split(","))
    )
    if kind == "inclusion":
        return lambda schema: not schema.startswith("metabase_cache") and regex.fullmatch(schema) is not None
    return lambda schema: not schema.startswith("metabase_cache") and regex.fullmatch(schema) is None


def introspect(details: dict) -> list[dict]:
    """The tables and views sync would read (schemas by the database's filter, only what the user may
    SELECT) with columns and keys; raises ConnectionFailed."""
    syncs = schema_filter(details)
    with connect(details) as conn:
        conn.read_only = True
        column_rows = [row for row in conn.execute(_INTROSPECT_COLUMNS).fetchall() if syncs(row[0])]
        key_rows = conn.execute(_INTROSPECT_KEYS).fetchall()
    primary: set[tuple[str, str, str]] = set()
    foreign: dict[tuple[str, str, str], tuple[str, str, str]] = {}
    for contype, schema, table, column, target_schema, target_table, target_column in key_rows:
        if contype == "p":
            primary.add((schema, table, column))
        elif target_table:
            foreign[(schema, table, column)] = (target_schema, target_table, target_column)
    tables: dict[tuple[str, str], dict] = {}
    for (
        schema,
        name,
        kind,
        description,
        rows,
        column,
        position,
        typname,
        typtype,
        typcategory,
        notnull,
        comment,
        default,
    ) in column_rows:
        table = tables.setdefault(
            (schema, name),
            {
                "schema": schema,
                "name": name,
                "is_view": kind in ("v", "m"),
                "description": description,
                "estimated_row_count": max(int(rows), 0) if kind in ("r", "p") else None,
                "columns": [],
            },
        )
        target = foreign.get((schema, name, column))
        table["columns"].append(
            {
                "name": column,
                "position": position - 1,
                "database_type": typname,
                "base_type": base_type_for(typname, is_enum=typtype == "e", is_array=typcategory == "A"),
                "nullable": not notnull,
                "pk": (schema, name, column) in primary,
                # [table, column] in the same schema, [schema, table, column] in another one.
                "fk_target": (list(target[1:]) if target[0] == schema else list(target)) if target else None,
                "description": comment,
                "auto_increment": bool(default and default.startswith("nextval(")),
                "default": default,
            }
        )
    return list(tables.values())


# Name patterns Metabase's sync classifies without fingerprints (sync/analyze/classifiers/name.clj).
_SEMANTIC_BY_NAME = [
    (re.compile(r"^(latitude|lat)$|_lat$|_latitude$"), {"type/Float", "type/Decimal"}, "type/Latitude"),
    (
        re.compile(r"^(longitude|lon|lng|long)$|_lon$|_lng$|_longitude$"),
        {"type/Float", "type/Decimal"},
        "type/Longitude",
    ),
    (re.compile(r"e-?mail"), {"type/Text"}, "type/Email"),
    (re.compile(r"url|uri|link"), {"type/Text"}, "type/URL"),
    (re.compile(r"^(first_?name|last_?name|full_?name|name)$|_name$"), {"type/Text"}, "type/Name"),
    (re.compile(r"^(city)$|_city$"), {"type/Text"}, "type/City"),
    (re.compile(r"^(state)$"), {"type/Text"}, "type/State"),
    (re.compile(r"^(country)$|_country$"), {"type/Text"}, "type/Country"),
    (re.compile(r"^(zip|zip_?code|postal_?code|postcode)$"), {"type/Text", "type/Integer"}, "type/ZipCode"),
    (
        re.compile(r"^(created_at|created|creation_date)$"),
        {"type/Date", "type/DateTime", "type/DateTimeWithLocalTZ"},
        "type/CreationTimestamp",
    ),
    (
        re.compile(r"(price|cost|amount|total|revenue|balance)"),
        {"type/Float", "type/Decimal", "type/Integer", "type/BigInteger"},
        "type/Currency",
    ),
    (re.compile(r"(count|quantity|qty)$|^number_of_"), {"type/Integer", "type/BigInteger"}, "type/Quantity"),
    (re.compile(r"(percent|pct|rate)$"), {"type/Float", "type/Decimal"}, "type/Percentage"),
]


def semantic_type_for(column: dict) -> str | None:
    """Return the semantic type sync would give a column: keys first, then name patterns."""
    if column["pk"]:
        return "type/PK"
    if column["fk_target"]:
        return "type/FK"
    name = column["name"].lower()
    for pattern, base_types, semantic in _SEMANTIC_BY_NAME:
        if column["base_type"] in base_types and pattern.search(name):
            return semantic
    return None


_ENTITY_BY_NAME = [
    (re.compile(r"order|transaction|sale|payment|invoice|receipt"), "entity/TransactionTable"),
    (re.compile(r"product|item|sku"), "entity/ProductTable"),
    (re.compile(r"user|account|customer|person|people|member"), "entity/UserTable"),
    (re.compile(r"event|log"), "entity/EventTable"),
    (re.compile(r"company|business|vendor|organization"), "entity/CompanyTable"),
    (re.compile(r"subscription"), "entity/SubscriptionTable"),
]


def entity_type_for(table_name: str) -> str:
    """Return the `entity_type` Metabase infers from a table name."""
    for pattern, entity in _ENTITY_BY_NAME:
        if pattern.search(table_name.lower()):
            return entity
    return "entity/GenericTable"


def humanize(name: str) -> str:
    """Return Metabase's display name for an identifier: `order_id` → `Order ID`."""
    words = [w for w in re.split(r"[_\-\s]+", name) if w]
    return " ".join("ID" if w.lower() == "id" else w.capitalize() for w in words) or name


# ----------------------------------------------------------------- native queries


@dataclass
class FieldRef:
    """The column a field-filter tag filters on."""

    schema: str
    table: str
    column: str
    base_type: str

    def sql(self) -> str:
        return ".".join(_quote_ident(part) for part in (self.schema, self.table, self.column))


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: Any) -> str:
    """Return `value` as a SQL literal (strings quoted with '' doubled, numbers as numbers)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _number_literal(value: Any, label: str) -> str:
    try:
        number = float(value) if not isinstance(value, int) else value
    except (TypeError, ValueError) as exc:
        raise QueryFailed(f"Error: invalid number value for {label}: {value!r}") from exc
    if isinstance(number, float) and number.is_integer() and "." not in str(value):
        return str(int(number))
    return repr(number)


_TAG_RE = re.compile(r"\{\{\s*([^}\s]+)\s*\}\}")
_OPTIONAL_RE = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_RELATIVE_RE = re.compile(r"^(past|next)(\d+)(minute|hour|day|week|month|quarter|year)s(~)?$")
_UNITS = ("minute", "hour", "day", "week", "month", "quarter", "year")


def _values(value: Any) -> list:
    if isinstance(value, list):
        return value
    return [value]


def _has_value(value: Any) -> bool:
    return value is not None and value != [] and value != ""


def _date_literal(text: str) -> str:
    if not _DATE_RE.match(text):
        raise QueryFailed(f"Don't know how to parse date string {text!r}")
    return f"date {quote_literal(text[:10])}"


def _date_filter(column: str, value: str) -> str:
    text = str(value).strip()
    as_date = f"CAST({column} AS date)"
    if "~" in text and not _RELATIVE_RE.match(text):
        start, _, end = text.partition("~")
        if start and end:
            return f"{as_date} BETWEEN {_date_literal(start)} AND {_date_literal(end)}"
        if start:
            return f"{as_date} >= {_date_literal(start)}"
        return f"{as_date} <= {_date_literal(end)}"
    match = _RELATIVE_RE.match(text)
    if match:
        direction, amount, unit, include_current = match.groups()
        trunc = f"date_trunc('{unit}', now())"
        # PostgreSQL intervals have no quarters: count them as three months.
        months = 3 if unit == "quarter" else 1
        interval_unit = "month" if unit == "quarter" else unit
        step = f"interval '{int(amount) * months} {interval_unit}'"
        one = f"interval '{months} {interval_unit}'"
        if direction == "past":
            end = f"{trunc} + {one}" if include_current else trunc
            return f"{column} >= {trunc} - {step} AND {column} < {end}"
        start = trunc if include_current else f"{trunc} + {one}"
        return f"{column} >= {start} AND {column} < {trunc} + {one} + {step}"
    for prefix, offset in (("this", 0), ("last", -1), ("next", 1)):
        if text.startswith(prefix) and text[len(prefix) :] in _UNITS:
            unit = text[len(prefix) :]
            trunc = f"date_trunc('{unit}', now()) + interval '{offset} {unit}'"
            return f"{column} >= {trunc} AND {column} < {trunc} + interval '1 {unit}'"
    if text in ("today", "yesterday"):
        shift = 0 if text == "today" else 1
        return f"{as_date} = CURRENT_DATE - {shift}"
    month = re.match(r"^(\d{4})-(\d{2})$", text)
    if month:
        return f"date_trunc('month', {column}) = date '{month.group(1)}-{month.group(2)}-01'"
    quarter = re.match(r"^Q([1-4])-(\d{4})$", text)
    if quarter:
        first_month = (int(quarter.group(1)) - 1) * 3 + 1
        return f"date_trunc('quarter', {column}) = date '{quarter.group(2)}-{first_month:02d}-01'"
    return f"{as_date} = {_date_literal(text)}"


def _field_filter(ref: FieldRef, param_type: str, value: Any) -> str:
    column = ref.sql()
    values = _values(value)
    numeric = ref.base_type in ("type/Integer", "type/BigInteger", "type/Float", "type/Decimal")

    def literal(v: Any) -> str:
        return _number_literal(v, ref.column) if numeric else quote_literal(v)

    looks_like_date = bool(values) and isinstance(values[0], str) and bool(_DATE_RE.match(values[0]))
    if param_type.startswith("date") or (ref.base_type in TEMPORAL_TYPES and looks_like_date):
        return _date_filter(column, values[0])
    if param_type == "number/between":
        low, high = [*values, None, None][:2]
        return f"{column} BETWEEN {_number_literal(low, ref.column)} AND {_number_literal(high, ref.column)}"
    if param_type == "number/>=":
        return f"{column} >= {_number_literal(values[0], ref.column)}"
    if param_type == "number/<=":
        return f"{column} <= {_number_literal(values[0], ref.column)}"
    if param_type in ("string/contains", "string/does-not-contain", "string/starts-with", "string/ends-with"):
        patterns = {
            "string/contains": "%{}%",
            "string/does-not-contain": "%{}%",
            "string/starts-with": "{}%",
            "string/ends-with": "%{}",
        }
        negate = "NOT " if param_type == "string/does-not-contain" else ""
        clauses = [
            f"{negate}(LOWER({column}) LIKE {quote_literal(patterns[param_type].format(str(v).lower()))})"
            for v in values
        ]
        return "(" + (" AND " if negate else " OR ").join(clauses) + ")"
    if param_type in ("string/!=", "number/!="):
        if len(values) == 1:
            return f"({column} <> {literal(values[0])} OR {column} IS NULL)"
        return f"({column} NOT IN ({', '.join(literal(v) for v in values)}) OR {column} IS NULL)"
    if len(values) == 1:
        return f"{column} = {literal(values[0])}"
    return f"{column} IN ({', '.join(literal(v) for v in values)})"


def _raw_value(tag: dict, param_type: str | None, value: Any) -> str:
    tag_type = tag.get("type")
    values = _values(value)
    label = tag.get("display-name") or tag.get("name")
    if tag_type == "number":
        return ", ".join(_number_literal(v, label) for v in values)
    if tag_type == "date":
        return _date_literal(str(values[0]))
    if tag_type == "boolean":
        return quote_literal(bool(values[0]) if not isinstance(values[0], str) else values[0] == "true")
    return ", ".join(quote_literal(v) for v in values)


def substitute(
    sql: str,
    tags: dict[str, dict],
    values: dict[str, tuple[str | None, Any]],
    field_refs: dict[str, FieldRef],
) -> str:
    """Return `sql` with template tags replaced; raises QueryFailed for a required tag without a value.

    `values` maps tag name → (parameter type, value) from the request; tag defaults fill the gaps.
    Optional `[[ ... ]]` clauses are kept (brackets stripped) only when all their tags have values.
    """
    resolved: dict[str, tuple[str | None, Any]] = {}
    for name, tag in tags.items():
        param_type, value = values.get(name, (None, None))
        if not _has_value(value) and _has_value(tag.get("default")):
            param_type, value = tag.get("widget-type") or tag.get("type"), tag.get("default")
        if _has_value(value):
            resolved[name] = (param_type, value)

    def render(match: re.Match[str], optional: bool) -> str:
        name = match.group(1)
        tag = tags.get(name)
        if tag is None:
            raise QueryFailed(f"Cannot run the query: missing template tag definition for {{{{{name}}}}}")
        label = tag.get("display-name") or name
        if tag.get("type") in ("card", "snippet"):
            raise QueryFailed(
                f"The fake Metabase does not expand {tag['type']} references such as {{{{{name}}}}}"
            )
        if name not in resolved:
            if tag.get("type") == "dimension" and not tag.get("required"):
                return "1 = 1"
            raise QueryFailed(f"You'll need to pick a value for '{label}' before this query can run.")
        param_type, value = resolved[name]
        if tag.get("type") == "dimension":
            ref = field_refs.get(name)
            if ref is None:
                raise QueryFailed(f"Cannot run the query: field for template tag '{name}' does not exist")
            return _field_filter(ref, param_type or tag.get("widget-type") or "category", value)
        return _raw_value(tag, param_type, value)

    def optional_clause(match: re.Match[str]) -> str:
        inner = match.group(1)
        names = _TAG_RE.findall(inner)
        if not names or any(n not in resolved for n in names):
            return ""
        return _TAG_RE.sub(lambda m: render(m, True), inner)

    without_optionals = _OPTIONAL_RE.sub(optional_clause, sql)
    return _TAG_RE.sub(lambda m: render(m, False), without_optionals)


def _json_value(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return (
            int(value)
            if value == value.to_integral_value() and value.as_tuple().exponent >= 0
            else float(value)
        )
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return value.isoformat() + "Z"
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat() + "T00:00:00Z"
    if isinstance(value, dt.time | uuid.UUID):
        return str(value)
    if isinstance(value, memoryview | bytes):
        return bytes(value).hex()
    return value


def run_native(details: dict, sql: str, max_rows: int = 2000) -> dict:
    """Return `{"rows", "cols"}` of `sql` run read-only; raises QueryFailed with PostgreSQL's message."""
    try:
        with POOL.connection(details) as conn:
            conn.read_only = True
            try:
                conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
                cursor = conn.execute(sql.rstrip().rstrip(";"))
                if cursor.description is None:
                    return {"rows": [], "cols": []}
                rows = cursor.fetchmany(max_rows)
                description = list(cursor.description)
                type_names = []
                for column in description:
                    info = conn.adapters.types.get(column.type_code)
                    type_names.append(info.name if info else "unknown")
            except psycopg.Error as exc:
                raise QueryFailed(str(exc).strip()) from exc
    except ConnectionFailed as exc:
        raise QueryFailed(exc.body["message"]) from exc
    cols = [
        {
            "name": column.name,
            "display_name": column.name,
            "base_type": base_type_for(type_name),
            "effective_type": base_type_for(type_name),
            "database_type": type_name,
            "source": "native",
            "field_ref": ["field", column.name, {"base-type": base_type_for(type_name)}],
        }
        for column, type_name in zip(description, type_names, strict=True)
    ]
    return {"rows": [[_json_value(v) for v in row] for row in rows], "cols": cols}
