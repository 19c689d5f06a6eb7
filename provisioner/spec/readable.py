"""A normal-form query (with names) written back as the YAML's readable `query:`, for export.

The inverse of `question.py`: a table source becomes `source: v_orders`, a card source
`{model: key}` or `{question: key}`, filters and custom columns become expressions, and so on. Anything
the readable form has no words for (an option it does not know, a reference it cannot print without
ambiguity) makes `to_readable` return None: export then writes the faithful `mbql:` block instead.
Export also compiles what this returns and keeps it only if it gives back the very same query.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from provisioner.mbql.normal import NormalQuery, is_clause
from provisioner.spec.expr import quote_name, render

JOIN_WORDS = {"left-join": "left", "inner-join": "inner", "right-join": "right", "full-join": "full"}
_REF_OPTIONS = {"join-alias", "source-field"}


class _Unreadable(Exception):
    """A part of the query the readable form cannot say."""


class _Stage:
    def __init__(self, stage: dict[str, Any], card_type: Callable[[str], str]) -> None:
        self.stage = stage
        self.card_type = card_type
        self.table = stage.get("source-table")
        self.expressions = set(stage.get("expressions") or {})
        self.summaries: list[str] = []

    def ref(self, clause: list[Any]) -> str | None:
        tag, options = clause[0], clause[1]
        leaf = clause[-1]
        if tag == "expression":
            return quote_name(leaf) if not options else None
        if tag == "aggregation":
            index = leaf
            return self.summaries[index] if 0 <= index < len(self.summaries) and not options else None
        if tag != "field" or set(options) - _REF_OPTIONS:
            return None
        name = leaf[-1] if isinstance(leaf, list) else leaf
        if not isinstance(name, str):
            return None
        alias = options.get("join-alias")
        source_field = options.get("source-field")
        if alias is not None and source_field is not None:
            return None
        if source_field is not None:
            table = self.table.split(".") if isinstance(self.table, str) else None
            if not isinstance(source_field, list) or table is None or source_field[:-1] != table:
                return None
            return f"{quote_name(source_field[-1])} -> {quote_name(name)}"
        if alias is not None:
            return f"{quote_name(alias)}.{quote_name(name)}"
        if isinstance(leaf, list) and (not isinstance(self.table, str) or leaf[:-1] != self.table.split(".")):
            return None
        if name in self.expressions:
            return None  # the name would mean the custom column, not this one
        return quote_name(name)

    def text(self, clause: Any) -> str:
        written = render(clause, self.ref)
        if written is None:
            raise _Unreadable()
        return written

    def column(self, ref: list[Any]) -> str:
        if not is_clause(ref) or ref[0] not in ("field", "expression"):
            raise _Unreadable()
        written = self.ref(ref)
        if written is None:
            raise _Unreadable()
        return written

    def source(self, inner: dict[str, Any]) -> Any:
        if "source-table" in inner:
            return inner["source-table"]
        key = inner["source-card"]
        return {self.card_type(key): key}


def _strip_bucketing(ref: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    options = dict(ref[1])
    bucketing = {k: options.pop(k) for k in ("temporal-unit", "binning") if k in options}
    return [ref[0], options, *ref[2:]], bucketing


def _group(stage: _Stage, ref: list[Any]) -> Any:
    plain, bucketing = _strip_bucketing(ref)
    column = stage.column(plain)
    if not bucketing:
        return column
    if "temporal-unit" in bucketing:
        return {"column": column, "unit": bucketing["temporal-unit"]}
    binning = bucketing["binning"]
    strategy = binning.get("strategy") if isinstance(binning, dict) else None
    if strategy == "num-bins" and set(binning) == {"strategy", "num-bins"}:
        return {"column": column, "bins": binning["num-bins"]}
    if strategy == "bin-width" and set(binning) == {"strategy", "bin-width"}:
        return {"column": column, "bin_width": binning["bin-width"]}
    if strategy == "default" and set(binning) == {"strategy"}:
        return {"column": column, "bins": "auto"}
    raise _Unreadable()


def _stage(stage: dict[str, Any], index: int, card_type: Callable[[str], str]) -> dict[str, Any]:
    reader = _Stage(stage, card_type)
    out: dict[str, Any] = {}
    if index == 0:
        out["source"] = reader.source(stage)
    joins = []
    for join in stage.get("joins") or []:
        inner = join.get("stages") or []
        if len(inner) != 1 or set(inner[0]) - {"source-table", "source-card"}:
            raise _Unreadable()
        entry: dict[str, Any] = {"source": reader.source(inner[0]), "alias": join["alias"]}
        conditions = [reader.text(c) for c in join.get("conditions") or []]
        entry["on"] = conditions[0] if len(conditions) == 1 else conditions
        if join.get("strategy", "left-join") != "left-join":
            entry["strategy"] = JOIN_WORDS.get(join["strategy"]) or _fail()
        fields = join.get("fields", "none")
        if isinstance(fields, list):
            entry["columns"] = [_joined_column(f, join["alias"]) for f in fields]
        elif fields != "all":
            entry["columns"] = fields
        joins.append(entry)
    if joins:
        out["joins"] = joins
    if stage.get("expressions"):
        out["expressions"] = {name: reader.text(c) for name, c in stage["expressions"].items()}
    filters = [reader.text(f) for f in stage.get("filters") or []]
    if filters:
        out["filter"] = filters[0] if len(filters) == 1 else filters
    if stage.get("fields"):
        out["columns"] = [reader.column(f) for f in stage["fields"]]
    summaries = []
    for clause in stage.get("aggregation") or []:
        options = dict(clause[1])
        label = options.pop("display-name", None)
        if set(options):
            raise _Unreadable()
        text = reader.text([clause[0], options, *clause[2:]])
        if text == "count()":
            text = "count"
        summaries.append({"expr": text, "name": label} if label else text)
        reader.summaries.append(label or text)
    if summaries:
        out["summarize"] = summaries
    if stage.get("breakout"):
        out["group_by"] = [_group(reader, b) for b in stage["breakout"]]
    orders = []
    for order in stage.get("order-by") or []:
        direction, ref = order[0], order[-1]
        if order[1] or direction not in ("asc", "desc"):
            raise _Unreadable()
        written = reader.ref(ref) if ref[0] == "aggregation" else reader.column(_strip_bucketing(ref)[0])
        if written is None:
            raise _Unreadable()
        orders.append(written + (" desc" if direction == "desc" else ""))
    if orders:
        out["order_by"] = orders
    if stage.get("limit") is not None:
        out["limit"] = stage["limit"]
    return out


def _joined_column(ref: Any, alias: str) -> str:
    if not is_clause(ref) or ref[0] != "field" or ref[1] != {"join-alias": alias}:
        raise _Unreadable()
    leaf = ref[-1]
    return str(leaf[-1] if isinstance(leaf, list) else leaf)


def _fail() -> str:
    raise _Unreadable()


def column_text(stage: dict[str, Any], ref: list[Any]) -> str | None:
    """How the YAML names a column of the first step (a dashboard filter's wiring), or None."""
    return _Stage(stage, lambda _key: "question").ref(ref)


def to_readable(query: NormalQuery, card_type: Callable[[str], str]) -> Any:
    """The readable `query:` (one step, or a list of steps), or None when a part has no readable form.

    `card_type(key)` tells whether a source card is a model or a question.
    """
    stages = query.get("stages") or []
    try:
        steps = [_stage(s, i, card_type) for i, s in enumerate(stages)]
    except (_Unreadable, KeyError, IndexError, TypeError):
        return None
    return steps[0] if len(steps) == 1 else steps
