"""Query-builder (MBQL) queries as Metabase 61-65 take them on write and give them back on read.

What Metabase 65 does on the wire (Metabase's source, repository metabase/metabase; the fake mirrors each
point):

Write (`POST /api/card`, `PUT /api/card/:id`): `queries/card_write.clj` `normalize-dataset-query-or-400` runs
`lib-be/normalize-query ... {:strict? true}` (`lib_be/models/transforms.clj`) and turns any exception into a
400.
- Refused, 400: `lib/type` next to `type`/`query`/`native` ("MBQL 4 keys like :type, :query, or :native are
  not allowed in MBQL 5 queries with :lib/type"); `type` next to `stages`; neither `lib/type` nor `type`
  ("Query must include :lib/type or :type"); no `database` ("Query must include :database"); and every error
  the legacy to MBQL 5 conversion throws (`lib/query.cljc` `query-from-legacy-query`: "Error creating query
  from legacy query: ..."), e.g. an `["aggregation", N]` ref with no aggregation N (`lib/convert.cljc` "Error
  converting :aggregation reference: no aggregation at index N"). The newest exception middleware
  (`server/middleware/exceptions.clj` with `util/api_error.clj`) sends only client-facing ex-data keys, so
  these bodies are the message as plain text.
- Not refused: the MBQL schemas are malli `mu/defn` checks, compiled out of production builds
  (`util/malli/fn.clj` `instrument-ns?`). Instead `lib/convert.cljc` `clean` (run on every legacy to MBQL 5
  conversion) drops each `filters`/`aggregation`/`breakout`/`fields`/`order-by`/`expressions`/`joins` entry
  that fails the stage schema (unknown clause, wrong arity, a name ref `["field", "x", opts]` without
  `base-type`, ...) and each ref to an aggregation or expression that is not there; an emptied list
  disappears. The card is saved without them. MBQL 5 input is not converted, so it is not cleaned: it is
  stored as sent, with a `lib/uuid` added to every options map that lacks one (`lib/schema/common.cljc`
  `normalize-options-map`).
- A `source-table`, field id or `card__N`/`source-card` that does not exist, an archived source card or one of
  another database: no check on save in the newest `queries/models/card.clj` `pre-insert` (the older
  `check-for-circular-source-query-references` 404 is gone); the query fails when run. A source-card chain
  that comes back to the card is "Cannot save card with cycles." (`lib/query.cljc` `check-card-overwrite`), a
  400.

Read (`GET /api/card/:id`, dashcards, `GET /api/card`, write answers): MBQL 5 (`lib/convert.cljc` `->pMBQL`,
`lib/util.cljc` `pipeline`), `{"lib/type": "mbql/query", "database", "stages", "lib.convert/converted?":
true}`:
- a nested `source-query` becomes earlier stages; each stage `{"lib/type": "mbql.stage/mbql", ...}`;
  `"source-table": "card__N"` becomes `"source-card": N`;
- every clause is `[tag, {"lib/uuid": ..., <its options>}, *args]`; legacy trailing options move second;
  `["count"]` becomes `["count", {"lib/uuid"}]`; `["aggregation-options", agg, {"name", "display-name"}]`
  becomes `agg` with `name`/`display-name` in its options;
- field refs `["field", {"lib/uuid", "base-type", "effective-type", ...}, id]`: for an integer id the field's
  `base-type`/`effective-type` are added (`lib/query.cljc` `add-types-to-fields`; not when a sent `base-type`
  differs from the field's; nothing for an unknown field); name refs keep only their own options;
  `:metabase.lib.query/transformation-added-base-type` is not serialised (`lib/schema/ref.cljc`
  `:encode/serialize`), so `legacy_query` then shows the `base-type` too (recorded card 28);
- `["aggregation", i]` becomes `["aggregation", {"lib/uuid"}, <uuid of aggregation i>]`;
- `filter` becomes the list `filters`, a top-level `["and", a, b]` split into `[a, b]` (`pipeline`); join
  `condition` becomes `conditions` the same way;
- `expressions {"name": clause}` becomes a list of clauses whose options carry `"lib/expression-name"`;
- joins `{"lib/type": "mbql/join", "stages": [{"lib/type": "mbql.stage/mbql", "source-table"}], "conditions",
  "alias", "fields", "strategy"?, "lib/options": {"lib/uuid"}}`; `fields` keeps `"all"`/`"none"` or a ref
  list; nothing is added (no default `strategy`), a missing alias becomes `"__join"` (dropped again in legacy
  form);
- options keep what was sent (e.g. `{"case-sensitive": true}` is not dropped as a default);
- ids refs to a source card's columns stay id refs (recorded card 28 on a 57+ server).
`legacy_query` is `->legacy-MBQL` of that: `filters` of one clause become `filter`, several an `and`; names of
aggregations go back into `aggregation-options`; options lose `lib/*` keys and `effective-type`. `lib/uuid`s
are minted once per save: the fake stores the legacy form with the list of uuids it renders with.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterator
from typing import Any

FieldTypes = Callable[[int], "tuple[str, str] | None"]
"""Return (base-type, effective-type) of a field id, or None when there is no such field."""

CONVERTED = "lib.convert/converted?"
DEFAULT_JOIN_ALIAS = "__join"

# Clause arities as (fewest, most) arguments, None = unbounded (lib/schema/filter.cljc, aggregation.cljc,
# expression/*.cljc; legacy_mbql/schema.cljc for the legacy names).
BOOLEAN_CLAUSES: dict[str, tuple[int, int | None]] = {
    "and": (2, None), "or": (2, None), "not": (1, 1),
    "=": (2, None), "!=": (2, None), "in": (2, None), "not-in": (2, None),
    "<": (2, 2), ">": (2, 2), "<=": (2, 2), ">=": (2, 2), "between": (3, 3), "inside": (6, 6),
    "is-null": (1, 1), "not-null": (1, 1), "is-empty": (1, 1), "not-empty": (1, 1),
    "contains": (2, None), "does-not-contain": (2, None), "starts-with": (2, None), "ends-with": (2, None),
    "time-interval": (3, 3), "relative-time-interval": (5, 5), "during": (3, 3), "segment": (1, 1),
}  # fmt: skip
AGGREGATION_CLAUSES: dict[str, tuple[int, int | None]] = {
    "count": (0, 1), "cum-count": (0, 1), "sum": (1, 1), "avg": (1, 1), "min": (1, 1), "max": (1, 1),
    "distinct": (1, 1), "stddev": (1, 1), "var": (1, 1), "median": (1, 1), "cum-sum": (1, 1),
    "share": (1, 1), "count-where": (1, 1), "sum-where": (2, 2), "distinct-where": (2, 2),
    "percentile": (2, 2), "metric": (1, 1), "measure": (1, 1), "offset": (2, 2),
}  # fmt: skip
EXPRESSION_CLAUSES: dict[str, tuple[int, int | None]] = {
    "+": (2, None), "-": (2, None), "*": (2, None), "/": (2, None),
    "abs": (1, 1), "ceil": (1, 1), "floor": (1, 1), "round": (1, 1), "sqrt": (1, 1), "exp": (1, 1),
    "log": (1, 1), "power": (2, 2), "concat": (2, None), "substring": (2, 3), "replace": (3, 3),
    "trim": (1, 1), "ltrim": (1, 1), "rtrim": (1, 1), "upper": (1, 1), "lower": (1, 1), "length": (1, 1),
    "coalesce": (2, None), "case": (1, 2), "if": (1, 2), "regex-match-first": (2, 2), "split-part": (3, 3),
    "datetime-add": (3, 3), "datetime-subtract": (3, 3), "datetime-diff": (3, 3), "interval": (2, 2),
    "relative-datetime": (1, 2), "absolute-datetime": (2, 2), "now": (0, 0), "today": (0, 0),
    "get-year": (1, 1), "get-quarter": (1, 1), "get-month": (1, 1), "get-week": (1, 2), "get-day": (1, 1),
    "get-day-of-week": (1, 2), "get-hour": (1, 1), "get-minute": (1, 1), "get-second": (1, 1),
    "temporal-extract": (2, 3), "convert-timezone": (2, 3), "date": (1, 1), "text": (1, 1),
    "integer": (1, 1), "float": (1, 1), "value": (1, 1), "host": (1, 1), "domain": (1, 1),
    "subdomain": (1, 1), "path": (1, 1), "month-name": (1, 1), "quarter-name": (1, 1), "day-name": (1, 1),
}  # fmt: skip
REF_CLAUSES = frozenset({"field", "expression", "aggregation"})
STRING_COMPARISONS = frozenset({"contains", "does-not-contain", "starts-with", "ends-with"})
# Stage keys `clean` looks at, in the order the fake mints uuids for them.
STAGE_LISTS = ("joins", "expressions", "filters", "aggregation", "breakout", "fields", "order-by")


class ConversionError(Exception):
    """The legacy to MBQL 5 conversion failed; Metabase answers the message (prefixed) with a 400 on save."""


def _is_clause(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], str)


def _fresh_uuid() -> str:
    return str(uuid.uuid4())


# ----------------------------------------------------------------- legacy normalisation


def _canonical_legacy_clause(clause: Any) -> Any:
    """Return a legacy clause with lower-case tags and pre-MBQL-4 field forms rewritten (mbql normalize)."""
    if not _is_clause(clause):
        if isinstance(clause, list):
            return [_canonical_legacy_clause(item) for item in clause]
        return clause
    tag = clause[0].lower().replace("_", "-")
    args = [_canonical_legacy_clause(item) for item in clause[1:]]
    if tag == "field-id" and len(args) == 1:
        return ["field", args[0], None]
    if tag == "field-literal" and len(args) == 2:
        return ["field", args[0], {"base-type": args[1]}]
    if tag == "field" and len(args) == 1:
        return ["field", args[0], None]
    return [tag, *args]


def _listify(value: Any) -> list:
    # Legacy normalisation accepts one clause (or a bare field id) where a list of clauses belongs.
    if isinstance(value, int) and not isinstance(value, bool):
        return [["field", value, None]]
    if _is_clause(value):
        return [value]
    return value if isinstance(value, list) else [value]


def normalize_legacy_inner(inner: dict) -> dict:
    """Return a legacy inner query with canonical clauses, list-valued clause keys and no empty clauses."""
    result: dict[str, Any] = {}
    for key, value in inner.items():
        key = key.replace("_", "-") if key in ("source_table", "source_query", "order_by") else key
        if value is None or value == [] or value == {}:
            continue
        if key == "source-query" and isinstance(value, dict):
            value = normalize_legacy_inner(value)
        elif key in ("aggregation", "breakout", "fields", "order-by"):
            value = [_canonical_legacy_clause(item) for item in _listify(value)]
        elif key == "filter":
            value = _canonical_legacy_clause(value)
        elif key == "expressions" and isinstance(value, dict):
            value = {str(name): _canonical_legacy_clause(clause) for name, clause in value.items()}
        elif key == "joins" and isinstance(value, list):
            value = [_normalize_join(join) for join in value]
        result[key] = value
    return result


def _normalize_join(join: Any) -> Any:
    if not isinstance(join, dict):
        return join
    result = {k: v for k, v in join.items() if v is not None}
    if isinstance(result.get("source-query"), dict):
        result["source-query"] = normalize_legacy_inner(result["source-query"])
    if "condition" in result:
        result["condition"] = _canonical_legacy_clause(result["condition"])
    if isinstance(result.get("fields"), list):
        result["fields"] = [_canonical_legacy_clause(item) for item in result["fields"]]
    return result


# ----------------------------------------------------------------- legacy -> MBQL 5


class _Renderer:
    """Legacy to MBQL 5 (`->pMBQL`, `add-types-to-fields`), taking `lib/uuid`s from `uuids` in fixed order."""

    def __init__(self, uuids: Iterator[str], field_types: FieldTypes) -> None:
        self.uuids = uuids
        self.field_types = field_types
        self.aggregation_uuids: list[str] = []

    def next_uuid(self) -> str:
        return next(self.uuids, None) or _fresh_uuid()

    def query(self, legacy: dict) -> dict:
        return {
            "lib/type": "mbql/query",
            "stages": self.stages(legacy.get("query") or {}),
            "database": legacy.get("database"),
            CONVERTED: True,
        }

    def stages(self, inner: dict) -> list[dict]:
        earlier = self.stages(inner["source-query"]) if isinstance(inner.get("source-query"), dict) else []
        return [*earlier, self.stage(inner)]

    def stage(self, inner: dict) -> dict:
        stage: dict[str, Any] = {"lib/type": "mbql.stage/mbql"}
        source = inner.get("source-table")
        if isinstance(source, str) and source.startswith("card__") and source[6:].isdigit():
            stage["source-card"] = int(source[6:])
        elif source is not None:
            stage["source-table"] = source
        saved_aggregations = self.aggregation_uuids
        self.aggregation_uuids = []
        if isinstance(inner.get("joins"), list):
            stage["joins"] = [self.join(join) for join in inner["joins"]]
        if isinstance(inner.get("expressions"), dict):
            stage["expressions"] = [
                self.expression_definition(name, clause) for name, clause in inner["expressions"].items()
            ]
        if "filter" in inner:
            stage["filters"] = [self.clause(c) for c in _split_and(inner["filter"])]
        if isinstance(inner.get("aggregation"), list):
            stage["aggregation"] = [self.aggregation(c) for c in inner["aggregation"]]
        for key in ("breakout", "fields", "order-by"):
            if isinstance(inner.get(key), list):
                stage[key] = [self.clause(c) for c in inner[key]]
        for key, value in inner.items():
            if key not in stage and key not in (
                "source-table", "source-query", "joins", "expressions", "filter", "aggregation",
                "breakout", "fields", "order-by", "source-metadata",
            ):  # fmt: skip
                stage[key] = copy.deepcopy(value)
        self.aggregation_uuids = saved_aggregations
        return stage

    def join(self, join: Any) -> Any:
        if not isinstance(join, dict):
            return join
        result: dict[str, Any] = {"lib/type": "mbql/join", "lib/options": {"lib/uuid": self.next_uuid()}}
        source = (
            join["source-query"]
            if isinstance(join.get("source-query"), dict)
            else {"source-table": join.get("source-table")}
        )
        saved = self.aggregation_uuids
        result["stages"] = self.stages(source)
        self.aggregation_uuids = saved
        if "condition" in join:
            result["conditions"] = [self.clause(c) for c in _split_and(join["condition"])]
        fields = join.get("fields")
        if isinstance(fields, list):
            result["fields"] = [self.clause(c) for c in fields]
        elif fields is not None:
            result["fields"] = fields
        result["alias"] = join.get("alias") or DEFAULT_JOIN_ALIAS
        for key, value in join.items():
            if key not in ("source-table", "source-query", "condition", "fields", "alias", "source-metadata"):
                result[key] = copy.deepcopy(value)
        return result

    def expression_definition(self, name: str, clause: Any) -> Any:
        converted = self.clause(clause)
        if _is_clause(converted) and len(converted) > 1 and isinstance(converted[1], dict):
            converted[1]["lib/expression-name"] = name
        return converted

    def aggregation(self, clause: Any) -> Any:
        converted = self.clause(clause)
        if _is_clause(converted) and len(converted) > 1 and isinstance(converted[1], dict):
            self.aggregation_uuids.append(converted[1]["lib/uuid"])
        else:
            self.aggregation_uuids.append(_fresh_uuid())
        return converted

    def clause(self, clause: Any) -> Any:
        if not _is_clause(clause):
            return [self.clause(c) for c in clause] if isinstance(clause, list) else copy.deepcopy(clause)
        tag, args = clause[0], clause[1:]
        if tag == "aggregation-options" and len(args) == 2:
            inner = self.clause(args[0])
            if _is_clause(inner) and len(inner) > 1 and isinstance(inner[1], dict):
                inner[1].update(copy.deepcopy(args[1]) if isinstance(args[1], dict) else {})
            return inner
        options: dict[str, Any] = {"lib/uuid": self.next_uuid()}
        if tag == "field" and len(args) == 2:
            options.update(copy.deepcopy(args[1]) if isinstance(args[1], dict) else {})
            self._add_types(options, args[0])
            return ["field", options, args[0]]
        if tag == "expression" and args:
            options.update(copy.deepcopy(args[1]) if len(args) > 1 and isinstance(args[1], dict) else {})
            return ["expression", options, args[0]]
        if tag == "aggregation" and args:
            index = args[0]
            if not isinstance(index, int) or not 0 <= index < len(self.aggregation_uuids):
                raise ConversionError(
                    f"Error converting :aggregation reference: no aggregation at index {index}"
                )
            options.update(copy.deepcopy(args[1]) if len(args) > 1 and isinstance(args[1], dict) else {})
            return ["aggregation", options, self.aggregation_uuids[index]]
        if tag == "value" and args:
            info = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
            renamed = {k.replace("_", "-"): v for k, v in info.items()}
            options.update(renamed)
            options.setdefault("effective-type", renamed.get("base-type") or _literal_type(args[0]))
            return ["value", options, copy.deepcopy(args[0])]
        if tag in ("case", "if") and args:
            options.update(
                {k: v for k, v in args[1].items() if k != "default"}
                if len(args) > 1 and isinstance(args[1], dict)
                else {}
            )
            pairs = [[self.clause(p) for p in pair] if isinstance(pair, list) else pair for pair in args[0]]
            result: list = [tag, options, pairs]
            if len(args) > 1 and isinstance(args[1], dict) and "default" in args[1]:
                result.append(self.clause(args[1]["default"]))
            return result
        if tag == "offset":
            # `[:offset opts expr n]` in both forms; another shape fails an assertion (seen on 63.1).
            if len(args) != 3:
                raise ConversionError("Assert failed: (= (count clause) 4)")
            options.update(copy.deepcopy(args[0]) if isinstance(args[0], dict) else {})
            return ["offset", options, self.clause(args[1]), args[2]]
        if tag in STRING_COMPARISONS and len(args) in (2, 3):
            if len(args) == 3 and isinstance(args[2], dict):
                options.update(copy.deepcopy(args[2]))
            return [tag, options, self.clause(args[0]), self.clause(args[1])]
        if tag == "time-interval" and len(args) in (3, 4):
            if len(args) == 4 and isinstance(args[3], dict):
                options.update(copy.deepcopy(args[3]))
            return [tag, options, self.clause(args[0]), args[1], args[2]]
        if args and isinstance(args[-1], dict):
            options.update(copy.deepcopy(args[-1]))
            args = args[:-1]
        return [tag, options, *(self.clause(a) for a in args)]

    def _add_types(self, options: dict, id_or_name: Any) -> None:
        if not isinstance(id_or_name, int) or isinstance(id_or_name, bool):
            return
        types = self.field_types(id_or_name)
        if types is None:
            return
        base_type, effective_type = types
        if options.get("base-type") not in (None, base_type):
            return
        options["base-type"] = base_type
        options["effective-type"] = effective_type


def _split_and(clause: Any) -> list:
    if _is_clause(clause) and clause[0] == "and":
        return list(clause[1:])
    return [clause]


def _literal_type(value: Any) -> str:
    if isinstance(value, bool):
        return "type/Boolean"
    if isinstance(value, int):
        return "type/Integer"
    if isinstance(value, float):
        return "type/Float"
    if isinstance(value, str):
        return "type/Text"
    return "type/*"


def to_mbql5(legacy: dict, uuids: list[str], field_types: FieldTypes) -> dict:
    """Return the MBQL 5 form of a stored legacy query, its clauses numbered with `uuids` in order."""
    return _Renderer(iter(uuids), field_types).query(legacy)


def count_uuids(legacy: dict) -> int:
    """Return how many `lib/uuid`s rendering `legacy` takes."""
    counter = iter(f"{i:036d}" for i in range(1_000_000))
    renderer = _Renderer(counter, lambda _id: None)
    renderer.query(legacy)
    return int(next(counter))


# ----------------------------------------------------------------- MBQL 5 -> legacy


def _legacy_options(options: Any) -> dict | None:
    """Options as legacy carries them: no `lib/*` or other namespaced keys, no `effective-type` or `ident`."""
    if not isinstance(options, dict):
        return None
    kept = {k: v for k, v in options.items() if "/" not in k and k not in ("effective-type", "ident")}
    return kept or None


class _Legacy:
    """MBQL 5 to legacy (`->legacy-MBQL`)."""

    def __init__(self) -> None:
        self.aggregation_index: dict[str, int] = {}

    def query(self, query: dict) -> dict:
        result: dict[str, Any] = {"database": query.get("database"), "type": "query"}
        result["query"] = self.chain(query.get("stages") or [])
        return result

    def chain(self, stages: list) -> dict:
        inner: dict | None = None
        for stage in stages:
            converted = self.stage(stage if isinstance(stage, dict) else {})
            if inner is not None:
                converted["source-query"] = inner
            inner = converted
        return inner or {}

    def stage(self, stage: dict) -> dict:
        saved = self.aggregation_index
        aggregations = stage.get("aggregation") if isinstance(stage.get("aggregation"), list) else []
        self.aggregation_index = {
            a[1]["lib/uuid"]: i
            for i, a in enumerate(aggregations)
            if _is_clause(a) and len(a) > 1 and isinstance(a[1], dict) and "lib/uuid" in a[1]
        }
        result: dict[str, Any] = {}
        for key, value in stage.items():
            if "/" in key:
                continue
            if key == "source-card":
                result["source-table"] = f"card__{value}"
            elif key == "filters" and isinstance(value, list):
                if value:
                    result["filter"] = self.boolean_list(value)
            elif key == "aggregation" and isinstance(value, list):
                result["aggregation"] = [self.aggregation(a) for a in value]
            elif key == "expressions" and isinstance(value, list):
                result["expressions"] = {
                    str(e[1].get("lib/expression-name")): self.expression(e)
                    for e in value
                    if _is_clause(e) and len(e) > 1 and isinstance(e[1], dict)
                }
            elif key == "joins" and isinstance(value, list):
                result["joins"] = [self.join(j) for j in value]
            elif key in ("breakout", "fields", "order-by") and isinstance(value, list):
                result[key] = [self.clause(c) for c in value]
            else:
                result[key] = copy.deepcopy(value)
        self.aggregation_index = saved
        return result

    def boolean_list(self, clauses: list) -> Any:
        converted = [self.clause(c) for c in clauses]
        return converted[0] if len(converted) == 1 else ["and", *converted]

    def join(self, join: Any) -> Any:
        if not isinstance(join, dict):
            return join
        result: dict[str, Any] = {}
        for key, value in join.items():
            if "/" in key or key in ("stages", "conditions"):
                continue
            if key == "alias" and isinstance(value, str) and value.startswith(DEFAULT_JOIN_ALIAS):
                continue
            if key == "fields" and isinstance(value, list):
                result["fields"] = [self.clause(c) for c in value]
            else:
                result[key] = copy.deepcopy(value)
        if isinstance(join.get("conditions"), list) and join["conditions"]:
            result["condition"] = self.boolean_list(join["conditions"])
        saved = self.aggregation_index
        inner = self.chain(join.get("stages") or [])
        self.aggregation_index = saved
        if set(inner) - {"source-table", "source-query", "fields", "source-metadata"}:
            inner = {"source-query": inner}
        result.update(inner)
        return result

    def aggregation(self, clause: Any) -> Any:
        if not (_is_clause(clause) and len(clause) > 1 and isinstance(clause[1], dict)):
            return self.clause(clause)
        if clause[0] in ("aggregation", "offset"):
            return self.clause(clause)
        inner = [clause[0], *(self.clause(a) for a in clause[2:])]
        options = _legacy_options(clause[1])
        return ["aggregation-options", inner, options] if options else inner

    def expression(self, clause: Any) -> Any:
        converted = self.aggregation(clause)
        if _is_clause(converted) and converted[0] == "aggregation-options":
            return converted[1]
        return converted

    def clause(self, clause: Any) -> Any:
        if not _is_clause(clause):
            return [self.clause(c) for c in clause] if isinstance(clause, list) else copy.deepcopy(clause)
        if len(clause) < 2 or not isinstance(clause[1], dict):
            return [clause[0], *(self.clause(a) for a in clause[1:])]
        tag, options, args = clause[0], clause[1], clause[2:]
        if tag == "field":
            return ["field", args[0] if args else None, _legacy_options(options)]
        if tag == "aggregation":
            index = self.aggregation_index.get(args[0] if args else "", args[0] if args else None)
            opts = _legacy_options(options)
            return ["aggregation", index, opts] if opts else ["aggregation", index]
        if tag == "value":
            info = {
                k.replace("-", "_"): v for k, v in options.items() if "/" not in k and k != "effective-type"
            }
            return ["value", args[0] if args else None, info or None]
        if tag in ("case", "if"):
            pairs = [self.clause(p) for p in args[0]] if args else []
            result: list = [tag, pairs]
            extra = _legacy_options({k: v for k, v in options.items()}) or {}
            if len(args) > 1:
                extra["default"] = self.clause(args[1])
            return [*result, extra] if extra else result
        if tag in STRING_COMPARISONS and len(args) > 2:
            return [tag, _legacy_options(options) or {}, *(self.clause(a) for a in args)]
        if tag == "offset":
            return [tag, _legacy_options(options) or {}, *(self.clause(a) for a in args)]
        converted = [tag, *(self.clause(a) for a in args)]
        opts = _legacy_options(options)
        return [*converted, opts] if opts else converted


def to_legacy(query: dict) -> dict:
    """Return the legacy form (`->legacy-MBQL`) of an MBQL 5 query with MBQL stages."""
    return _Legacy().query(query)


# ----------------------------------------------------------------- MBQL 5 normalisation and cleaning


def add_missing_uuids(value: Any) -> Any:
    """Return `value` with a `lib/uuid` in every clause options map and join that lacks one."""
    if isinstance(value, dict):
        result = {k: add_missing_uuids(v) for k, v in value.items()}
        if result.get("lib/type") == "mbql/join":
            options = result.get("lib/options") if isinstance(result.get("lib/options"), dict) else {}
            result["lib/options"] = {**options, "lib/uuid": options.get("lib/uuid") or _fresh_uuid()}
        return result
    if isinstance(value, list):
        if _is_clause(value) and len(value) > 1 and isinstance(value[1], dict):
            options = add_missing_uuids(value[1])
            options.setdefault("lib/uuid", _fresh_uuid())
            return [value[0], options, *(add_missing_uuids(v) for v in value[2:])]
        return [add_missing_uuids(v) for v in value]
    return value


def _has_options(clause: Any) -> bool:
    return (
        _is_clause(clause)
        and len(clause) >= 2
        and isinstance(clause[1], dict)
        and isinstance(clause[1].get("lib/uuid"), str)
    )


def _arity_ok(arity: tuple[int, int | None], count: int) -> bool:
    fewest, most = arity
    return count >= fewest and (most is None or count <= most)


class _Cleaner:
    """`lib/convert.cljc` `clean`: which stage entries fail the MBQL 5 stage schema or refer to nothing."""

    def __init__(self, stage: dict) -> None:
        self.expressions = {
            e[1].get("lib/expression-name") for e in stage.get("expressions") or [] if _has_options(e)
        }
        self.aggregations = {a[1]["lib/uuid"] for a in stage.get("aggregation") or [] if _has_options(a)}

    def ref(self, clause: Any) -> bool:
        if not _has_options(clause) or len(clause) != 3:
            return False
        tag, options, target = clause
        if tag == "field":
            if isinstance(target, bool):
                return False
            if isinstance(target, int):
                return target > 0
            return isinstance(target, str) and target.strip() != "" and bool(options.get("base-type"))
        if tag == "expression":
            return target in self.expressions
        if tag == "aggregation":
            return target in self.aggregations
        return False

    def expression(self, value: Any) -> bool:
        """Whether `value` is a literal or a valid expression clause (any kind)."""
        if not isinstance(value, list):
            return True
        if not _is_clause(value):
            return all(self.expression(v) for v in value)
        tag = value[0]
        if tag in REF_CLAUSES:
            return self.ref(value)
        arity = BOOLEAN_CLAUSES.get(tag) or EXPRESSION_CLAUSES.get(tag) or AGGREGATION_CLAUSES.get(tag)
        if arity is None or not _has_options(value) or not _arity_ok(arity, len(value) - 2):
            return False
        return all(self.expression(arg) for arg in value[2:])

    def boolean(self, clause: Any) -> bool:
        if not _is_clause(clause):
            return False
        if clause[0] in ("field", "expression", "segment") or clause[0] in BOOLEAN_CLAUSES:
            return self.expression(clause)
        return False

    def aggregation(self, clause: Any) -> bool:
        if not _is_clause(clause):
            return False
        tag = clause[0]
        if tag in AGGREGATION_CLAUSES:
            return self.expression(clause)
        if tag in ("+", "-", "*", "/") and _has_options(clause) and len(clause) >= 4:
            return all(
                self.aggregation(arg) if _is_clause(arg) else isinstance(arg, int | float)
                for arg in clause[2:]
            )
        return False

    def order_by(self, clause: Any) -> bool:
        return (
            _has_options(clause) and clause[0] in ("asc", "desc") and len(clause) == 3 and self.ref(clause[2])
        )

    def join(self, join: Any) -> bool:
        if not isinstance(join, dict) or join.get("lib/type") != "mbql/join":
            return False
        stages = join.get("stages")
        conditions = join.get("conditions")
        if not isinstance(stages, list) or not stages or not isinstance(join.get("alias"), str):
            return False
        if not isinstance(conditions, list) or not all(self.boolean(c) for c in conditions):
            return False
        fields = join.get("fields")
        if isinstance(fields, list):
            return all(_is_clause(f) and f[0] in ("field", "expression") for f in fields)
        return fields in (None, "all", "none")


def clean_stage(stage: dict) -> dict:
    """Return `stage` without the entries Metabase's `clean` drops; an emptied list loses its key too."""
    checks: dict[str, Callable[[_Cleaner, Any], bool]] = {
        "joins": _Cleaner.join,
        "expressions": _Cleaner.expression,
        "filters": _Cleaner.boolean,
        "aggregation": _Cleaner.aggregation,
        "breakout": lambda c, x: c.ref(x) and x[0] in ("field", "expression"),
        "fields": lambda c, x: c.ref(x),
        "order-by": _Cleaner.order_by,
    }
    stage = copy.deepcopy(stage)
    while True:  # dropping an aggregation or expression can orphan a ref elsewhere: repeat until stable
        cleaner = _Cleaner(stage)
        changed = False
        for key in STAGE_LISTS:
            entries = stage.get(key)
            if entries is None:
                continue
            if not isinstance(entries, list):
                del stage[key]
                changed = True
                continue
            kept = [e for e in entries if checks[key](cleaner, e)]
            if key == "expressions":
                kept = [e for e in kept if _has_options(e) and e[1].get("lib/expression-name")]
            if len(kept) != len(entries) or not kept:
                changed = True
                if kept:
                    stage[key] = kept
                else:
                    del stage[key]
        if not changed:
            return stage


def clean_query(query: dict) -> dict:
    """Return an MBQL 5 query whose MBQL stages (and their joins' stages) are cleaned."""
    result = copy.deepcopy(query)
    result["stages"] = [_clean_stage_deep(s) for s in result.get("stages") or []]
    return result


def _clean_stage_deep(stage: Any) -> Any:
    if not isinstance(stage, dict) or stage.get("lib/type") != "mbql.stage/mbql":
        return stage
    for join in stage.get("joins") or []:
        if isinstance(join, dict) and isinstance(join.get("stages"), list):
            join["stages"] = [_clean_stage_deep(s) for s in join["stages"]]
    return clean_stage(stage)


# ----------------------------------------------------------------- uuids


def uuids_matching(legacy: dict, mbql5: dict) -> list[str]:
    """Return the uuid list that renders `legacy` with the `lib/uuid`s `mbql5` carries at the same places.

    Places `mbql5` does not have (or has differently) get fresh uuids.
    """
    total = count_uuids(legacy)
    placeholders = [f"placeholder-{i:024d}" for i in range(total)]
    rendered = to_mbql5(legacy, placeholders, lambda _id: None)
    found: dict[str, str] = {}

    def walk(mine: Any, theirs: Any) -> None:
        if isinstance(mine, dict) and isinstance(theirs, dict):
            for key, value in mine.items():
                if key == "lib/uuid" and isinstance(value, str) and isinstance(theirs.get(key), str):
                    found.setdefault(value, theirs[key])
                elif key in theirs:
                    walk(value, theirs[key])
        elif isinstance(mine, list) and isinstance(theirs, list):
            for a, b in zip(mine, theirs, strict=False):
                walk(a, b)

    walk(rendered, mbql5)
    used: set[str] = set()
    result = []
    for placeholder in placeholders:
        value = found.get(placeholder)
        if value is None or value in used:
            value = _fresh_uuid()
        used.add(value)
        result.append(value)
    return result


def fresh_uuids(legacy: dict) -> list[str]:
    """Return new uuids for every clause of `legacy` (a save of a query sent in legacy form)."""
    return [_fresh_uuid() for _ in range(count_uuids(legacy))]


def source_card_ids(legacy: dict) -> list[int]:
    """Return every card id the query reads from: `card__N` sources of stages and joins, nested too."""
    found: list[int] = []

    def visit(inner: Any) -> None:
        if not isinstance(inner, dict):
            return
        source = inner.get("source-table")
        if isinstance(source, str) and source.startswith("card__") and source[6:].isdigit():
            found.append(int(source[6:]))
        visit(inner.get("source-query"))
        for join in inner.get("joins") or []:
            visit(join)

    visit(legacy.get("query"))
    return found


def first_stage_source(legacy: dict) -> Any:
    """Return the `source-table` of the innermost stage (an id or `card__N`), or None."""
    inner = legacy.get("query") or {}
    while isinstance(inner.get("source-query"), dict):
        inner = inner["source-query"]
    return inner.get("source-table")
