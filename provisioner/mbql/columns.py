"""Result columns as Metabase names and types them, and the schema a query is checked against.

Names follow Metabase's query processor: a field keeps its name (a joined one becomes `Alias__name`), a
custom column its expression name, a summary `count`, `sum`, `avg` ... with repeats numbered `sum_2`,
`sum_3` (or the name its `name` option gives). Types are the base types Metabase reports; they only need
to be plausible where the tool uses them (choosing a filter widget, checking a summary fits its column).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

NUMERIC_TYPES = frozenset({"type/Integer", "type/BigInteger", "type/Float", "type/Decimal", "type/Number"})
TEMPORAL_TYPES = frozenset(
    {"type/Date", "type/DateTime", "type/DateTimeWithLocalTZ", "type/DateTimeWithTZ", "type/Temporal"}
)
TEXT_TYPES = frozenset({"type/Text", "type/PostgresEnum", "type/UUID"})

# Default column names of aggregations (lib/aggregation.cljc `column-name-method`); `sum-where` is
# `sum_where_<column>` and an arithmetic of summaries `expression`.
AGGREGATION_NAMES = {
    "count": "count",
    "cum-count": "cum_count",
    "distinct": "count",
    "sum": "sum",
    "cum-sum": "sum",
    "avg": "avg",
    "min": "min",
    "max": "max",
    "median": "median",
    "percentile": "percentile",
    "stddev": "stddev",
    "var": "var",
    "share": "share",
    "count-where": "count-where",
    "sum-where": "sum_where",
    "distinct-where": "distinct_where",
    "metric": "metric",
}
AGGREGATIONS = frozenset(AGGREGATION_NAMES)
# Summaries that need a number to work on (their first argument).
NUMERIC_AGGREGATIONS = frozenset(
    {"sum", "cum-sum", "avg", "median", "percentile", "stddev", "var", "sum-where"}
)
EXTRACTION_UNITS = frozenset(
    {
        "minute-of-hour",
        "hour-of-day",
        "day-of-week",
        "day-of-month",
        "day-of-year",
        "week-of-year",
        "month-of-year",
        "quarter-of-year",
    }
)
_STRING_RESULTS = frozenset(
    {"concat", "substring", "trim", "ltrim", "rtrim", "upper", "lower", "replace", "regex-match-first",
     "month-name", "quarter-name", "day-name", "text", "split-part", "host", "domain", "subdomain", "path"}
)  # fmt: skip
_BOOLEAN_RESULTS = frozenset(
    {"and", "or", "not", "=", "!=", "<", "<=", ">", ">=", "between", "is-null", "not-null", "is-empty",
     "not-empty", "contains", "does-not-contain", "starts-with", "ends-with", "time-interval", "inside",
     "relative-time-interval", "during"}
)  # fmt: skip
_INTEGER_RESULTS = frozenset(
    {"length", "get-year", "get-quarter", "get-month", "get-week", "get-day", "get-day-of-week",
     "get-hour", "get-minute", "get-second", "datetime-diff", "temporal-extract", "integer"}
)  # fmt: skip
_TEMPORAL_RESULTS = frozenset({"now", "today", "datetime-add", "datetime-subtract", "date", "datetime",
                               "convert-timezone"})  # fmt: skip


@dataclass(frozen=True)
class Column:
    """One column a table, question or query stage gives."""

    name: str
    base_type: str = "type/*"
    display_name: str | None = None


class Schema(Protocol):
    """The tables a query may read: what plan knows from Metabase, and validate from PostgreSQL."""

    def columns(self, table: str) -> list[Column] | None:
        """The columns of `table` (`name` or `schema.name`), or None when there is no such table."""
        ...

    def foreign_key(self, table: str, column: str) -> tuple[str, str] | None:
        """The (table, column) that `table.column` points to, or None."""
        ...

    def canonical_table(self, table: str) -> str | None:
        """How the normal form names `table`: bare, or `schema.name` when the bare name is ambiguous."""
        ...


def is_numeric(base_type: str) -> bool:
    return base_type in NUMERIC_TYPES


def is_temporal(base_type: str) -> bool:
    return base_type in TEMPORAL_TYPES


def is_text(base_type: str) -> bool:
    return base_type in TEXT_TYPES


def result_type(clause: Any, type_of: Any) -> str:
    """The base type of an expression or summary; `type_of(ref)` gives the type of a column reference."""
    if isinstance(clause, bool):
        return "type/Boolean"
    if isinstance(clause, int):
        return "type/Integer"
    if isinstance(clause, float):
        return "type/Float"
    if isinstance(clause, str):
        return "type/Text"
    if not isinstance(clause, list) or not clause:
        return "type/*"
    tag = clause[0]
    args = clause[2:] if len(clause) > 1 and isinstance(clause[1], dict) else clause[1:]
    if tag in ("field", "expression", "aggregation", "ref"):
        found: str = type_of(clause)
        return found
    if tag in ("count", "cum-count", "distinct", "count-where", "distinct-where"):
        return "type/BigInteger"
    if tag in ("avg", "median", "percentile", "stddev", "var", "share", "/"):
        return "type/Float"
    if tag in ("sum", "cum-sum", "min", "max", "sum-where", "+", "-", "*", "abs", "round", "ceil", "floor"):
        inner = result_type(args[0], type_of) if args else "type/*"
        return inner if inner != "type/*" else "type/Float"
    if tag in _STRING_RESULTS:
        return "type/Text"
    if tag in _BOOLEAN_RESULTS:
        return "type/Boolean"
    if tag in _INTEGER_RESULTS:
        return "type/Integer"
    if tag in _TEMPORAL_RESULTS:
        return "type/DateTime"
    if tag in ("case", "if") and args and isinstance(args[0], list) and args[0]:
        return result_type(args[0][0][1], type_of)
    if tag == "coalesce" and args:
        return result_type(args[0], type_of)
    return "type/*"


def unique_names(names: list[str]) -> list[str]:
    """Metabase's deduplication of result column names: the second `sum` is `sum_2`."""
    seen: dict[str, int] = {}
    out: list[str] = []
    for name in names:
        count = seen.get(name, 0) + 1
        seen[name] = count
        candidate = name if count == 1 else f"{name}_{count}"
        while candidate in seen and candidate != name:
            count += 1
            candidate = f"{name}_{count}"
        seen.setdefault(candidate, 1)
        out.append(candidate)
    return out


def aggregation_name(clause: Any) -> str:
    """The default column name of a summary (before deduplication)."""
    if isinstance(clause, list) and clause:
        options = clause[1] if len(clause) > 1 and isinstance(clause[1], dict) else {}
        if isinstance(options.get("name"), str):
            return str(options["name"])
        args = clause[2:] if len(clause) > 1 and isinstance(clause[1], dict) else clause[1:]
        if (
            clause[0] == "sum-where"
            and args
            and isinstance(args[0], list)
            and args[0][:1] in (["field"], ["expression"])
        ):
            leaf = args[0][-1]
            return "sum_where_" + str(leaf[-1] if isinstance(leaf, list) else leaf)
        if clause[0] in ("case", "if"):
            return "case"
        return AGGREGATION_NAMES.get(clause[0], "expression")
    return "expression"


def field_column_name(ref: list[Any]) -> str:
    """The result column name a field ref gives: its column name, `Alias__name` when joined."""
    options = ref[1] if isinstance(ref[1], dict) else {}
    leaf = ref[-1]
    name = leaf[-1] if isinstance(leaf, list) else str(leaf)
    alias = options.get("join-alias")
    return f"{alias}__{name}" if isinstance(alias, str) else name


class _StageTypes:
    """Types of the references inside one stage."""

    def __init__(
        self,
        stage: dict[str, Any],
        source: dict[str, Column],
        joins: dict[str, dict[str, Column]],
        table_columns: Any,
    ) -> None:
        self.stage, self.source, self.joins, self.table_columns = stage, source, joins, table_columns

    def __call__(self, ref: list[Any]) -> str:
        tag = ref[0]
        options = ref[1] if len(ref) > 1 and isinstance(ref[1], dict) else {}
        if tag == "expression":
            expression = (self.stage.get("expressions") or {}).get(ref[-1])
            return result_type(expression, self) if expression is not None else "type/*"
        if tag == "aggregation":
            aggregations = self.stage.get("aggregation") or []
            index = ref[-1]
            return result_type(aggregations[index], self) if 0 <= index < len(aggregations) else "type/*"
        if tag != "field":
            return "type/*"
        leaf = ref[-1]
        alias = options.get("join-alias")
        unit = options.get("temporal-unit")
        if unit in EXTRACTION_UNITS:
            return "type/Integer"
        name = leaf[-1] if isinstance(leaf, list) else str(leaf)
        if isinstance(alias, str):
            found = self.joins.get(alias, {}).get(name)
        elif isinstance(leaf, list) and not self.source.get(name):
            table = ".".join(leaf[:-1])
            found = {c.name: c for c in self.table_columns(table) or []}.get(name)
        else:
            found = self.source.get(name)
        return found.base_type if found is not None else "type/*"


def stage_columns(
    stage: dict[str, Any],
    source: list[Column],
    joins: dict[str, list[Column]],
    table_columns: Any,
) -> list[Column]:
    """The result columns of one normal-form stage, given its source's and its joins' columns."""
    by_name = {c.name: c for c in source}
    joined = {alias: {c.name: c for c in cols} for alias, cols in joins.items()}
    types = _StageTypes(stage, by_name, joined, table_columns)
    names: list[str] = []
    kinds: list[str] = []
    if stage.get("aggregation") or stage.get("breakout"):
        for ref in stage.get("breakout") or []:
            names.append(field_column_name(ref) if ref[0] == "field" else str(ref[-1]))
            kinds.append(types(ref))
        for clause in stage.get("aggregation") or []:
            names.append(aggregation_name(clause))
            kinds.append(result_type(clause, types))
    else:
        fields = stage.get("fields")
        if isinstance(fields, list) and fields:
            for ref in fields:
                names.append(field_column_name(ref) if ref[0] == "field" else str(ref[-1]))
                kinds.append(types(ref))
        else:
            names += [c.name for c in source]
            kinds += [c.base_type for c in source]
        for name, clause in (stage.get("expressions") or {}).items():
            if not (isinstance(fields, list) and fields and ["expression", {}, name] in fields):
                names.append(name)
                kinds.append(result_type(clause, types))
        for join in stage.get("joins") or []:
            alias = join.get("alias")
            chosen = join.get("fields")
            if chosen == "all":
                for column in joins.get(alias, []):
                    names.append(f"{alias}__{column.name}")
                    kinds.append(column.base_type)
            elif isinstance(chosen, list):
                for ref in chosen:
                    names.append(field_column_name(ref))
                    kinds.append(types(ref))
    return [Column(n, t) for n, t in zip(unique_names(names), kinds, strict=True)]
