"""Query-builder questions of the YAML compiled to the normal MBQL form, with names, never ids.

A question's `query` (one step or a list of steps) becomes `{"stages": [...]}` as `mbql/normal.py`
describes it: a table is its name, a model or question its identity (`file-key/card-key`), a table
column `["field", {}, ["v_orders", "amount"]]`, a column of a model, question or previous step
`["field", {}, "amount"]`, a custom column `["expression", {}, "name"]`. Every reference is checked
against what the step can see: its source, its joins (by alias), its custom columns defined before, and,
when a schema is given (Metabase's metadata at plan time, PostgreSQL's catalog in `validate`), the real
columns and their types. Problems are SpecErrors at the file, line and field of the YAML.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from provisioner.errors import SpecError
from provisioner.mbql.columns import (
    AGGREGATIONS,
    NUMERIC_AGGREGATIONS,
    Column,
    Schema,
    is_numeric,
    is_temporal,
    is_text,
    result_type,
    stage_columns,
)
from provisioner.mbql.normal import NormalQuery, canonical, is_clause, map_leaves
from provisioner.spec.document import LoadedFile, Locator
from provisioner.spec.expr import REF, ExprError, is_ref, parse, render
from provisioner.spec.models import (
    DashboardSpec,
    Group,
    Join,
    QueryCard,
    Question,
    Source,
    Stage,
    Summary,
    as_source,
)
from provisioner.spec.raw import RawError
from provisioner.spec.raw import decode as decode_raw

Loc = tuple[Any, ...]
JOIN_STRATEGIES = {"left": "left-join", "inner": "inner-join", "right": "right-join", "full": "full-join"}
BINNING_WORDS = {"auto": {"strategy": "default"}}


@dataclass(frozen=True)
class CardSource:
    """A model or question another question is built on, as the compiler sees it."""

    ident: str
    type: str
    columns: list[Column] | None


CardLookup = Callable[[str, Loc], "CardSource"]


class _Problem(Exception):
    def __init__(self, loc: Loc, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.loc, self.message, self.hint = loc, message, hint


@dataclass
class _JoinScope:
    table: str | None
    columns: dict[str, Column] | None


@dataclass
class _Scope:
    """What the expressions of one stage can refer to."""

    table: str | None  # the source table (as written), or None for a card or a previous stage
    columns: dict[str, Column] | None  # the source's columns by name; None when unknown
    joins: dict[str, _JoinScope] = field(default_factory=dict)
    expressions: dict[str, Any] = field(default_factory=dict)
    schema: Schema | None = None

    @property
    def _table_path(self) -> list[str]:
        return (self.table or "").split(".")

    def type_of(self, ref: list[Any]) -> str:
        if ref[0] == "expression":
            found = self.expressions.get(ref[-1])
            return result_type(found, self.type_of) if found is not None else "type/*"
        if ref[0] != "field":
            return "type/*"
        options = ref[1]
        leaf = ref[-1]
        name = leaf[-1] if isinstance(leaf, list) else leaf
        if "join-alias" in options:
            columns = self.joins[options["join-alias"]].columns
        elif isinstance(leaf, list) and self.schema is not None and leaf[:-1] != self._table_path:
            columns = _by_name(self.schema.columns(".".join(leaf[:-1])))
        else:
            columns = self.columns
        column = (columns or {}).get(name)
        return column.base_type if column is not None else "type/*"


def _by_name(columns: list[Column] | None) -> dict[str, Column] | None:
    return None if columns is None else {c.name: c for c in columns}


@dataclass
class CompiledQuestion:
    """A question's normal-form query, its result columns (when known) and what its first step sees."""

    query: NormalQuery
    columns: list[Column] | None
    scopes: list[_Scope]  # what each step saw: its source's columns and its joins'
    wiring: dict[str, list[Any]] = field(default_factory=dict)  # dashboard filter column -> field ref


class QuestionCompiler:
    """Compiles the `query` of one question; `cards` looks up the models and questions it is built on."""

    def __init__(
        self,
        locator: Locator,
        where: Loc,
        schema: Schema | None,
        cards: CardLookup,
        dashboard: DashboardSpec | None = None,
    ) -> None:
        self.locator, self.where, self.schema, self.cards = locator, where, schema, cards
        self.dashboard = dashboard
        self.errors: list[SpecError] = []

    def error(self, loc: Loc, message: str, hint: str | None = None, *, key: bool = False) -> None:
        self.errors.append(self.locator.error((*self.where, *loc), message, hint=hint, key=key))

    def compile(self, question: Question) -> CompiledQuestion | None:
        """The compiled query, or None (with `errors` filled) when it cannot be compiled."""
        stages: list[dict[str, Any]] = []
        columns: list[Column] | None = None
        scopes: list[_Scope] = []
        steps = question.stages
        single = isinstance(question.query, Stage)
        for index, step in enumerate(steps):
            loc: Loc = ("query",) if single else ("query", index)
            if index == 0 and step.source is None:
                self.error(loc, "the first step needs a `source:`", hint="e.g. `source: v_orders`")
                return None
            if index > 0 and step.source is not None:
                self.error(
                    (*loc, "source"), "only the first step has a `source:`; later steps use its results"
                )
                return None
            try:
                scope, stage = self._source(step, loc, columns) if index == 0 else self._after(columns)
            except _Problem as problem:
                self.error(problem.loc, problem.message, problem.hint)
                return None
            failed = len(self.errors)
            self._stage(step, loc, scope, stage)
            if len(self.errors) > failed:
                return None
            scopes.append(scope)
            stages.append(stage)
            columns = self._columns(stage, scope)
        if question.type == "metric":
            last = stages[-1] if stages else {}
            if len(last.get("aggregation", [])) != 1 or len(last.get("breakout", [])) > 1:
                self.error(("query",), "a metric has exactly one summary and at most one grouping")
                return None
        compiled = CompiledQuestion(canonical({"stages": stages}), columns, scopes)
        if isinstance(question, QueryCard) and scopes:
            self._wire(question, scopes[0], compiled)
        return compiled

    def _wire(self, card: QueryCard, scope: _Scope, compiled: CompiledQuestion) -> None:
        """Dashboard filters on columns of the first step; with a schema, the filter type must fit."""
        for text, filter_key in card.filters.items():
            loc = ("filters", text)
            ref = self._column(text, loc, scope)
            if ref is None:
                continue
            if ref[0] != "field":
                self.error(loc, f"`{text}` is a custom column; a dashboard filter targets a column", key=True)
                continue
            flt = self.dashboard.filter(filter_key) if self.dashboard is not None else None
            column_type = scope.type_of(ref)
            if flt is not None and not filter_fits(flt.parameter_type, column_type):
                self.error(
                    loc,
                    f"filter `{flt.key}` of type `{flt.type}` cannot filter `{text}` ({column_type})",
                    hint="use a filter type that fits the column: text, number, date/..., category",
                )
                continue
            compiled.wiring[text] = ref

    def compile_raw(self, question: Question) -> CompiledQuestion | None:
        """An `mbql:` block: decoded, its names checked and made canonical, its columns worked out."""
        assert question.mbql is not None
        try:
            query = decode_raw(question.mbql)
        except RawError as exc:
            self.error(("mbql",), f"{exc.path}: {exc.message}")
            return None
        scopes: list[_Scope] = []
        columns: list[Column] | None = None
        try:
            for index, stage in enumerate(query["stages"]):
                if index == 0 and "source-table" in stage:
                    table = self._table(stage["source-table"], ("mbql",))
                    stage["source-table"] = table
                    known = _by_name(self.schema.columns(table)) if self.schema is not None else None
                    scope = _Scope(table, known, schema=self.schema)
                elif index == 0:
                    card = self.cards(stage["source-card"], ("mbql",))
                    stage["source-card"] = card.ident
                    scope = _Scope(None, _by_name(card.columns), schema=self.schema)
                else:
                    scope = _Scope(None, _by_name(columns), schema=self.schema)
                for join in stage.get("joins") or []:
                    source = join["stages"][0]
                    if "source-table" in source:
                        table = self._table(source["source-table"], ("mbql",))
                        source["source-table"] = table
                        known = _by_name(self.schema.columns(table)) if self.schema is not None else None
                        scope.joins[join["alias"]] = _JoinScope(table, known)
                    else:
                        card = self.cards(source["source-card"], ("mbql",))
                        source["source-card"] = card.ident
                        scope.joins[join["alias"]] = _JoinScope(None, _by_name(card.columns))
                scope.expressions = dict(stage.get("expressions") or {})
                scopes.append(scope)
                columns = self._columns(stage, scope)
            query = map_leaves(query, self._canonical_field)
        except _Problem as problem:
            self.error(problem.loc, problem.message, problem.hint)
            return None
        compiled = CompiledQuestion(canonical(query), columns, scopes)
        if isinstance(question, QueryCard) and scopes:
            self._wire(question, scopes[0], compiled)
        return compiled

    def _canonical_field(self, kind: str, value: Any, stage: dict[str, Any]) -> Any:
        """A raw block's table columns named as the normal form names them (and known to exist)."""
        if kind != "field" or self.schema is None:
            return value
        options = dict(value[1])
        paths = [("leaf", value[-1])]
        if "source-field" in options:
            paths.append(("source-field", options["source-field"]))
        out = value[-1]
        for where, path in paths:
            if not isinstance(path, list):
                continue
            table = self.schema.canonical_table(".".join(path[:-1]))
            names = {c.name for c in self.schema.columns(table) or []} if table else set()
            if table is None or path[-1] not in names:
                raise _Problem(
                    ("mbql",),
                    f"no column `{'.'.join(path)}` in the database",
                    hint="a column is `table.column`; check both names against the database",
                )
            fixed = [*table.split("."), path[-1]]
            if where == "leaf":
                out = fixed
            else:
                options["source-field"] = fixed
        return ["field", options, out]

    # -- sources ----------------------------------------------------------------------------

    def _source(self, step: Stage, loc: Loc, _: Any) -> tuple[_Scope, dict[str, Any]]:
        assert step.source is not None
        source = as_source(step.source)
        where = (*loc, "source")
        if source.table is not None:
            table = self._table(source.table, where)
            columns = _by_name(self.schema.columns(table)) if self.schema is not None else None
            return _Scope(table, columns, schema=self.schema), {"source-table": table}
        card = self._card(source, where)
        return _Scope(None, _by_name(card.columns), schema=self.schema), {"source-card": card.ident}

    def _after(self, previous: list[Column] | None) -> tuple[_Scope, dict[str, Any]]:
        return _Scope(None, _by_name(previous), schema=self.schema), {}

    def _table(self, name: str, loc: Loc) -> str:
        if self.schema is None:
            return name
        canonical_name = self.schema.canonical_table(name)
        if canonical_name is None:
            raise _Problem(
                loc,
                f"no table or view `{name}` in the database",
                hint="check the name (views count as tables); `schema.table` picks a schema",
            )
        return canonical_name

    def _card(self, source: Source, loc: Loc) -> CardSource:
        key = source.card_key
        assert key is not None
        kind = "model" if source.model is not None else "question"
        found = self.cards(key, (*loc, kind))
        if kind == "model" and found.type != "model":
            raise _Problem((*loc, kind), f"`{key}` is a {found.type}, not a model", hint="write `question:`")
        return found

    # -- one stage ------------------------------------------------------------------------------

    def _stage(self, step: Stage, loc: Loc, scope: _Scope, stage: dict[str, Any]) -> None:
        for index, join in enumerate(step.joins):
            self._join(join, (*loc, "joins", index), scope, stage)
        for name, text in step.expressions.items():
            expr = self._expr(text, (*loc, "expressions", name), scope, context="expression")
            if expr is not None:
                scope.expressions[name] = expr
                stage.setdefault("expressions", {})[name] = expr
        filters = []
        for index, text in enumerate(step.filters):
            where = (*loc, "filter", index) if isinstance(step.filter, list) else (*loc, "filter")
            expr = self._expr(text, where, scope, context="filter")
            if expr is not None:
                filters.append(expr)
        if filters:
            stage["filters"] = filters
        if step.columns is not None:
            refs = [self._column(text, (*loc, "columns", i), scope) for i, text in enumerate(step.columns)]
            stage["fields"] = [r for r in refs if r is not None]
        summaries: list[tuple[str, Any]] = []
        for index, summary in enumerate(step.summarize):
            text = summary.expr if isinstance(summary, Summary) else summary
            where = (*loc, "summarize", index) + (("expr",) if isinstance(summary, Summary) else ())
            expr = self._expr(text, where, scope, context="summary")
            if expr is None:
                continue
            if isinstance(summary, Summary) and summary.name is not None:
                expr = [expr[0], {**expr[1], "display-name": summary.name}, *expr[2:]]
            summaries.append((_normal_text(text), expr))
            if isinstance(summary, Summary) and summary.name is not None:
                summaries.append((summary.name, expr))
        if summaries:
            unique: list[Any] = []
            for _, expr in summaries:
                if not any(expr is u for u in unique):
                    unique.append(expr)
            stage["aggregation"] = unique
        breakouts = []
        for index, group in enumerate(step.group_by):
            where = (*loc, "group_by", index)
            ref = self._group(group, where, scope)
            if ref is not None:
                breakouts.append(ref)
        if breakouts:
            stage["breakout"] = breakouts
        orders = []
        for index, text in enumerate(step.order_by):
            order = self._order(text, (*loc, "order_by", index), scope, stage, summaries)
            if order is not None:
                orders.append(order)
        if orders:
            stage["order-by"] = orders
        if step.limit is not None:
            stage["limit"] = step.limit

    def _join(self, join: Join, loc: Loc, scope: _Scope, stage: dict[str, Any]) -> None:
        source = as_source(join.source)
        try:
            if source.table is not None:
                table = self._table(source.table, (*loc, "source"))
                alias = join.alias or table.rsplit(".", 1)[-1]
                columns = _by_name(self.schema.columns(table)) if self.schema is not None else None
                inner: dict[str, Any] = {"source-table": table}
                joined = _JoinScope(table, columns)
            else:
                card = self._card(source, (*loc, "source"))
                alias = join.alias or card.ident.rsplit("/", 1)[-1]
                inner = {"source-card": card.ident}
                joined = _JoinScope(None, _by_name(card.columns))
        except _Problem as problem:
            self.error(problem.loc, problem.message, problem.hint)
            return
        if alias in scope.joins:
            self.error((*loc, "alias"), f"two joins are named `{alias}`", hint="give one of them an `alias:`")
            return
        scope.joins[alias] = joined
        conditions = []
        for index, text in enumerate(join.conditions):
            where = (*loc, "on", index) if isinstance(join.on, list) else (*loc, "on")
            expr = self._expr(text, where, scope, context="filter")
            if expr is not None:
                conditions.append(expr)
        fields: Any = join.columns
        if isinstance(join.columns, list):
            refs = [
                self._resolve(["ref", {}, alias, name, None], (*loc, "columns", i), scope)
                for i, name in enumerate(join.columns)
            ]
            fields = [r for r in refs if r is not None]
        stage.setdefault("joins", []).append(
            {
                "alias": alias,
                "strategy": JOIN_STRATEGIES[join.strategy],
                "conditions": conditions,
                "fields": fields,
                "stages": [inner],
            }
        )

    def _group(self, group: str | Group, loc: Loc, scope: _Scope) -> list[Any] | None:
        text = group.column if isinstance(group, Group) else group
        where = (*loc, "column") if isinstance(group, Group) else loc
        ref = self._column(text, where, scope)
        if ref is None or not isinstance(group, Group):
            return ref
        column_type = scope.type_of(ref)
        options: dict[str, Any] = {}
        if group.unit is not None:
            if column_type != "type/*" and not is_temporal(column_type):
                self.error(
                    (*loc, "unit"),
                    f"`{text}` is not a date or time ({column_type}); it has no `unit`",
                    hint="group a date column by unit, a number by `bins`, text as it is",
                )
                return None
            options["temporal-unit"] = group.unit
        elif group.bins is not None or group.bin_width is not None:
            if column_type != "type/*" and not is_numeric(column_type):
                self.error(
                    loc,
                    f"`{text}` is not a number ({column_type}); it cannot be binned",
                    hint="bin a number column; group text or dates as they are (dates by `unit`)",
                )
                return None
            if group.bin_width is not None:
                options["binning"] = {"strategy": "bin-width", "bin-width": group.bin_width}
            elif group.bins == "auto":
                options["binning"] = {"strategy": "default"}
            else:
                options["binning"] = {"strategy": "num-bins", "num-bins": group.bins}
        if ref[0] != "field" and options:
            self.error(loc, f"only a column can be bucketed; `{text}` is a custom column")
            return None
        return [ref[0], {**ref[1], **options}, *ref[2:]]

    def _order(
        self, text: str, loc: Loc, scope: _Scope, stage: dict[str, Any], summaries: list[tuple[str, Any]]
    ) -> list[Any] | None:
        words = text.rsplit(None, 1)
        direction = "asc"
        if len(words) == 2 and words[1].lower() in ("asc", "desc"):
            text, direction = words[0], words[1].lower()
        wanted = _normal_text(text)
        aggregations = stage.get("aggregation") or []
        for label, expr in summaries:
            if label in (wanted, text):
                index = next(i for i, a in enumerate(aggregations) if a is expr)
                return [direction, {}, ["aggregation", {}, index]]
        ref = self._column(text, loc, scope)
        if ref is None:
            return None
        breakouts = stage.get("breakout") or []
        if aggregations or breakouts:
            same = [b for b in breakouts if _same_column(b, ref)]
            if not same:
                self.error(
                    loc,
                    f"`{text}` is neither a summary nor a grouping of this step",
                    hint="a summarized step can only be sorted by its groupings and summaries",
                )
                return None
            ref = same[0]
        return [direction, {}, ref]

    # -- expressions ----------------------------------------------------------------------------

    def _column(self, text: str, loc: Loc, scope: _Scope) -> list[Any] | None:
        try:
            expr = parse(text)
        except ExprError as exc:
            self.error(loc, _syntax(text, exc))
            return None
        if not is_ref(expr):
            self.error(
                loc, f"`{text}` is not a column", hint="name a column, or define it under `expressions:`"
            )
            return None
        return self._resolve(expr, loc, scope)

    def _expr(self, text: str, loc: Loc, scope: _Scope, *, context: str) -> Any:
        try:
            tree = parse(text)
        except ExprError as exc:
            self.error(loc, _syntax(text, exc))
            return None
        failed = len(self.errors)
        resolved = self._walk(tree, loc, scope, context)
        if len(self.errors) > failed:
            return None
        if context == "summary" and not _has_aggregation(resolved):
            self.error(
                loc,
                f"`{text}` summarizes nothing",
                hint="use count, sum(x), avg(x), min(x), max(x), distinct(x), count_where(...) ...",
            )
            return None
        if context == "filter" and isinstance(resolved, list) and resolved[0] == "field":
            column_type = scope.type_of(resolved)
            if column_type not in ("type/Boolean", "type/*"):
                self.error(loc, f"`{text}` is a column, not a condition", hint="compare it: `x = ...`")
                return None
        return resolved

    def _walk(self, tree: Any, loc: Loc, scope: _Scope, context: str) -> Any:
        if not is_clause(tree):
            return tree
        if tree[0] == REF:
            if context == "summary" and _bare_count(tree):
                return [tree[3].lower().replace("_", "-"), {}]  # `count`, as Metabase's editor writes it
            return self._resolve(tree, loc, scope)
        tag, options, args = tree[0], tree[1], tree[2:]
        if tag in AGGREGATIONS:
            if context != "summary":
                self.error(loc, f"`{tag.replace('-', '_')}` summarizes rows; it belongs under `summarize:`")
                return None
            inner = [self._walk(a, loc, scope, "aggregated") for a in args]
            if (
                tag in NUMERIC_AGGREGATIONS
                and inner
                and is_clause(inner[0])
                and inner[0][0] in ("field", "expression")
            ):
                column_type = scope.type_of(inner[0])
                if column_type != "type/*" and not is_numeric(column_type):
                    self.error(
                        loc,
                        f"`{tag.replace('-', '_')}` needs a number; the column is {column_type}",
                        hint="summarize a number column, or count it: count, distinct(x)",
                    )
            return [tag, options, *inner]
        if tag in ("case", "if") and args and isinstance(args[0], list):
            pairs = [[self._walk(p, loc, scope, context) for p in pair] for pair in args[0]]
            return [tag, options, pairs, *(self._walk(a, loc, scope, context) for a in args[1:])]
        walked = [tag, options, *(self._walk(a, loc, scope, context) for a in args)]
        problem = _type_problem(walked, scope)
        if problem is not None:
            self.error(loc, problem, hint="compare a column with a value of its own type")
        return walked

    def _resolve(self, ref: list[Any], loc: Loc, scope: _Scope) -> list[Any] | None:
        _, _, qualifier, name, fk = ref
        text = _ref_text(ref)
        if fk is not None:
            return self._implicit_join(qualifier, fk, name, loc, scope, text)
        if qualifier is None and name in scope.expressions:
            return ["expression", {}, name]
        if qualifier is not None and qualifier in scope.joins:
            joined = scope.joins[qualifier]
            self._check_column(joined.columns, name, loc, text, f"join `{qualifier}`")
            leaf: Any = [*joined.table.split("."), name] if joined.table else name
            return ["field", {"join-alias": qualifier}, leaf]
        if (
            qualifier is not None
            and qualifier != scope.table
            and qualifier != (scope.table or "").rsplit(".")[-1]
        ):
            aliases = ", ".join(scope.joins) or "none"
            self.error(
                loc,
                f"`{text}`: `{qualifier}` is not a join of this step",
                hint=f"joins: {aliases}; a column of the source needs no prefix",
            )
            return None
        what = f"`{scope.table}`" if scope.table else "the source"
        if not self._check_column(scope.columns, name, loc, text, what):
            return None
        if scope.table is not None:
            return ["field", {}, [*scope.table.split("."), name]]
        return ["field", {}, name]

    def _implicit_join(
        self, qualifier: str | None, fk: str, name: str, loc: Loc, scope: _Scope, text: str
    ) -> list[Any] | None:
        if qualifier is not None or scope.table is None:
            self.error(
                loc,
                f"`{text}`: `->` follows a foreign key of the source table only",
                hint="join the table explicitly under `joins:`",
            )
            return None
        if not self._check_column(scope.columns, fk, loc, text, f"`{scope.table}`"):
            return None
        source_field = [*scope.table.split("."), fk]
        if self.schema is None:
            return ["field", {"source-field": source_field}, ["?", name]]
        target = self.schema.foreign_key(scope.table, fk)
        if target is None:
            self.error(
                loc, f"`{scope.table}.{fk}` is not a foreign key", hint="join the table under `joins:`"
            )
            return None
        table = target[0]
        if not self._check_column(_by_name(self.schema.columns(table)), name, loc, text, f"`{table}`"):
            return None
        return ["field", {"source-field": source_field}, [*table.split("."), name]]

    def _check_column(
        self, columns: dict[str, Column] | None, name: str, loc: Loc, text: str, what: str
    ) -> bool:
        if columns is None or name in columns:
            return True
        close = sorted(columns, key=lambda c: _distance(c, name))[:5]
        self.error(
            loc, f"`{text}`: {what} has no column `{name}`", hint=f"columns include: {', '.join(close)}"
        )
        return False

    def _columns(self, stage: dict[str, Any], scope: _Scope) -> list[Column] | None:
        if scope.columns is None or any(j.columns is None for j in scope.joins.values()):
            return None
        if any(
            is_clause(f) and isinstance(f[-1], list) and f[-1][0] == "?" for f in stage.get("breakout", [])
        ):
            return None
        joins = {alias: list((j.columns or {}).values()) for alias, j in scope.joins.items()}

        def table_columns(table: str) -> list[Column] | None:
            return self.schema.columns(table) if self.schema is not None else None

        return stage_columns(
            canonical({"stages": [stage]})["stages"][0], list(scope.columns.values()), joins, table_columns
        )


_COMPARISONS = frozenset({"=", "!=", "<", "<=", ">", ">=", "between"})
_TEXT_ONLY = frozenset({"contains", "does-not-contain", "starts-with", "ends-with"})
_TEMPORAL_ONLY = frozenset({"time-interval", "relative-time-interval", "during"})
_DATE_TEXT = re.compile(r"^\d{4}-\d{2}(-\d{2})?([T ]\d{2}:\d{2}(:\d{2})?.*)?$")


def _type_problem(clause: list[Any], scope: _Scope) -> str | None:
    """Why a condition cannot hold for the column's type (text against a number, a date against text...)."""
    tag, args = clause[0], clause[2:]
    if not args or not is_clause(args[0]) or args[0][0] not in ("field", "expression"):
        return None
    column_type = scope.type_of(args[0])
    if column_type == "type/*":
        return None
    what = _kind_word(column_type)
    if tag in _TEXT_ONLY and not is_text(column_type):
        return f"`{tag.replace('-', '_')}` works on text; the column is {what} ({column_type})"
    if tag in _TEMPORAL_ONLY and not is_temporal(column_type):
        return f"`{tag.replace('-', '_')}` works on dates; the column is {what} ({column_type})"
    if tag not in _COMPARISONS:
        return None
    for value in args[1:]:
        if value is None or is_clause(value):
            continue
        if is_numeric(column_type) and isinstance(value, str | bool):
            return f"compares a number column with {value!r}"
        if is_text(column_type) and isinstance(value, int | float) and not isinstance(value, bool):
            return f'compares a text column with the number {value!r}; quote it: "{value}"'
        if is_temporal(column_type) and not (isinstance(value, str) and _DATE_TEXT.match(value)):
            return f'compares a date column with {value!r}; write a date such as "2026-01-31"'
        if column_type == "type/Boolean" and not isinstance(value, bool):
            return f"compares a true/false column with {value!r}; use true or false"
    return None


def _kind_word(base_type: str) -> str:
    if is_numeric(base_type):
        return "a number"
    if is_temporal(base_type):
        return "a date"
    if is_text(base_type):
        return "text"
    return "true/false" if base_type == "type/Boolean" else "another type"


def _bare_count(ref: list[Any]) -> bool:
    """`count` or `cum_count` written bare (not `` `count` ``, not qualified): the summary, not a column."""
    return not ref[1] and ref[2] is None and ref[4] is None and str(ref[3]).lower() in ("count", "cum_count")


def _has_aggregation(tree: Any) -> bool:
    if not is_clause(tree):
        return False
    if tree[0] in AGGREGATIONS:
        return True
    return any(_has_aggregation(a) for a in tree[2:]) or (
        tree[0] in ("case", "if")
        and len(tree) > 2
        and isinstance(tree[2], list)
        and any(_has_aggregation(x) for pair in tree[2] if isinstance(pair, list) for x in pair)
    )


def _same_column(a: list[Any], b: list[Any]) -> bool:
    """The same column, whatever the temporal unit or binning of either ref."""
    strip = ("temporal-unit", "binning")
    return (
        a[0] == b[0]
        and a[-1] == b[-1]
        and {k: v for k, v in a[1].items() if k not in strip}
        == {k: v for k, v in b[1].items() if k not in strip}
    )


def _normal_text(text: str) -> str:
    try:
        return render(parse(text)) or text
    except ExprError:
        return text


def _ref_text(ref: list[Any]) -> str:
    _, _, qualifier, name, fk = ref
    body = f"{fk} -> {name}" if fk else name
    return f"{qualifier}.{body}" if qualifier else body


def _syntax(text: str, exc: ExprError) -> str:
    pointer = text[: exc.position] + "⟨here⟩" + text[exc.position :]
    return f"{exc.message} (in `{pointer}`)"


def _distance(a: str, b: str) -> int:
    """A cheap closeness for suggestions: shared prefix first, then length difference."""
    common = 0
    for x, y in zip(a.lower(), b.lower(), strict=False):
        if x != y:
            break
        common += 1
    return -common * 10 + abs(len(a) - len(b))


# ---------------------------------------------------------------------------------------------
# Every question of a set of files, in the order they depend on each other.


@dataclass
class Compiled:
    """Every query-builder question of a set of files, compiled; and the problems found."""

    questions: dict[str, CompiledQuestion] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)  # identity -> question, model or metric
    errors: list[SpecError] = field(default_factory=list)


def compile_questions(
    files: list[LoadedFile], schema: Schema | Callable[[LoadedFile], Schema | None] | None
) -> Compiled:
    """Compile every `query:` of `files` (sources before the questions built on them).

    A model or question is referred to by `file-key/card-key`, or by its own key when that is unique
    among the files given. With `schema` None, only what the YAML itself says is checked.
    """
    result = Compiled()
    by_ident: dict[str, tuple[LoadedFile, Loc, Question]] = {}
    by_key: dict[str, list[str]] = {}
    for loaded in files:
        for where, question in loaded.spec.located_questions():
            ident = f"{loaded.spec.key}/{question.key}"
            by_ident[ident] = (loaded, where, question)
            by_key.setdefault(question.key, []).append(ident)
            result.types[ident] = question.type
    compiling: list[str] = []
    done: dict[str, CardSource | None] = {}

    def compile_one(ident: str) -> CardSource | None:
        if ident in done:
            return done[ident]
        loaded, where, question = by_ident[ident]
        compiling.append(ident)
        columns: list[Column] | None = None
        if question.query is not None or question.mbql is not None:

            def lookup(key: str, loc: Loc, loaded: LoadedFile = loaded) -> CardSource:
                return _lookup(key, loc, loaded)

            dashboard = loaded.spec if isinstance(loaded.spec, DashboardSpec) else None
            file_schema = schema(loaded) if callable(schema) else schema
            compiler = QuestionCompiler(loaded.locator, where, file_schema, lookup, dashboard)
            if question.query is not None:
                compiled = compiler.compile(question)
            else:
                compiled = compiler.compile_raw(question)
            result.errors += compiler.errors
            if compiled is not None:
                result.questions[ident] = compiled
                columns = compiled.columns
        compiling.pop()
        done[ident] = CardSource(ident, question.type, columns)
        return done[ident]

    def _lookup(key: str, loc: Loc, loaded: LoadedFile) -> CardSource:
        wanted = key if "/" in key else f"{loaded.spec.key}/{key}"
        if wanted not in by_ident and "/" not in key:
            found = by_key.get(key, [])
            if len(found) > 1:
                raise _Problem(
                    loc,
                    f"`{key}` is the key of several questions: {', '.join(found)}",
                    hint="write `file-key/card-key`",
                )
            if found:
                wanted = found[0]
        if wanted not in by_ident:
            raise _Problem(
                loc,
                f"no model or question `{key}` in the files given",
                hint="keys are `file-key/card-key`; give the directory so every file is read",
            )
        if wanted in compiling:
            cycle = " -> ".join([*compiling[compiling.index(wanted) :], wanted])
            raise _Problem(loc, f"questions built on each other in a circle: {cycle}")
        source = compile_one(wanted)
        assert source is not None
        return source

    for ident in by_ident:
        compile_one(ident)
    return result


def filter_fits(parameter_type: str, base_type: str) -> bool:
    """Whether a dashboard filter of this type can filter a column of this base type."""
    if base_type == "type/*" or parameter_type in ("category", "id"):
        return True
    if parameter_type.startswith(("string/", "location/")):
        return is_text(base_type)
    if parameter_type.startswith("boolean/"):
        return base_type == "type/Boolean"
    if parameter_type.startswith("number/"):
        return is_numeric(base_type)
    if parameter_type.startswith("date/"):
        return is_temporal(base_type)
    return True
