"""The normal form of a query-builder query: what plan compares, export reads and apply writes from.

Metabase 57+ returns MBQL 5 (`stages`, an options map with a fresh `lib/uuid` second in every clause,
`base-type`/`effective-type` added to field refs, aggregation refs by uuid, `filters` as a list,
`expressions` as a list named by `lib/expression-name`, `source-card`); older servers and Metabase's own
`legacy_query` give the legacy MBQL 4 form. Both become one shape here:

    {"stages": [{"source-table": 12, "joins": [...], "expressions": {"name": clause},
                 "filters": [clause, ...], "aggregation": [...], "breakout": [...], "fields": [...],
                 "order-by": [["desc", {}, ref]], "limit": 10}, ...]}

Every clause is `[tag, options, *args]` with `options` a dict (MBQL 5's order), minus everything a server
adds or regenerates: `lib/*` keys, `ident`, `base-type`, `effective-type`, a `default` temporal unit.
Aggregation refs are by index, top-level `and`s are split into the filter list, nested `and`/`or` are
flattened, `in`/`not-in` are `=`/`!=`. Joins keep `alias`, `strategy` (default `left-join`), `fields`
(default `none`), `conditions` (a list) and their own `stages`.

The leaves are ids as Metabase gives them, or names after translation (`translate.py`): a table is an int
id or a name (`"v_orders"`, `"schema.v_orders"`); a card an int id or a key; a field ref's last element an
int id, a column name of the previous stage (a str), or a named table field (`["v_orders", "amount"]`).
"""

from __future__ import annotations

import copy
import marshal
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

NormalQuery = dict[str, Any]
Stage = dict[str, Any]

STAGE_KEYS = ("joins", "expressions", "filters", "aggregation", "breakout", "fields", "order-by", "limit")
# Option keys a server adds, regenerates or derives: never part of what a question means.
_NOISE = frozenset({"ident", "base-type", "effective-type", "base_type", "effective_type", "database_type"})
# Legacy MBQL clauses whose options map is the last argument (legacy_mbql/schema.cljc `options-style`).
_OPTIONS_LAST = frozenset(
    {"field", "expression", "aggregation", "datetime", "time-interval", "aggregation-options"}
)
_STRING_FILTERS = frozenset({"contains", "does-not-contain", "starts-with", "ends-with"})
_ALIASES = {"in": "=", "not-in": "!="}


class NormalizeError(ValueError):
    """A query this tool cannot read (not an MBQL query, or malformed)."""


def clean_options(options: Any) -> dict[str, Any]:
    """An options map without what servers add: `lib/*` and `metabase.lib.*` keys, ident, types."""
    if not isinstance(options, dict):
        return {}
    out = {}
    for key, value in options.items():
        if not isinstance(key, str) or key in _NOISE or key.startswith(("lib/", "lib.", "metabase.lib")):
            continue
        if key == "temporal-unit" and value == "default":
            continue
        out[key] = value
    return out


def is_clause(value: Any) -> bool:
    """A clause `[tag, options, *args]` (a list starting with a string tag)."""
    return isinstance(value, list) and bool(value) and isinstance(value[0], str)


def options_of(clause: list[Any]) -> dict[str, Any]:
    return clause[1] if len(clause) > 1 and isinstance(clause[1], dict) else {}


def args_of(clause: list[Any]) -> list[Any]:
    return clause[2:] if len(clause) > 1 and isinstance(clause[1], dict) else clause[1:]


# ---------------------------------------------------------------------------------------------
# MBQL 5 -> normal.


def _from_mbql5_clause(value: Any, aggregation_uuids: dict[str, int]) -> Any:
    if not is_clause(value):
        return value
    tag = _ALIASES.get(value[0], value[0])
    if len(value) < 2 or not isinstance(value[1], dict):
        raise NormalizeError(f"MBQL 5 clause `{value[0]}` has no options map")
    options = clean_options(value[1])
    args = value[2:]
    if tag == "aggregation" and args and isinstance(args[0], str):
        if args[0] not in aggregation_uuids:
            raise NormalizeError(f"aggregation ref to an unknown aggregation `{args[0]}`")
        return ["aggregation", options, aggregation_uuids[args[0]]]
    if tag in ("case", "if") and args and isinstance(args[0], list):
        pairs = [[_from_mbql5_clause(p, aggregation_uuids) for p in pair] for pair in args[0]]
        rest = [_from_mbql5_clause(a, aggregation_uuids) for a in args[1:]]
        return [tag, options, pairs, *rest]
    return _flatten([tag, options, *(_from_mbql5_clause(a, aggregation_uuids) for a in args)])


def _from_mbql5_stage(stage: dict[str, Any]) -> Stage:
    kind = stage.get("lib/type")
    if kind == "mbql.stage/native":
        raise NormalizeError("a native stage inside a query-builder query")
    aggregations = stage.get("aggregation") or []
    uuids = {
        str(clause[1].get("lib/uuid")): i
        for i, clause in enumerate(aggregations)
        if is_clause(clause) and len(clause) > 1 and isinstance(clause[1], dict)
    }
    out: Stage = {}
    if stage.get("source-table") is not None:
        out["source-table"] = stage["source-table"]
    if stage.get("source-card") is not None:
        out["source-card"] = stage["source-card"]

    def convert(value: Any) -> Any:
        return _from_mbql5_clause(value, uuids)

    if stage.get("joins"):
        out["joins"] = [_from_mbql5_join(j) for j in stage["joins"]]
    if stage.get("expressions"):
        expressions: dict[str, Any] = {}
        for expression in stage["expressions"]:
            name = expression[1].get("lib/expression-name") if is_clause(expression) else None
            if not isinstance(name, str):
                raise NormalizeError("an expression without `lib/expression-name`")
            expressions[name] = convert(expression)
        out["expressions"] = expressions
    if stage.get("filters"):
        out["filters"] = _split_and([convert(f) for f in stage["filters"]])
    for key in ("aggregation", "breakout"):
        if stage.get(key):
            out[key] = [convert(c) for c in stage[key]]
    fields = stage.get("fields")
    if isinstance(fields, list) and fields:
        out["fields"] = [convert(f) for f in fields]
    if stage.get("order-by"):
        out["order-by"] = [convert(o) for o in stage["order-by"]]
    if stage.get("limit") is not None:
        out["limit"] = stage["limit"]
    return out


def _from_mbql5_join(join: dict[str, Any]) -> dict[str, Any]:
    stages = [_from_mbql5_stage(s) for s in join.get("stages") or []]
    if not stages:
        raise NormalizeError("a join without stages")
    fields = join.get("fields", "none")
    out: dict[str, Any] = {
        "alias": join.get("alias"),
        "strategy": join.get("strategy") or "left-join",
        "conditions": _split_and([_from_mbql5_clause(c, {}) for c in join.get("conditions") or []]),
        "fields": [_from_mbql5_clause(f, {}) for f in fields] if isinstance(fields, list) else fields,
        "stages": stages,
    }
    return out


# ---------------------------------------------------------------------------------------------
# Legacy MBQL 4 -> normal.


def _from_legacy_clause(value: Any) -> Any:
    if not is_clause(value):
        return value
    tag = _ALIASES.get(value[0], value[0])
    args = list(value[1:])
    options: dict[str, Any] = {}
    if tag == "aggregation-options" and len(args) == 2:
        inner = _from_legacy_clause(args[0])
        return [inner[0], {**inner[1], **clean_options(args[1])}, *inner[2:]]
    if tag in ("case", "if"):
        if len(args) == 2 and isinstance(args[1], dict):
            options = dict(args[1])
            args = args[:1]
        default = options.pop("default", None)
        pairs = [[_from_legacy_clause(p) for p in pair] for pair in (args[0] if args else [])]
        rest = [] if default is None else [_from_legacy_clause(default)]
        return [tag, clean_options(options), pairs, *rest]
    if tag == "value":
        return ["value", {}, args[0] if args else None]
    if tag == "offset" and args and isinstance(args[0], dict):
        return ["offset", clean_options(args[0]), *(_from_legacy_clause(a) for a in args[1:])]
    if tag in _STRING_FILTERS and args and isinstance(args[0], dict):
        options, args = args[0], args[1:]  # the multi-argument form is MBQL 5-like
    elif (
        (tag in _OPTIONS_LAST or tag in _STRING_FILTERS)
        and args
        and (args[-1] is None or isinstance(args[-1], dict))
    ):
        options, args = args[-1] or {}, args[:-1]
    return _flatten([tag, clean_options(options), *(_from_legacy_clause(a) for a in args)])


def _is_options(value: Any) -> bool:
    return value is None or isinstance(value, dict)


def _fields(join: dict[str, Any], convert: Callable[[Any], Any], default: Any) -> Any:
    fields = join.get("fields", default)
    return [convert(f) for f in fields] if isinstance(fields, list) else fields


def _from_legacy_stage(inner: dict[str, Any]) -> list[Stage]:
    """The stages of a legacy inner query: a `source-query` chain becomes the stages before it."""
    stages: list[Stage] = []
    if isinstance(inner.get("source-query"), dict):
        source = inner["source-query"]
        if "native" in source:
            raise NormalizeError("a native source query inside a query-builder query")
        stages = _from_legacy_stage(source)
    stage: Stage = {}
    source_table = inner.get("source-table")
    if isinstance(source_table, str) and source_table.startswith("card__"):
        stage["source-card"] = int(source_table.removeprefix("card__"))
    elif source_table is not None:
        stage["source-table"] = source_table
    if inner.get("joins"):
        stage["joins"] = [_from_legacy_join(j) for j in inner["joins"]]
    if inner.get("expressions"):
        stage["expressions"] = {
            name: _from_legacy_clause(clause) for name, clause in inner["expressions"].items()
        }
    if inner.get("filter"):
        stage["filters"] = _split_and([_from_legacy_clause(inner["filter"])])
    for key in ("aggregation", "breakout"):
        if inner.get(key):
            stage[key] = [_from_legacy_clause(c) for c in inner[key]]
    if isinstance(inner.get("fields"), list) and inner["fields"]:
        stage["fields"] = [_from_legacy_clause(f) for f in inner["fields"]]
    if inner.get("order-by"):
        stage["order-by"] = [_from_legacy_clause(o) for o in inner["order-by"]]
    if inner.get("limit") is not None:
        stage["limit"] = inner["limit"]
    return [*stages, stage]


def _from_legacy_join(join: dict[str, Any]) -> dict[str, Any]:
    fields = join.get("fields", "none")
    condition = join.get("condition")
    return {
        "alias": join.get("alias"),
        "strategy": join.get("strategy") or "left-join",
        "conditions": _split_and([_from_legacy_clause(condition)]) if condition else [],
        "fields": [_from_legacy_clause(f) for f in fields] if isinstance(fields, list) else fields,
        "stages": _from_legacy_stage(
            {k: v for k, v in join.items() if k in ("source-table", "source-query")}
        ),
    }


# ---------------------------------------------------------------------------------------------
# Shared rules.


def _flatten(clause: list[Any]) -> list[Any]:
    """`and` in `and` (and `or` in `or`) as one clause; `not` of `not` dropped: the same meaning."""
    tag, options, args = clause[0], clause[1], clause[2:]
    if tag in ("and", "or") and not options:
        flat: list[Any] = []
        for arg in args:
            if is_clause(arg) and arg[0] == tag and not options_of(arg):
                flat += args_of(arg)
            else:
                flat.append(arg)
        if len(flat) == 1 and is_clause(flat[0]):
            return list(flat[0])
        return [tag, options, *flat]
    if tag == "not" and len(args) == 1 and is_clause(args[0]) and args[0][0] == "not":
        inner = args_of(args[0])
        if len(inner) == 1 and is_clause(inner[0]):
            return list(inner[0])
    return clause


def _split_and(filters: list[Any]) -> list[Any]:
    """Top-level `and`s as separate filters: MBQL 5 keeps a list where legacy kept one `and`."""
    out: list[Any] = []
    for f in filters:
        if is_clause(f) and f[0] == "and" and not options_of(f):
            out += _split_and(list(args_of(f)))
        else:
            out.append(f)
    return out


def from_wire(dataset_query: dict[str, Any]) -> NormalQuery | None:
    """The normal form of a `dataset_query` (MBQL 5 or legacy); None for a native query.

    Raises NormalizeError for a query it cannot read.
    """
    if not isinstance(dataset_query, dict):
        raise NormalizeError("dataset_query is not a map")
    stages = dataset_query.get("stages")
    if isinstance(stages, list):
        if stages and isinstance(stages[-1], dict) and stages[-1].get("lib/type") == "mbql.stage/native":
            return None
        if not stages or not all(isinstance(s, dict) for s in stages):
            raise NormalizeError("an MBQL 5 query without stages")
        return {"stages": [_from_mbql5_stage(s) for s in stages]}
    if dataset_query.get("type") == "native":
        return None
    inner = dataset_query.get("query")
    if dataset_query.get("type") != "query" or not isinstance(inner, dict):
        raise NormalizeError("neither an MBQL 5 nor a legacy query")
    return {"stages": _from_legacy_stage(inner)}


def copy_plain(value: T) -> T:
    """A deep copy of plain data (what JSON and YAML decode to), made by marshal in C: about four times
    faster than `copy.deepcopy`, which planning 100 dashboards spent a third of its time in. What marshal
    does not know (a date YAML read, a subclass of dict or str) is deep-copied as before."""
    try:
        copied: T = marshal.loads(marshal.dumps(value))  # type: ignore[arg-type]  # ValueError if not
    except ValueError:
        return copy.deepcopy(value)
    return copied


def canonical(query: NormalQuery) -> NormalQuery:
    """The same query with the shared rules applied (for a query built by hand or from the YAML)."""

    def walk(value: Any) -> Any:
        if is_clause(value):
            options = (
                clean_options(options_of(value)) if len(value) > 1 and isinstance(value[1], dict) else {}
            )
            tag = _ALIASES.get(value[0], value[0])
            args = args_of(value)
            if tag == "field":  # its last element may be a named table field, a list that is no clause
                return ["field", options, *args]
            if tag in ("case", "if") and args and isinstance(args[0], list):
                return [tag, options, [[walk(p) for p in pair] for pair in args[0]], *map(walk, args[1:])]
            return _flatten([tag, options, *map(walk, args)])
        return value

    def stage(s: Stage) -> Stage:
        out = copy_plain({k: v for k, v in s.items() if v not in (None, [], {})})
        for key in ("aggregation", "breakout", "fields", "order-by"):
            if key in out:
                out[key] = [walk(c) for c in out[key]]
        if "filters" in out:
            out["filters"] = _split_and([walk(c) for c in out["filters"]])
        if "expressions" in out:
            out["expressions"] = {k: walk(v) for k, v in out["expressions"].items()}
        if "joins" in out:
            out["joins"] = [
                {
                    **j,
                    "strategy": j.get("strategy") or "left-join",
                    "fields": [walk(f) for f in j["fields"]]
                    if isinstance(j.get("fields"), list)
                    else j.get("fields", "none"),
                    "conditions": _split_and([walk(c) for c in j.get("conditions") or []]),
                    "stages": [stage(x) for x in j.get("stages") or []],
                }
                for j in out["joins"]
            ]
        return out

    return {"stages": [stage(s) for s in query.get("stages") or []]}


def map_leaves(query: NormalQuery, visit: Callable[[str, Any, Stage], Any]) -> NormalQuery:
    """A copy of `query` where each leaf reference is replaced by `visit(kind, value, stage)`.

    Kinds: "table" (a `source-table`), "card" (a `source-card`), "field" (a field ref's last element;
    `visit` gets the whole ref and returns the new ref), in every stage and join.
    """

    def clause(value: Any, stage: Stage) -> Any:
        if not is_clause(value):
            return value
        if value[0] == "field":
            return visit("field", value, stage)
        args = args_of(value)
        if value[0] in ("case", "if") and args and isinstance(args[0], list):
            return [value[0], options_of(value), [[clause(p, stage) for p in pair] for pair in args[0]],
                    *(clause(a, stage) for a in args[1:])]  # fmt: skip
        return [value[0], options_of(value), *(clause(a, stage) for a in args)]

    def stage_of(s: Stage) -> Stage:
        out: Stage = {}
        for key, value in s.items():
            if key == "source-table":
                out[key] = visit("table", value, s)
            elif key == "source-card":
                out[key] = visit("card", value, s)
            elif key == "joins":
                out[key] = [
                    {
                        **j,
                        "stages": [stage_of(x) for x in j.get("stages") or []],
                        "conditions": [clause(c, s) for c in j.get("conditions") or []],
                        "fields": [clause(f, s) for f in j["fields"]]
                        if isinstance(j.get("fields"), list)
                        else j.get("fields"),
                    }
                    for j in value
                ]
            elif key == "expressions":
                out[key] = {name: clause(c, s) for name, c in value.items()}
            elif isinstance(value, list):
                out[key] = [clause(c, s) for c in value]
            else:
                out[key] = value
        return out

    return {**query, "stages": [stage_of(s) for s in query.get("stages") or []]}


def normal_ref(ref: Any) -> Any:
    """A single reference (a dashboard filter's target) in normal form, from either wire form."""
    if not is_clause(ref):
        return ref
    if len(ref) > 1 and isinstance(ref[1], dict):
        return _from_mbql5_clause(ref, {})
    return _from_legacy_clause(ref)
