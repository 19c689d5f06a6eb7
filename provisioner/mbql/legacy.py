"""The normal form (with ids) as legacy MBQL 4: the form the tool writes.

Why legacy: Metabase 61-65 accept it on every card write and convert it to MBQL 5 themselves
(`lib-be/normalize-query` -> `lib/query` -> `lib.convert/->pMBQL`), filling in whatever the MBQL 5 schema
of that exact version requires (`lib/uuid` on every clause, types on refs, aggregation refs by uuid).
Writing MBQL 5 directly would tie the tool to one version's schema, which changed across these releases.
The conversion can drop a clause it finds invalid ("clean"), so apply reads every card back and reports any
difference.

Each clause is written in its legacy options style (`legacy_mbql/schema.cljc` `options-style`): a field
ref `["field", id, options-or-null]`, an expression or aggregation ref with options only when there are
some, string filters `[tag, a, b, options]`, `time-interval` with options last, `case` with its default in
the options, and no options at all for the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from provisioner.mbql.normal import NormalQuery, args_of, is_clause, options_of

_STRING_FILTERS = frozenset({"contains", "does-not-contain", "starts-with", "ends-with"})
_AGGREGATION_OPTION_KEYS = ("name", "display-name")

# The base type of a column referred to by name: (stage index, column name, join alias or None) -> type.
BaseTypes = Callable[[int, str, str | None], str]


class LegacyError(ValueError):
    """A normal-form clause legacy MBQL cannot say (an option it has no place for)."""


class _Writer:
    def __init__(self, base_types: BaseTypes) -> None:
        self.base_types = base_types
        self.stage_index = 0

    def clause(self, value: Any, *, aggregation: bool = False) -> Any:
        if not is_clause(value):
            return value
        tag, options, args = value[0], dict(options_of(value)), args_of(value)
        if tag == "field":
            leaf = args[0]
            if isinstance(leaf, str):
                alias = options.get("join-alias")
                options.setdefault("base-type", self.base_types(self.stage_index, leaf, alias))
            return ["field", leaf, options or None]
        if tag in ("expression", "aggregation"):
            return [tag, args[0], *([options] if options else [])]
        if tag == "value":
            return ["value", args[0], None]
        if tag == "offset":
            return ["offset", options, *(self.clause(a) for a in args)]
        named = {k: options.pop(k) for k in _AGGREGATION_OPTION_KEYS if k in options}
        if tag in ("case", "if"):
            pairs = [[self.clause(p) for p in pair] for pair in args[0]]
            if len(args) > 1:
                options["default"] = self.clause(args[1])
            written: list[Any] = [tag, pairs, *([options] if options else [])]
        elif tag in _STRING_FILTERS:
            inner = [self.clause(a) for a in args]
            written = (
                [tag, *inner, *([options] if options else [])] if len(inner) <= 2 else [tag, options, *inner]
            )
        elif tag in ("time-interval", "datetime"):
            written = [tag, *(self.clause(a) for a in args), *([options] if options else [])]
        else:
            if options:
                raise LegacyError(f"`{tag}` with options {sorted(options)} cannot be written in legacy MBQL")
            written = [tag, *(self.clause(a) for a in args)]
        if named:
            if not aggregation:
                raise LegacyError(f"`{tag}` has a name, which only a summary can have")
            return ["aggregation-options", written, named]
        return written

    def stage(self, stage: dict[str, Any], index: int) -> dict[str, Any]:
        self.stage_index = index
        out: dict[str, Any] = {}
        if "source-table" in stage:
            out["source-table"] = stage["source-table"]
        if "source-card" in stage:
            out["source-table"] = f"card__{stage['source-card']}"
        if stage.get("joins"):
            out["joins"] = [self.join(j) for j in stage["joins"]]
        if stage.get("expressions"):
            out["expressions"] = {name: self.clause(c) for name, c in stage["expressions"].items()}
        if stage.get("filters"):
            filters = [self.clause(f) for f in stage["filters"]]
            out["filter"] = filters[0] if len(filters) == 1 else ["and", *filters]
        if stage.get("aggregation"):
            out["aggregation"] = [self.clause(a, aggregation=True) for a in stage["aggregation"]]
        for key in ("breakout", "fields", "order-by"):
            if stage.get(key):
                out[key] = [self.clause(c) for c in stage[key]]
        if stage.get("limit") is not None:
            out["limit"] = stage["limit"]
        return out

    def join(self, join: dict[str, Any]) -> dict[str, Any]:
        conditions = [self.clause(c) for c in join.get("conditions") or []]
        out: dict[str, Any] = {
            "alias": join["alias"],
            "strategy": join.get("strategy") or "left-join",
            "condition": conditions[0] if len(conditions) == 1 else ["and", *conditions],
        }
        fields = join.get("fields", "none")
        out["fields"] = [self.clause(f) for f in fields] if isinstance(fields, list) else fields
        outer = self.stage_index
        inner = self.chain(join.get("stages") or [])
        self.stage_index = outer
        out.update(inner if set(inner) <= {"source-table", "source-query"} else {"source-query": inner})
        return out

    def chain(self, stages: list[dict[str, Any]]) -> dict[str, Any]:
        inner: dict[str, Any] | None = None
        for i, stage in enumerate(stages):
            written = self.stage(stage, i)
            if inner is not None:
                written["source-query"] = inner
            inner = written
        return inner or {}


def to_legacy(query: NormalQuery, database_id: int, base_types: BaseTypes) -> dict[str, Any]:
    """The legacy `dataset_query` of a normal-form query with ids; raises LegacyError.

    `base_types(stage, name, join_alias)` gives the base type of a column referred to by name (legacy
    name refs carry one); any plausible type will do, since the server only uses it as a hint.
    """
    writer = _Writer(base_types)
    return {"database": database_id, "type": "query", "query": writer.chain(query["stages"])}
