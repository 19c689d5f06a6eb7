"""PostgreSQL SQL for a normal-form query with names: what `validate` prepares to check a question.

Each stage becomes one SELECT; the first reads its table (`"schema"."table" AS "source"`) or the question
it is built on (a subquery), a later one the stage before it (a subquery). Joins are `<strategy> JOIN ...
AS "Alias"`, a column followed through a foreign key joins its table as `"table__via__column"`, as
Metabase's query processor writes them. Every output column is aliased with the name `stage_columns`
gives it, so the names PostgreSQL describes are the names a visualization refers to. The SQL is meant to
be prepared, never run: a binned column takes its range from the whole column (Metabase reads it from the
column's fingerprint), and `now()` stands for the time a query runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from provisioner.mbql.columns import (
    EXTRACTION_UNITS,
    Column,
    Schema,
    is_text,
    result_type,
    stage_columns,
)
from provisioner.mbql.normal import NormalQuery, Stage, args_of, is_clause, options_of


class SqlGenError(ValueError):
    """A query this module cannot write as SQL; the message names the part."""


@dataclass(frozen=True)
class NativeSource:
    """A SQL question another question is built on: its SQL (tags filled in) and, when known, its columns."""

    sql: str
    columns: list[Column] | None = None


CardQuery = Callable[[str], "NormalQuery | str | NativeSource | None"]


@runtime_checkable
class QualifiedSchema(Protocol):
    """A schema that names the PostgreSQL schema of a table (else a bare name relies on search_path)."""

    def qualified_table(self, table: str) -> tuple[str, str] | None: ...


def to_sql(query: NormalQuery, schema: Schema, card_query: CardQuery) -> str:
    """The SELECT for `query`; `card_query(key)` gives a source question's normal query or SQL, or None.

    Raises SqlGenError for a reference it cannot resolve or a clause it cannot write.
    """
    return _Queries(schema, card_query).query(query).sql


def quote(name: str) -> str:
    """A PostgreSQL identifier, always quoted."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: Any) -> str:
    """A PostgreSQL literal for a number, string, boolean or null; raises SqlGenError for anything else."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise SqlGenError(f"cannot write `{value!r}` as a SQL value")


@dataclass(frozen=True)
class _Relation:
    """Something a stage reads: a table, or a SELECT; and its columns when known."""

    sql: str
    columns: list[Column] | None
    table: str | None = None

    @property
    def from_item(self) -> str:
        return self.sql if self.table is not None else "(\n" + _indent(self.sql) + "\n)"


def _indent(sql: str) -> str:
    return "\n".join("  " + line if line else line for line in sql.splitlines())


class _Queries:
    """Compiles queries, their stages and the questions they are built on."""

    def __init__(self, schema: Schema, card_query: CardQuery) -> None:
        self.schema, self.card_query = schema, card_query
        self.open: list[str] = []  # source questions being compiled: a guard against a cycle

    def query(self, query: NormalQuery) -> _Relation:
        stages = query.get("stages") or []
        if not stages:
            raise SqlGenError("the query has no stages")
        relation = self.source(stages[0])
        for stage in stages:
            relation = _StageSql(self, stage, relation).relation()
        return relation

    def source(self, stage: Stage) -> _Relation:
        if stage.get("source-table") is not None:
            return self.table(stage["source-table"])
        if stage.get("source-card") is not None:
            return self.card(stage["source-card"])
        raise SqlGenError("the first stage has neither `source-table` nor `source-card`")

    def join_source(self, join: dict[str, Any]) -> _Relation:
        stages = join.get("stages") or []
        if len(stages) == 1 and set(stages[0]) <= {"source-table", "source-card"}:
            return self.source(stages[0])
        return self.query({"stages": stages})

    def table(self, name: Any) -> _Relation:
        if not isinstance(name, str):
            raise SqlGenError(f"table `{name}` is an id; give its name")
        columns = self.schema.columns(name)
        if columns is None:
            raise SqlGenError(f"no table or view `{name}` in the database")
        parts: tuple[str, ...] | None = None
        if isinstance(self.schema, QualifiedSchema):
            parts = self.schema.qualified_table(name)
        sql = ".".join(quote(p) for p in parts or name.split("."))
        return _Relation(sql, columns, table=name)

    def card(self, key: Any) -> _Relation:
        if not isinstance(key, str):
            raise SqlGenError(f"question `{key}` is an id; give its key")
        if key in self.open:
            raise SqlGenError(f"questions built on each other in a circle: {' -> '.join([*self.open, key])}")
        found = self.card_query(key)
        if found is None:
            raise SqlGenError(f"no model or question `{key}`")
        if isinstance(found, str):
            found = NativeSource(found)
        if isinstance(found, NativeSource):
            return _Relation(found.sql.strip().rstrip(";").rstrip(), found.columns)
        self.open.append(key)
        try:
            return self.query(found)
        finally:
            self.open.pop()


_JOIN_KEYWORDS = {
    "left-join": "LEFT JOIN", "right-join": "RIGHT JOIN", "inner-join": "INNER JOIN", "full-join": "FULL JOIN"
}  # fmt: skip
_TRUNCATION_UNITS = frozenset({"minute", "hour", "day", "week", "month", "quarter", "year"})
_PLAIN_UNITS = ("year", "quarter", "month", "week", "day", "hour", "minute", "second")
# A temporal unit (of a grouping, or of temporal-extract) -> the field PostgreSQL's extract() reads.
_EXTRACT_FIELDS = {
    "minute-of-hour": "minute", "hour-of-day": "hour", "day-of-month": "day", "day-of-year": "doy",
    "week-of-year": "week", "month-of-year": "month", "quarter-of-year": "quarter", "year-of-era": "year",
    "week-of-year-iso": "week", "week-of-year-us": "week", "week-of-year-instance": "week",
    "second-of-minute": "second", **{unit: unit for unit in _PLAIN_UNITS},
}  # fmt: skip
_GET_UNITS = {f"get-{unit}": unit for unit in _PLAIN_UNITS}
_INTERVAL_UNITS = frozenset({"millisecond", *_PLAIN_UNITS})
# Clauses that are a PostgreSQL function of the same arguments.
_FUNCTIONS = {
    "abs": "abs", "ceil": "ceil", "floor": "floor", "round": "round", "sqrt": "sqrt", "exp": "exp",
    "power": "power", "log": "log", "upper": "upper", "lower": "lower", "trim": "btrim", "ltrim": "ltrim",
    "rtrim": "rtrim", "replace": "replace", "length": "char_length", "concat": "concat",
    "coalesce": "COALESCE", "split-part": "split_part", "substring": "substring", "now": "now",
}  # fmt: skip
_CASTS = {
    "text": "text", "integer": "bigint", "float": "double precision", "date": "date", "datetime": "timestamp"
}  # fmt: skip
_COMPARISONS = {"<": "<", "<=": "<=", ">": ">", ">=": ">="}
_LIKE = {"contains": ("%", "%"), "does-not-contain": ("%", "%"), "starts-with": ("", "%"),
         "ends-with": ("%", "")}  # fmt: skip
_URL_PATTERNS = {  # the part of a URL (or e-mail address) each clause extracts
    "host": r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*://)?(?:[^@/]*@)?([^:/?#]+)",
    "domain": r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*://)?(?:[^@/]*@)?(?:[^:/?#]*\.)?([^.:/?#]+)\.[^.:/?#]+(?:[:/?#]|$)",
    "subdomain": r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*://)?(?:[^@/]*@)?([^.:/?#]+)\.[^.:/?#]+\.[^.:/?#]+(?:[:/?#]|$)",
    "path": r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*)?([^?#]*)",
}


class _StageSql:
    """One stage as a SELECT over its source, its joins and the tables its foreign keys lead to."""

    def __init__(self, queries: _Queries, stage: Stage, source: _Relation) -> None:
        self.queries, self.schema, self.stage, self.source = queries, queries.schema, stage, source
        self.joins: dict[str, tuple[dict[str, Any], _Relation]] = {}
        for join in stage.get("joins") or []:
            alias = join.get("alias")
            if not isinstance(alias, str) or alias in self.joins:
                raise SqlGenError(f"a join needs an alias of its own (found {alias!r})")
            self.joins[alias] = (join, queries.join_source(join))
        self.alias = next(a for a in ("source", "source_", "source__") if a not in self.joins)
        # alias -> (table, LEFT JOIN) of each table reached through a foreign key
        self.implicit: dict[str, tuple[_Relation, str]] = {}
        self.expressions: dict[str, Any] = stage.get("expressions") or {}
        self.expanding: list[str] = []

    # -- the statement ----------------------------------------------------------------------

    def relation(self) -> _Relation:
        columns = self.output_columns()
        select = self.select_list(columns)
        where = [self.expr(f) for f in self.stage.get("filters") or []]
        order = self.order_by()
        lines = [
            "SELECT " + ",\n       ".join(select),
            f"FROM {self.source.from_item} AS {quote(self.alias)}",
        ]
        for alias, (join, relation) in self.joins.items():
            lines.append(self.join_sql(alias, join, relation))
        lines += [join for _, join in self.implicit.values()]
        if where:
            lines.append("WHERE " + "\n  AND ".join(where))
        breakouts = self.stage.get("breakout") or []
        if breakouts:
            lines.append("GROUP BY " + ", ".join(str(i + 1) for i in range(len(breakouts))))
        if order:
            lines.append("ORDER BY " + ", ".join(order))
        if self.stage.get("limit") is not None:
            lines.append(f"LIMIT {int(self.stage['limit'])}")
        fields = self.stage.get("fields")
        known = (
            self.source.columns is not None or self.aggregated or bool(isinstance(fields, list) and fields)
        )
        return _Relation("\n".join(lines), columns if known else None)

    def output_columns(self) -> list[Column]:
        joined = {alias: self.columns_of(alias) for alias in self.joins}
        known = {alias: cols for alias, cols in joined.items() if cols is not None}
        return stage_columns(self.stage, self.source.columns or [], known, self.schema.columns)

    def select_list(self, columns: list[Column]) -> list[str]:
        items = self.aggregated_items() if self.aggregated else self.row_items()
        star = [f"{quote(self.alias)}.*"] if items and items[0] is None else []
        values = [item for item in items if item is not None]
        if len(values) != len(columns):
            raise SqlGenError("the stage's columns could not be worked out")  # a bug, not a user error
        return star + [
            f"{value} AS {quote(column.name)}" for value, column in zip(values, columns, strict=True)
        ]

    @property
    def aggregated(self) -> bool:
        return bool(self.stage.get("aggregation") or self.stage.get("breakout"))

    def aggregated_items(self) -> list[str | None]:
        items: list[str | None] = [self.expr(ref) for ref in self.stage.get("breakout") or []]
        return items + [self.aggregation(clause) for clause in self.stage.get("aggregation") or []]

    def row_items(self) -> list[str | None]:
        """Fields (or every source column; None stands for `source.*` when they are unknown), custom
        columns, then joined columns: stage_columns' order."""
        fields = self.stage.get("fields")
        items: list[str | None]
        if isinstance(fields, list) and fields:
            items = [self.expr(ref) for ref in fields]
        elif self.source.columns is None:
            items = [None]
        else:
            items = [f"{quote(self.alias)}.{quote(c.name)}" for c in self.source.columns]
        for name in self.expressions:
            if not (isinstance(fields, list) and fields and ["expression", {}, name] in fields):
                items.append(self.expr(["expression", {}, name]))
        for alias, (join, _) in self.joins.items():
            chosen = join.get("fields", "none")
            if chosen == "all":
                items += [f"{quote(alias)}.{quote(c.name)}" for c in self.known_columns(alias)]
            elif isinstance(chosen, list):
                items += [self.expr(ref) for ref in chosen]
        return items

    def join_sql(self, alias: str, join: dict[str, Any], relation: _Relation) -> str:
        keyword = _JOIN_KEYWORDS.get(join.get("strategy") or "left-join")
        if keyword is None:
            raise SqlGenError(f"join `{alias}`: unknown strategy `{join.get('strategy')}`")
        conditions = [self.expr(c) for c in join.get("conditions") or []]
        on = " AND ".join(conditions) if conditions else "TRUE"
        return f"{keyword} {relation.from_item} AS {quote(alias)} ON {on}"

    def order_by(self) -> list[str]:
        breakouts = self.stage.get("breakout") or []
        out: list[str] = []
        ordered: set[int] = set()
        for item in self.stage.get("order-by") or []:
            direction, ref = str(item[0]).upper(), item[-1]
            if direction not in ("ASC", "DESC"):
                raise SqlGenError(f"unknown sort direction `{item[0]}`")
            position = self.position(ref)
            if position is not None:
                ordered.add(position)
            out.append(f"{position if position is not None else self.expr(ref)} {direction}")
        # Metabase sorts a summarized stage by its groupings unless told otherwise.
        out += [f"{i + 1} ASC" for i in range(len(breakouts)) if i + 1 not in ordered]
        return out

    def position(self, ref: Any) -> int | None:
        """The output position of a grouping or summary a sort refers to, or None."""
        if not self.aggregated:
            return None
        breakouts = self.stage.get("breakout") or []
        if is_clause(ref) and ref[0] == "aggregation":
            index = args_of(ref)[0]
            if not isinstance(index, int) or not 0 <= index < len(self.stage.get("aggregation") or []):
                raise SqlGenError(f"sort by summary {index}, which the stage does not have")
            return len(breakouts) + index + 1
        if ref in breakouts:
            return int(breakouts.index(ref)) + 1
        return None

    # -- columns ----------------------------------------------------------------------------

    def columns_of(self, alias: str) -> list[Column] | None:
        return self.joins[alias][1].columns

    def known_columns(self, alias: str) -> list[Column]:
        columns = self.columns_of(alias)
        if columns is None:
            raise SqlGenError(f"join `{alias}` keeps all columns of a SQL question whose columns are unknown")
        return columns

    def field(self, ref: list[Any]) -> str:
        options, leaf = options_of(ref), ref[-1]
        name = leaf[-1] if isinstance(leaf, list) else leaf
        if not isinstance(name, str) or (isinstance(leaf, list) and leaf[:1] == ["?"]):
            raise SqlGenError(f"field {ref!r} is not resolved to a column name")
        owner = self.owner(options, leaf, name)
        sql = f"{quote(owner)}.{quote(name)}"
        if "temporal-unit" in options:
            return self.bucket(sql, str(options["temporal-unit"]), self.field_type(ref))
        if isinstance(options.get("binning"), dict):
            return self.binned(sql, options["binning"], owner, name)
        return sql

    def owner(self, options: dict[str, Any], leaf: Any, name: str) -> str:
        """The alias (source, join or foreign-key join) a field is read from."""
        if "source-field" in options:
            return self.implicit_join(options, leaf)
        alias = options.get("join-alias")
        if alias is not None:
            if alias not in self.joins:
                raise SqlGenError(f"`{alias}.{name}`: no join named `{alias}` in this stage")
            _check_column(self.columns_of(alias), name, f"join `{alias}`")
            return str(alias)
        if isinstance(leaf, list) and self.source.table is not None:
            table = ".".join(leaf[:-1])
            if table != self.source.table:
                raise SqlGenError(
                    f"`{table}.{name}` is a column of `{table}`, which this stage neither reads nor joins"
                )
        _check_column(self.source.columns, name, "the source of this stage")
        return self.alias

    def implicit_join(self, options: dict[str, Any], leaf: Any) -> str:
        fk = options["source-field"]
        if not (isinstance(fk, list) and len(fk) >= 2 and all(isinstance(p, str) for p in fk)):
            raise SqlGenError(f"the foreign key {fk!r} of an implicit join is not a `table.column`")
        fk_table, fk_column = ".".join(fk[:-1]), fk[-1]
        target = self.schema.foreign_key(fk_table, fk_column)
        if target is None:
            raise SqlGenError(f"`{fk_table}.{fk_column}` is not a foreign key")
        table, column = target
        if isinstance(leaf, list) and ".".join(leaf[:-1]) not in (table, table.rsplit(".", 1)[-1]):
            raise SqlGenError(f"`{fk_table}.{fk_column}` leads to `{table}`, not `{'.'.join(leaf[:-1])}`")
        owner = options.get("source-field-join-alias") or self.alias
        alias = f"{table.rsplit('.', 1)[-1]}__via__{fk_column}"
        if owner != self.alias:
            alias = f"{owner}__{alias}"
        if alias not in self.implicit:
            relation = self.queries.table(table)
            self.implicit[alias] = (
                relation,
                f"LEFT JOIN {relation.from_item} AS {quote(alias)} "
                f"ON {quote(str(owner))}.{quote(fk_column)} = {quote(alias)}.{quote(column)}",
            )
        _check_column(self.implicit[alias][0].columns, leaf[-1] if isinstance(leaf, list) else leaf, table)
        return alias

    def field_type(self, ref: list[Any]) -> str:
        """The base type of a field ref's column (before any temporal unit or binning)."""
        options, leaf = options_of(ref), ref[-1]
        name = leaf[-1] if isinstance(leaf, list) else leaf
        if "source-field" in options and isinstance(leaf, list):
            columns = self.schema.columns(".".join(leaf[:-1]))
        elif options.get("join-alias") in self.joins:
            columns = self.columns_of(str(options["join-alias"]))
        else:
            columns = self.source.columns
        found = next((c for c in columns or [] if c.name == name), None)
        return found.base_type if found is not None else "type/*"

    def type_of(self, ref: list[Any]) -> str:
        """The base type of a reference, as `result_type` asks it."""
        if ref[0] == "expression":
            found = self.expressions.get(ref[-1])
            return result_type(found, self.type_of) if found is not None else "type/*"
        if ref[0] == "field":
            if options_of(ref).get("temporal-unit") in EXTRACTION_UNITS:
                return "type/Integer"
            return self.field_type(ref)
        return "type/*"

    # -- temporal units and binning -----------------------------------------------------------

    def bucket(self, sql: str, unit: str, base_type: str) -> str:
        if unit in _TRUNCATION_UNITS:
            return _truncate(sql, unit, base_type)
        if unit == "day-of-week":  # Sunday is 1, Metabase's default start of the week
            return f"(CAST(extract(dow FROM {sql}) AS integer) + 1)"
        if unit in EXTRACTION_UNITS:
            return f"CAST(extract({_EXTRACT_FIELDS[unit]} FROM {sql}) AS integer)"
        raise SqlGenError(f"unknown temporal unit `{unit}`")

    def binned(self, sql: str, binning: dict[str, Any], owner: str, name: str) -> str:
        strategy = binning.get("strategy")
        if strategy == "bin-width":
            width = binning.get("bin-width")
            if not isinstance(width, int | float) or isinstance(width, bool) or width <= 0:
                raise SqlGenError(f"a bin width must be a positive number, not {width!r}")
            return f"(floor({sql} / {literal(width)}) * {literal(width)})"
        if strategy not in ("num-bins", "default"):
            raise SqlGenError(f"unknown binning strategy `{strategy}`")
        bins = literal(binning.get("num-bins", 8) if strategy == "num-bins" else 8)
        # Metabase bins over the range of the whole column (its fingerprint), not of the rows filtered.
        whole = f"{self.relation_of(owner).from_item} AS {quote('bounds')}"
        low, high = f"(SELECT min({quote(name)}) FROM {whole})", f"(SELECT max({quote(name)}) FROM {whole})"
        width = f"(({high} - {low}) / CAST({bins} AS double precision))"
        return f"(floor(({sql} - {low}) / NULLIF({width}, 0)) * {width} + {low})"

    def relation_of(self, owner: str) -> _Relation:
        """What an alias of this stage reads: the source, a join or a table reached by a foreign key."""
        if owner == self.alias:
            return self.source
        if owner in self.joins:
            return self.joins[owner][1]
        return self.implicit[owner][0]

    # -- expressions ----------------------------------------------------------------------------

    def expr(self, value: Any) -> str:
        """The SQL of a clause or literal."""
        if not is_clause(value):
            return literal(value)
        tag, options, args = value[0], options_of(value), args_of(value)
        handler = _HANDLERS.get(tag)
        if handler is not None:
            return handler(self, options, args)
        if tag in _FUNCTIONS:
            return f"{_FUNCTIONS[tag]}({', '.join(self.expr(a) for a in args)})"
        if tag in _CASTS:
            return f"CAST({self.expr(args[0])} AS {_CASTS[tag]})"
        if tag in _GET_UNITS:
            return f"CAST(extract({_GET_UNITS[tag]} FROM {self.temporal(args[0])}) AS integer)"
        if tag in _URL_PATTERNS:
            return f"substring({self.expr(args[0])} FROM {literal(_URL_PATTERNS[tag])})"
        if tag in _AGGREGATIONS:
            return self.aggregation(value)
        raise SqlGenError(f"`{tag.replace('-', '_')}` cannot be written as SQL here")

    def temporal(self, value: Any) -> str:
        """A date or time argument: a string is a timestamp literal."""
        return f"CAST({literal(value)} AS timestamp)" if isinstance(value, str) else self.expr(value)

    def is_date(self, value: Any) -> bool:
        return result_type(value, self.type_of) == "type/Date"

    def aggregation(self, clause: Any) -> str:
        """A summary, or an arithmetic of summaries (`sum(a) / count`: `expr` comes back here for each)."""
        if not is_clause(clause) or clause[0] not in _AGGREGATIONS:
            return self.expr(clause)
        return _AGGREGATIONS[clause[0]](self, args_of(clause))

    def cumulative(self, inner: str) -> str:
        """A running total over the groupings: partitioned by all but the last, ordered by the last."""
        breakouts = [self.expr(b) for b in self.stage.get("breakout") or []]
        if not breakouts:
            return inner
        partition = f"PARTITION BY {', '.join(breakouts[:-1])} " if len(breakouts) > 1 else ""
        return f"sum({inner}) OVER ({partition}ORDER BY {breakouts[-1]} ROWS UNBOUNDED PRECEDING)"


def _check_column(columns: list[Column] | None, name: Any, what: str) -> None:
    if columns is not None and name not in {c.name for c in columns}:
        raise SqlGenError(f"{what} has no column `{name}`")


def _truncate(sql: str, unit: str, base_type: str) -> str:
    if base_type in ("type/Time", "type/TimeWithLocalTZ"):
        return f"CAST(date_trunc({literal(unit)}, TIMESTAMP '2000-01-01' + {sql}) AS time)"
    if unit == "week":  # weeks start on Sunday, Metabase's default
        out = f"(date_trunc('week', {sql} + INTERVAL '1 day') - INTERVAL '1 day')"
    else:
        out = f"date_trunc({literal(unit)}, {sql})"
    return f"CAST({out} AS date)" if base_type == "type/Date" else out


def _interval(amount: str, unit: str) -> str:
    if unit not in _INTERVAL_UNITS:
        raise SqlGenError(f"unknown unit `{unit}`")
    if unit == "quarter":
        return f"({amount} * INTERVAL '3 month')"
    return f"({amount} * INTERVAL '1 {unit}')"


def _offset(value: Any) -> int:
    words = {"current": 0, "last": -1, "next": 1}
    if isinstance(value, str) and value in words:
        return words[value]
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise SqlGenError(f"`{value!r}` is not a number of periods")


# ---------------------------------------------------------------------------------------------
# Clause handlers: (stage, options, args) -> SQL.

Handler = Callable[[_StageSql, dict[str, Any], list[Any]], str]


def _field(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
    return s.field(["field", options, *args])


def _expression(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
    name = args[0]
    if name not in s.expressions:
        raise SqlGenError(f"no custom column `{name}` in this stage")
    if name in s.expanding:
        raise SqlGenError(f"custom column `{name}` refers to itself")
    s.expanding.append(name)
    try:
        sql = f"({s.expr(s.expressions[name])})"
    finally:
        s.expanding.pop()
    unit = options.get("temporal-unit")
    return s.bucket(sql, str(unit), s.type_of(["expression", {}, name])) if unit else sql


def _aggregation_ref(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
    aggregations = s.stage.get("aggregation") or []
    index = args[0]
    if not isinstance(index, int) or not 0 <= index < len(aggregations):
        raise SqlGenError(f"no summary {index} in this stage")
    return s.aggregation(aggregations[index])


def _logical(keyword: str) -> Handler:
    def write(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
        return "(" + f" {keyword} ".join(s.expr(a) for a in args) + ")"

    return write


def _not(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
    return f"(NOT {s.expr(args[0])})"


def _equals(negate: bool) -> Handler:
    def write(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
        left, values = s.expr(args[0]), args[1:]
        if len(values) == 1 and values[0] is None:
            return f"({left} IS {'NOT ' if negate else ''}NULL)"
        if len(values) == 1:
            return f"({left} {'<>' if negate else '='} {s.expr(values[0])})"
        listed = ", ".join(s.expr(v) for v in values)
        return f"({left} {'NOT IN' if negate else 'IN'} ({listed}))"

    return write


def _compare(operator: str) -> Handler:
    def write(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
        return f"({s.expr(args[0])} {operator} {s.expr(args[1])})"

    return write


def _between(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
    return f"({s.expr(args[0])} BETWEEN {s.expr(args[1])} AND {s.expr(args[2])})"


def _inside(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
    lat, lon, north, west, south, east = (s.expr(a) for a in args[:6])
    return f"({lat} BETWEEN {south} AND {north} AND {lon} BETWEEN {west} AND {east})"


def _null(negate: bool) -> Handler:
    def write(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
        return f"({s.expr(args[0])} IS {'NOT ' if negate else ''}NULL)"

    return write


def _empty(negate: bool) -> Handler:
    def write(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
        sql = s.expr(args[0])
        if not is_text(result_type(args[0], s.type_of)):
            return f"({sql} IS {'NOT ' if negate else ''}NULL)"
        if negate:
            return f"({sql} IS NOT NULL AND {sql} <> '')"
        return f"({sql} IS NULL OR {sql} = '')"

    return write


def _like(tag: str) -> Handler:
    before, after = _LIKE[tag]

    def write(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
        sensitive = options.get("case-sensitive", True) is not False
        column = s.expr(args[0]) if sensitive else f"lower({s.expr(args[0])})"
        tests = [f"{column} LIKE {_pattern(s, value, before, after, sensitive)}" for value in args[1:]]
        if not tests:
            raise SqlGenError(f"`{tag.replace('-', '_')}` needs a value to look for")
        joined = " OR ".join(tests)
        return f"(NOT ({joined}))" if tag == "does-not-contain" else f"({joined})"

    return write


def _pattern(s: _StageSql, value: Any, before: str, after: str, sensitive: bool) -> str:
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return literal(before + (escaped if sensitive else escaped.lower()) + after)
    sql = s.expr(value) if sensitive else f"lower({s.expr(value)})"
    return f"({literal(before)} || {sql} || {literal(after)})"


def _time_interval(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
    column, amount, unit = args[0], _offset(args[1]), str(args[2] if len(args) > 2 else "day")
    return _period(s.expr(column), amount, unit, include_current=bool(options.get("include-current")))


def _relative_time_interval(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
    column, amount, unit, shift, shift_unit = args[:5]
    shifted = f"({s.expr(column)} - {_interval(literal(_offset(shift)), str(shift_unit))})"
    return _period(shifted, _offset(amount), str(unit), include_current=False)


def _period(sql: str, amount: int, unit: str, *, include_current: bool) -> str:
    """`sql` within the `amount` periods before (negative) or after now, or the current one (0)."""
    if amount < 0:
        first, last = amount, 0 if include_current else -1
    elif amount > 0:
        first, last = 0 if include_current else 1, amount
    else:
        first, last = 0, 0
    start = f"date_trunc({literal(unit)}, now() + {_interval(str(first), unit)})"
    end = f"date_trunc({literal(unit)}, now() + {_interval(str(last + 1), unit)})"
    return f"({sql} >= {start} AND {sql} < {end})"


def _during(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
    column, value, unit = s.expr(args[0]), s.temporal(args[1]), str(args[2])
    start = f"date_trunc({literal(unit)}, {value})"
    return f"({column} >= {start} AND {column} < {start} + {_interval('1', unit)})"


def _arithmetic(operator: str) -> Handler:
    def write(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
        if operator == "-" and len(args) == 1:
            return f"(- {s.expr(args[0])})"
        return "(" + f" {operator} ".join(s.expr(a) for a in args) + ")"

    return write


def _divide(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
    out = f"CAST({s.expr(args[0])} AS double precision)"
    for divisor in args[1:]:
        out = f"({out} / NULLIF({s.expr(divisor)}, 0))"
    return out


def _case(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
    pairs = args[0] if args and isinstance(args[0], list) else []
    if not pairs:
        raise SqlGenError("`case` needs a condition and a value")
    whens = " ".join(f"WHEN {s.expr(cond)} THEN {s.expr(value)}" for cond, value in pairs)
    default = args[1] if len(args) > 1 else options.get("default")
    fallback = f" ELSE {s.expr(default)}" if default is not None else ""
    return f"(CASE {whens}{fallback} END)"


def _regex(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
    return f"substring({s.expr(args[0])} FROM {s.expr(args[1])})"


def _date_shift(sign: str) -> Handler:
    def write(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
        value, amount, unit = args[0], args[1], str(args[2])
        sql = f"({s.temporal(value)} {sign} {_interval(s.expr(amount), unit)})"
        return f"CAST({sql} AS date)" if s.is_date(value) else sql

    return write


def _datetime_diff(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
    start, end, unit = s.temporal(args[0]), s.temporal(args[1]), str(args[2])
    age = f"age(date_trunc('day', {end}), date_trunc('day', {start}))"
    seconds = f"CAST(trunc(extract(epoch FROM {end}) - extract(epoch FROM {start})) AS integer)"
    days = f"(CAST({end} AS date) - CAST({start} AS date))"
    months = f"CAST(extract(year FROM {age}) * 12 + extract(month FROM {age}) AS integer)"
    by_unit = {
        "year": f"CAST(extract(year FROM {age}) AS integer)",
        "quarter": f"({months} / 3)",
        "month": months,
        "week": f"({days} / 7)",
        "day": days,
        "hour": f"({seconds} / 3600)",
        "minute": f"({seconds} / 60)",
        "second": seconds,
    }
    if unit not in by_unit:
        raise SqlGenError(f"`datetime_diff` has no unit `{unit}`")
    return by_unit[unit]


def _temporal_extract(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
    unit = str(args[1])
    if unit == "day-of-week":  # Sunday is 1
        return f"(CAST(extract(dow FROM {s.temporal(args[0])}) AS integer) + 1)"
    if unit == "day-of-week-iso":
        return f"CAST(extract(isodow FROM {s.temporal(args[0])}) AS integer)"
    if unit not in _EXTRACT_FIELDS:
        raise SqlGenError(f"`temporal_extract` has no unit `{unit}`")
    return f"CAST(extract({_EXTRACT_FIELDS[unit]} FROM {s.temporal(args[0])}) AS integer)"


def _day_of_week(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
    return _temporal_extract(s, options, [args[0], "day-of-week"])


def _convert_timezone(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
    sql = s.temporal(args[0])
    if len(args) > 2:
        sql = f"timezone({s.expr(args[2])}, {sql})"
    return f"timezone({s.expr(args[1])}, {sql})"


def _name_of(kind: str) -> Handler:
    def write(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
        number = f"CAST({s.expr(args[0])} AS integer)"
        if kind == "month":
            return f"to_char(make_date(2000, {number}, 1), 'FMMonth')"
        if kind == "day":  # 1 is Sunday: 1999-12-25 was a Saturday
            return f"to_char(DATE '1999-12-25' + {number}, 'FMDay')"
        return f"('Q' || CAST({number} AS text))"

    return write


def _relative_datetime(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
    amount = _offset(args[0])
    unit = str(args[1]) if len(args) > 1 else "day"
    return "now()" if amount == 0 else f"(now() + {_interval(str(amount), unit)})"


def _absolute_datetime(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
    unit = str(args[1]) if len(args) > 1 else "default"
    return f"CAST({literal(args[0])} AS {'date' if unit == 'day' else 'timestamp'})"


def _interval_clause(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
    return _interval(s.expr(args[0]), str(args[1]))


def _value(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
    return literal(args[0] if args else None)


def _today(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
    return "current_date"


def _unsupported(what: str) -> Handler:
    def write(s: _StageSql, options: dict[str, Any], args: list[Any]) -> str:
        raise SqlGenError(what)

    return write


_HANDLERS: dict[str, Handler] = {
    "field": _field,
    "expression": _expression,
    "aggregation": _aggregation_ref,
    "value": _value,
    "and": _logical("AND"),
    "or": _logical("OR"),
    "not": _not,
    "=": _equals(negate=False),
    "!=": _equals(negate=True),
    **{tag: _compare(operator) for tag, operator in _COMPARISONS.items()},
    "between": _between,
    "inside": _inside,
    "is-null": _null(negate=False),
    "not-null": _null(negate=True),
    "is-empty": _empty(negate=False),
    "not-empty": _empty(negate=True),
    **{tag: _like(tag) for tag in _LIKE},
    "time-interval": _time_interval,
    "relative-time-interval": _relative_time_interval,
    "during": _during,
    "+": _arithmetic("+"),
    "-": _arithmetic("-"),
    "*": _arithmetic("*"),
    "/": _divide,
    "case": _case,
    "if": _case,
    "regex-match-first": _regex,
    "datetime-add": _date_shift("+"),
    "datetime-subtract": _date_shift("-"),
    "datetime-diff": _datetime_diff,
    "temporal-extract": _temporal_extract,
    "get-day-of-week": _day_of_week,
    "convert-timezone": _convert_timezone,
    "month-name": _name_of("month"),
    "day-name": _name_of("day"),
    "quarter-name": _name_of("quarter"),
    "relative-datetime": _relative_datetime,
    "absolute-datetime": _absolute_datetime,
    "interval": _interval_clause,
    "today": _today,
    "segment": _unsupported("a segment cannot be checked: write its conditions under `filter:`"),
    "offset": _unsupported("`offset` (a value from another row) cannot be written as SQL here"),
}

# ---------------------------------------------------------------------------------------------
# Summaries: (stage, args) -> SQL.

Summary = Callable[[_StageSql, list[Any]], str]


def _count(s: _StageSql, args: list[Any]) -> str:
    return f"count({s.expr(args[0])})" if args else "count(*)"


def _simple(function: str) -> Summary:
    def write(s: _StageSql, args: list[Any]) -> str:
        return f"{function}({s.expr(args[0])})"

    return write


def _percentile(s: _StageSql, args: list[Any]) -> str:
    fraction = s.expr(args[1]) if len(args) > 1 else "0.5"
    return f"percentile_cont({fraction}) WITHIN GROUP (ORDER BY {s.expr(args[0])})"


def _count_where(s: _StageSql, args: list[Any]) -> str:
    return f"sum(CASE WHEN {s.expr(args[0])} THEN 1 ELSE 0 END)"


def _sum_where(s: _StageSql, args: list[Any]) -> str:
    return f"sum(CASE WHEN {s.expr(args[1])} THEN {s.expr(args[0])} ELSE 0 END)"


def _distinct_where(s: _StageSql, args: list[Any]) -> str:
    return f"count(DISTINCT CASE WHEN {s.expr(args[1])} THEN {s.expr(args[0])} END)"


def _share(s: _StageSql, args: list[Any]) -> str:
    return f"(CAST({_count_where(s, args)} AS double precision) / NULLIF(count(*), 0))"


def _cum_count(s: _StageSql, args: list[Any]) -> str:
    return s.cumulative(_count(s, args))


def _cum_sum(s: _StageSql, args: list[Any]) -> str:
    return s.cumulative(f"sum({s.expr(args[0])})")


def _metric(s: _StageSql, args: list[Any]) -> str:
    raise SqlGenError("a saved metric cannot be checked: summarize its expression instead")


_AGGREGATIONS: dict[str, Summary] = {
    "count": _count,
    "cum-count": _cum_count,
    "distinct": lambda s, args: f"count(DISTINCT {s.expr(args[0])})",
    "sum": _simple("sum"),
    "cum-sum": _cum_sum,
    "avg": lambda s, args: f"CAST(avg({s.expr(args[0])}) AS double precision)",
    "min": _simple("min"),
    "max": _simple("max"),
    "median": _percentile,
    "percentile": _percentile,
    "stddev": _simple("stddev_pop"),
    "var": _simple("var_pop"),
    "share": _share,
    "count-where": _count_where,
    "sum-where": _sum_where,
    "distinct-where": _distinct_where,
    "metric": _metric,
}
