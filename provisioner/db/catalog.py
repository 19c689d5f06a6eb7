"""The tables and views of a PostgreSQL database as Metabase would sync them: the `Schema` `validate` checks
query-builder questions against.

Every relation of every schema but the system ones (`pg_*`, `information_schema`), its columns in order
with the base type Metabase's postgres driver gives their type (`driver/postgres.clj`
`default-base-types`; an enum is `type/PostgresEnum`, a domain takes its base type), and the foreign keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from provisioner.mbql.columns import Column

if TYPE_CHECKING:
    import psycopg

# PostgreSQL type name -> Metabase base type, as the postgres driver maps them; anything else is type/*.
BASE_TYPES = {
    "int2": "type/Integer",
    "int4": "type/Integer",
    "int8": "type/BigInteger",
    "serial": "type/Integer",
    "bigserial": "type/BigInteger",
    "pg_lsn": "type/Integer",
    "float4": "type/Float",
    "float8": "type/Float",
    "numeric": "type/Decimal",
    "money": "type/Decimal",
    "text": "type/Text",
    "varchar": "type/Text",
    "bpchar": "type/Text",
    "char": "type/Text",
    "citext": "type/Text",
    "name": "type/Text",
    "bool": "type/Boolean",
    "date": "type/Date",
    "time": "type/Time",
    "timetz": "type/TimeWithLocalTZ",
    "timestamp": "type/DateTime",
    "timestamptz": "type/DateTimeWithLocalTZ",
    "uuid": "type/UUID",
    "json": "type/JSON",
    "jsonb": "type/JSON",
    "inet": "type/IPAddress",
    "cidr": "type/Structured",
    "macaddr": "type/Structured",
    "xml": "type/Structured",
}

_COLUMNS = """
SELECT n.nspname, c.relname, a.attname,
       COALESCE(base.typname, t.typname), COALESCE(base.typtype, t.typtype),
       COALESCE(base_ns.nspname, t_ns.nspname)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
JOIN pg_catalog.pg_namespace t_ns ON t_ns.oid = t.typnamespace
LEFT JOIN pg_catalog.pg_type base ON t.typtype = 'd' AND base.oid = t.typbasetype
LEFT JOIN pg_catalog.pg_namespace base_ns ON base_ns.oid = base.typnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
ORDER BY n.nspname, c.relname, a.attnum
"""

# Each column of a foreign key with the column it points to (a composite key pairs them by position).
_FOREIGN_KEYS = """
SELECT src_ns.nspname, src.relname, src_col.attname, tgt_ns.nspname, tgt.relname, tgt_col.attname,
       cardinality(con.conkey)
FROM pg_catalog.pg_constraint con
CROSS JOIN LATERAL unnest(con.conkey, con.confkey) AS k(src_attnum, tgt_attnum)
JOIN pg_catalog.pg_class src ON src.oid = con.conrelid
JOIN pg_catalog.pg_namespace src_ns ON src_ns.oid = src.relnamespace
JOIN pg_catalog.pg_attribute src_col ON src_col.attrelid = src.oid AND src_col.attnum = k.src_attnum
JOIN pg_catalog.pg_class tgt ON tgt.oid = con.confrelid
JOIN pg_catalog.pg_namespace tgt_ns ON tgt_ns.oid = tgt.relnamespace
JOIN pg_catalog.pg_attribute tgt_col ON tgt_col.attrelid = tgt.oid AND tgt_col.attnum = k.tgt_attnum
WHERE con.contype = 'f' AND src_ns.nspname !~ '^pg_' AND src_ns.nspname <> 'information_schema'
ORDER BY cardinality(con.conkey), con.conname
"""


def base_type(type_name: str, *, is_enum: bool = False) -> str:
    """Metabase's base type for a PostgreSQL type name (`int4`, `timestamptz` ...); type/* when unknown."""
    return "type/PostgresEnum" if is_enum else BASE_TYPES.get(type_name, "type/*")


@dataclass(frozen=True)
class _Key:
    schema: str
    table: str

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"


class PostgresSchema:
    """The tables and views of a database by name (the `Schema` of mbql/columns.py), read once."""

    def __init__(
        self,
        tables: dict[tuple[str, str], list[Column]],
        foreign_keys: dict[tuple[str, str, str], tuple[str, str, str]],
    ) -> None:
        """`tables`: (schema, table) -> columns; `foreign_keys`: (schema, table, column) -> its target."""
        self._tables = {_Key(*key): columns for key, columns in tables.items()}
        self._foreign_keys = foreign_keys
        self._by_bare: dict[str, list[_Key]] = {}
        for key in sorted(self._tables, key=lambda k: (k.schema != "public", k.schema)):
            self._by_bare.setdefault(key.table, []).append(key)

    @classmethod
    def read(cls, conn: psycopg.Connection) -> PostgresSchema:
        """The schema of the database `conn` is connected to (two catalog queries, nothing written)."""
        tables: dict[tuple[str, str], list[Column]] = {}
        for schema, table, column, type_name, type_kind, type_schema in conn.execute(_COLUMNS).fetchall():
            known = type_schema in ("pg_catalog", "public") or type_kind == "e"
            kind = base_type(type_name, is_enum=type_kind == "e") if known else "type/*"
            tables.setdefault((schema, table), []).append(Column(column, kind))
        foreign_keys: dict[tuple[str, str, str], tuple[str, str, str]] = {}
        for src_schema, src, src_col, tgt_schema, tgt, tgt_col, _ in conn.execute(_FOREIGN_KEYS).fetchall():
            # Single-column keys come first: a column that is also part of a composite key keeps its own.
            foreign_keys.setdefault((src_schema, src, src_col), (tgt_schema, tgt, tgt_col))
        return cls(tables, foreign_keys)

    # -- the Schema protocol ----------------------------------------------------------------

    def columns(self, table: str) -> list[Column] | None:
        key = self._find(table)
        return list(self._tables[key]) if key is not None else None

    def foreign_key(self, table: str, column: str) -> tuple[str, str] | None:
        key = self._find(table)
        target = self._foreign_keys.get((key.schema, key.table, column)) if key is not None else None
        if target is None:
            return None
        return self._canonical(_Key(target[0], target[1])), target[2]

    def canonical_table(self, table: str) -> str | None:
        key = self._find(table)
        return self._canonical(key) if key is not None else None

    # -- beyond the protocol ------------------------------------------------------------------

    def qualified_table(self, table: str) -> tuple[str, str] | None:
        """(schema, name) of `table` (`name` or `schema.name`), or None when there is no such table."""
        key = self._find(table)
        return (key.schema, key.table) if key is not None else None

    def tables_named(self, name: str) -> list[str]:
        """Every `schema.name` whose bare name is `name`, `public` first."""
        return [key.qualified for key in self._by_bare.get(name, [])]

    def _find(self, table: str) -> _Key | None:
        schema, _, bare = table.rpartition(".")
        if schema:
            key = _Key(schema, bare)
            return key if key in self._tables else None
        # A bare name that several schemas hold means the one in `public`, as PostgreSQL's default
        # search_path and Metabase's table lookup both resolve it.
        found = self._by_bare.get(bare)
        return found[0] if found else None

    def _canonical(self, key: _Key) -> str:
        return key.table if len(self._by_bare.get(key.table, [])) == 1 else key.qualified
