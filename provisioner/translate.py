"""Names <-> ids, one function per direction and kind of reference, from a Metabase's own metadata.

The YAML never holds an id: a table is `v_orders` (or `schema.v_orders` when the bare name is
ambiguous), a column `["v_orders", "amount"]`, a question or model its key. Apply turns names into this
Metabase's ids right before writing; plan and export turn what Metabase returns back into names, so two
Metabases whose ids all differ read the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from provisioner.errors import MetabaseNotFound
from provisioner.mbql.columns import Column
from provisioner.mbql.normal import NormalQuery, Stage, map_leaves
from provisioner.metabase.models import DatabaseMetadata, FieldMetadata, TableMetadata

UNKNOWN_CARD = "card#"  # a source card the reader does not know: `card#12`


class TranslateError(ValueError):
    """A name this Metabase does not know (or an id it does not have)."""


class MetadataSchema:
    """A Metabase database's tables and fields, by name and by id (the `Schema` of mbql/columns.py)."""

    def __init__(self, metadata: DatabaseMetadata) -> None:
        self.metadata = metadata
        self.tables = [t for t in metadata.tables if t.active]
        counts: dict[str, int] = {}
        for table in self.tables:
            counts[table.name] = counts.get(table.name, 0) + 1
        self._names = {t.id: t.name if counts[t.name] == 1 else t.qualified_name for t in self.tables}
        self._by_name = {name: t for t in self.tables for name in {self._names[t.id], t.qualified_name}}
        self._fields: dict[int, tuple[TableMetadata, FieldMetadata]] = {
            f.id: (t, f) for t in self.tables for f in t.fields
        }

    # -- the Schema protocol ----------------------------------------------------------------

    def canonical_table(self, table: str) -> str | None:
        found = self._find(table)
        return self._names[found.id] if found is not None else None

    def columns(self, table: str) -> list[Column] | None:
        found = self._find(table)
        if found is None:
            return None
        return [
            Column(f.name, f.effective_type or f.base_type or "type/*", f.display_name) for f in found.fields
        ]

    def foreign_key(self, table: str, column: str) -> tuple[str, str] | None:
        found = self._find(table)
        field = next((f for f in found.fields if f.name == column), None) if found else None
        if field is None or field.fk_target_field_id not in self._fields:
            return None
        target_table, target = self._fields[field.fk_target_field_id]
        return self._names[target_table.id], target.name

    # -- ids ------------------------------------------------------------------------------

    def _find(self, table: str) -> TableMetadata | None:
        if table in self._by_name:
            return self._by_name[table]
        try:
            found = self.metadata.table(table)
        except MetabaseNotFound:
            return None
        return found if found.active else None

    def table_id(self, table: str) -> int:
        found = self._find(table)
        if found is None:
            raise TranslateError(f"no table `{table}` in Metabase database `{self.metadata.name}`")
        return found.id

    def table_name(self, table_id: int) -> str:
        if table_id not in self._names:
            raise TranslateError(f"table id {table_id} is not in Metabase database `{self.metadata.name}`")
        return self._names[table_id]

    def field_id(self, path: list[str]) -> int:
        table = ".".join(path[:-1])
        found = self._find(table)
        field = next((f for f in found.fields if f.name == path[-1]), None) if found else None
        if field is None:
            raise TranslateError(f"no column `{'.'.join(path)}` in Metabase database `{self.metadata.name}`")
        return field.id

    def field_path(self, field_id: int) -> list[str]:
        if field_id not in self._fields:
            raise TranslateError(f"field id {field_id} is not in Metabase database `{self.metadata.name}`")
        table, field = self._fields[field_id]
        return [*self._names[table.id].split("."), field.name]

    def field_by_id(self, field_id: int) -> FieldMetadata | None:
        found = self._fields.get(field_id)
        return found[1] if found else None


def to_ids(query: NormalQuery, schema: MetadataSchema, card_ids: Mapping[str, int]) -> NormalQuery:
    """The query with every name replaced by this Metabase's id; raises TranslateError."""

    def visit(kind: str, value: Any, stage: Stage) -> Any:
        if kind == "table":
            return schema.table_id(value) if isinstance(value, str) else value
        if kind == "card":
            if isinstance(value, str):
                if value not in card_ids:
                    raise TranslateError(f"question `{value}` has no id in this Metabase yet")
                return card_ids[value]
            return value
        options = dict(value[1])
        if isinstance(options.get("source-field"), list):
            options["source-field"] = schema.field_id(options["source-field"])
        leaf = value[-1]
        return ["field", options, schema.field_id(leaf) if isinstance(leaf, list) else leaf]

    return map_leaves(query, visit)


def to_names(query: NormalQuery, schema: MetadataSchema, card_keys: Mapping[int, str]) -> NormalQuery:
    """The query with every id replaced by a name (unknown cards as `card#<id>`); raises TranslateError.

    A column of a model, question or previous step is named by its column name, however Metabase refers
    to it (by field id or by name): the two forms mean the same column.
    """

    def visit(kind: str, value: Any, stage: Stage) -> Any:
        if kind == "table":
            return schema.table_name(value) if isinstance(value, int) else value
        if kind == "card":
            if isinstance(value, int):
                return card_keys.get(value, f"{UNKNOWN_CARD}{value}")
            return value
        return field_to_names(value, schema, stage)

    return map_leaves(query, visit)


def field_to_names(ref: list[Any], schema: MetadataSchema, stage: Stage) -> list[Any]:
    """A normal-form field ref of `stage` with names: a table's column as its path, others by name."""
    options = dict(ref[1])
    if isinstance(options.get("source-field"), int):
        options["source-field"] = schema.field_path(options["source-field"])
    leaf = ref[-1]
    if isinstance(leaf, int):
        path = schema.field_path(leaf)
        alias = options.get("join-alias")
        by_name = "source-table" not in stage if alias is None else not _join_is_table(stage, alias)
        leaf = path[-1] if by_name and "source-field" not in options else path
    return ["field", options, leaf]


def _join_is_table(stage: Stage, alias: Any) -> bool:
    for join in stage.get("joins") or []:
        if join.get("alias") == alias:
            stages = join.get("stages") or [{}]
            return "source-table" in stages[0] and len(stages) == 1
    return False


def field_target_to_names(ref: list[Any], schema: MetadataSchema) -> list[Any]:
    """A dashboard filter target's field ref (`["field", id, opts]`, legacy order) with names."""
    leaf = ref[1]
    options = dict(ref[2] or {}) if len(ref) > 2 else {}
    if isinstance(options.get("source-field"), int):
        options["source-field"] = schema.field_path(options["source-field"])
    return ["field", options, schema.field_path(leaf) if isinstance(leaf, int) else leaf]
