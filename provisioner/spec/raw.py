"""The `mbql:` block: a query the readable `query:` form cannot say, kept exactly, with names for ids.

Export writes it for a clause the readable form has no words for (an option it does not know, a
reference it cannot print unambiguously); apply reads it back. It is the normal form of
`mbql/normal.py` written compactly:

    mbql:
      stages:
        - source-table: v_orders                     # a table or view by name; source-card: a key
          filters:
            - [">", ["field", "v_orders.amount"], 100]
            - ["=", ["field", {temporal-unit: month}, "v_orders.paid_on"], "2026-01"]
          aggregation: [["count"]]

A clause is `[tag, options, *args]`, its options left out when empty. A field's last element is
`table.column` (or `schema.table.column`) for a table's column, or a bare column name for a column of a
model, question or previous step (`{column: "a.b"}` when the name has a dot).
"""

from __future__ import annotations

from typing import Any

from provisioner.mbql.normal import NormalQuery, Stage, canonical, is_clause


class RawError(ValueError):
    """A malformed `mbql:` block; `path` is where in the block (`stages[0].filters[1]`)."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.message, self.path = message, path


def _encode_leaf(leaf: Any) -> Any:
    if isinstance(leaf, list):
        return ".".join(str(p) for p in leaf)
    if isinstance(leaf, str) and "." in leaf:
        return {"column": leaf}
    return leaf


def _encode(value: Any) -> Any:
    if not is_clause(value):
        return value
    tag, options, args = value[0], value[1], value[2:]
    if tag == "field":
        options = dict(options)
        if isinstance(options.get("source-field"), list):
            options["source-field"] = _encode_leaf(options["source-field"])
        return ["field", *([options] if options else []), _encode_leaf(args[-1])]
    if tag in ("case", "if") and args and isinstance(args[0], list):
        body: list[Any] = [[[_encode(x) for x in pair] for pair in args[0]], *map(_encode, args[1:])]
    else:
        body = [_encode(a) for a in args]
    return [tag, *([options] if options else []), *body]


def _encode_stage(stage: Stage) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in stage.items():
        if key == "joins":
            out[key] = [
                {
                    **{k: v for k, v in join.items() if k not in ("stages", "conditions", "fields")},
                    "conditions": [_encode(c) for c in join.get("conditions") or []],
                    "fields": [_encode(f) for f in join["fields"]]
                    if isinstance(join.get("fields"), list)
                    else join.get("fields", "none"),
                    "stages": [_encode_stage(s) for s in join.get("stages") or []],
                }
                for join in value
            ]
        elif key == "expressions":
            out[key] = {name: _encode(c) for name, c in value.items()}
        elif isinstance(value, list):
            out[key] = [_encode(c) for c in value]
        else:
            out[key] = value
    return out


def encode(query: NormalQuery) -> dict[str, Any]:
    """The `mbql:` block of a normal-form query with names."""
    return {"stages": [_encode_stage(s) for s in query.get("stages") or []]}


def _decode_leaf(leaf: Any, path: str) -> Any:
    if isinstance(leaf, dict):
        if set(leaf) != {"column"} or not isinstance(leaf["column"], str):
            raise RawError("a column written as a mapping is `{column: name}`", path)
        return leaf["column"]
    if isinstance(leaf, str):
        return leaf.split(".") if "." in leaf else leaf
    raise RawError(f"a field's last element is `table.column` or a column name, not {leaf!r}", path)


def _decode(value: Any, path: str) -> Any:
    if not isinstance(value, list):
        if isinstance(value, dict):
            raise RawError("a mapping where a value or a clause `[tag, ...]` was expected", path)
        return value
    if not value or not isinstance(value[0], str):
        raise RawError("a clause starts with its name: `[tag, ...]`", path)
    tag = value[0]
    if tag == "field":
        if len(value) not in (2, 3) or (len(value) == 3 and not isinstance(value[1], dict)):
            raise RawError("a field is `[field, column]` or `[field, {options}, column]`", path)
        options = dict(value[1]) if len(value) == 3 else {}
        if "source-field" in options:
            options["source-field"] = _decode_leaf(options["source-field"], path)
        return ["field", options, _decode_leaf(value[-1], path)]
    has_options = len(value) > 1 and isinstance(value[1], dict)
    options = dict(value[1]) if has_options else {}
    args = value[2:] if has_options else value[1:]
    if tag in ("case", "if"):
        pairs_ok = bool(args) and isinstance(args[0], list)
        if not pairs_ok or not all(isinstance(p, list) and len(p) == 2 for p in args[0]):
            raise RawError("`case` is `[case, [[condition, value], ...], default]`", path)
        pairs = [[_decode(x, f"{path}[1]") for x in pair] for pair in args[0]]
        return [tag, options, pairs, *(_decode(a, f"{path}[{i + 2}]") for i, a in enumerate(args[1:]))]
    return [tag, options, *(_decode(a, f"{path}[{i + 1}]") for i, a in enumerate(args))]


_STAGE_KEYS = {
    "source-table",
    "source-card",
    "joins",
    "expressions",
    "filters",
    "aggregation",
    "breakout",
    "fields",
    "order-by",
    "limit",
}


def _decode_stage(stage: Any, path: str) -> Stage:
    if not isinstance(stage, dict):
        raise RawError("a step is a mapping", path)
    unknown = set(stage) - _STAGE_KEYS
    if unknown:
        raise RawError(f"unknown key `{sorted(unknown)[0]}`; allowed: {', '.join(sorted(_STAGE_KEYS))}", path)
    out: Stage = {}
    for key, value in stage.items():
        where = f"{path}.{key}"
        if key in ("source-table", "source-card"):
            if not isinstance(value, str) or not value:
                raise RawError(f"`{key}` is a name", where)
            out[key] = value
        elif key == "limit":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise RawError("`limit` is a positive number", where)
            out[key] = value
        elif key == "expressions":
            if not isinstance(value, dict):
                raise RawError("`expressions` maps names to clauses", where)
            out[key] = {str(n): _decode(c, f"{where}.{n}") for n, c in value.items()}
        elif key == "joins":
            if not isinstance(value, list):
                raise RawError("`joins` is a list", where)
            out[key] = [_decode_join(j, f"{where}[{i}]") for i, j in enumerate(value)]
        else:
            if not isinstance(value, list):
                raise RawError(f"`{key}` is a list", where)
            out[key] = [_decode(c, f"{where}[{i}]") for i, c in enumerate(value)]
    return out


def _decode_join(join: Any, path: str) -> dict[str, Any]:
    if not isinstance(join, dict) or not isinstance(join.get("alias"), str):
        raise RawError("a join is a mapping with an `alias`", path)
    fields = join.get("fields", "none")
    if not (fields in ("all", "none") or isinstance(fields, list)):
        raise RawError("a join's `fields` is all, none or a list", f"{path}.fields")
    stages = join.get("stages")
    if not isinstance(stages, list) or not stages:
        raise RawError("a join has `stages` (its source)", f"{path}.stages")
    return {
        "alias": join["alias"],
        "strategy": join.get("strategy") or "left-join",
        "conditions": [
            _decode(c, f"{path}.conditions[{i}]") for i, c in enumerate(join.get("conditions") or [])
        ],
        "fields": [_decode(f, f"{path}.fields[{i}]") for i, f in enumerate(fields)]
        if isinstance(fields, list)
        else fields,
        "stages": [_decode_stage(s, f"{path}.stages[{i}]") for i, s in enumerate(stages)],
    }


def decode(block: dict[str, Any]) -> NormalQuery:
    """The normal form of an `mbql:` block; raises RawError naming where it is malformed."""
    stages = block.get("stages") if isinstance(block, dict) else None
    if not isinstance(stages, list) or not stages:
        raise RawError("the block has `stages:`, a list of steps", "stages")
    extra = set(block) - {"stages"}
    if extra:
        raise RawError(f"unknown key `{sorted(extra)[0]}`; the block has only `stages`", sorted(extra)[0])
    if "source-table" not in stages[0] and "source-card" not in stages[0]:
        raise RawError("the first step has `source-table` or `source-card`", "stages[0]")
    return canonical({"stages": [_decode_stage(s, f"stages[{i}]") for i, s in enumerate(stages)]})
