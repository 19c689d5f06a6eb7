"""Checks every question on PostgreSQL without running it: prepare and describe, nothing executed.

SQL questions: template tags are replaced by typed defaults (a field filter by `true`), once with the
optional `[[ ]]` clauses removed and once with them kept, so the SQL inside them is checked too.
Query-builder questions (and `mbql:` blocks) are compiled against the database's catalog, so an unknown
table or column and a summary or grouping that does not fit its column's type are errors at their line;
then they are written as the SQL Metabase would run (`mbql/sql.py`) and prepared like the others. The
statements are only prepared (the unnamed statement) and described inside a READ ONLY transaction that is
rolled back: nothing is written and no rows are fetched. The columns a `viz` names must be returned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import pq

from provisioner.db.catalog import PostgresSchema, base_type
from provisioner.db.connection import connect, first_line
from provisioner.errors import DatabaseError, SpecError
from provisioner.mbql.columns import Column
from provisioner.mbql.normal import NormalQuery
from provisioner.mbql.sql import NativeSource, SqlGenError, to_sql
from provisioner.redact import redact_dsn
from provisioner.spec import LoadedFile
from provisioner.spec.models import Question, Stage
from provisioner.spec.question import Compiled, CompiledQuestion, compile_questions
from provisioner.spec.sql import OPTIONAL_CLAUSE, TAG_PATTERN, ResolvedTag, resolve_tags

_LITERALS = {"dimension": "true", "text": "'x'", "number": "0", "date": "DATE '2000-01-01'"}
Loc = tuple[Any, ...]


def substitute(sql: str, tags: dict[str, ResolvedTag], *, keep_optional: bool) -> str:
    """The SQL with tags replaced by typed literals; optional clauses kept (brackets dropped) or removed."""
    sql = OPTIONAL_CLAUSE.sub((lambda m: m.group(1)) if keep_optional else "", sql)

    def literal(match: re.Match[str]) -> str:
        tag = tags.get(match.group(1))
        if tag is not None and tag.field:
            # Metabase writes a field filter as a condition on the table-qualified column, so the table
            # must be in FROM under its own name (an alias breaks it): an always-true test on the same
            # reference fails here exactly when it would fail there.
            column = ".".join(f'"{part}"' for part in tag.field.split(".")[-2:])
            return f"({column} IS NULL OR {column} IS NOT NULL)"
        return _LITERALS.get(tag.kind if tag else "text", "'x'")

    return TAG_PATTERN.sub(literal, sql).strip().rstrip(";")


@dataclass(frozen=True)
class Described:
    """The columns a statement returns (with their Metabase base types), or the error PostgreSQL gave."""

    columns: list[str]
    error: str | None
    base_types: list[str] = field(default_factory=list)


def describe(conn: psycopg.Connection, sql: str) -> Described:
    """Prepare `sql` as the unnamed statement and describe its result columns (never executes it)."""
    pgconn = conn.pgconn
    # A failed prepare aborts the transaction: a savepoint keeps the next card's check alive.
    pgconn.exec_(b"SAVEPOINT card_check")
    try:
        result = pgconn.prepare(b"", sql.encode())
        if result.status != pq.ExecStatus.COMMAND_OK:
            return Described([], _message(result))
        described = pgconn.describe_prepared(b"")
        if described.status != pq.ExecStatus.COMMAND_OK:
            return Described([], _message(described))
        names = [(described.fname(i) or b"").decode() for i in range(described.nfields)]
        types = [_base_type(conn, described.ftype(i)) for i in range(described.nfields)]
        return Described(names, None, types)
    finally:
        pgconn.exec_(b"ROLLBACK TO SAVEPOINT card_check")


def _message(result: pq.abc.PGresult) -> str:
    """PostgreSQL's message without its `ERROR:` prefix (`column "x" does not exist`)."""
    primary = result.error_field(pq.DiagnosticField.MESSAGE_PRIMARY) or result.error_message or b""
    return primary.decode(errors="replace").strip()


def _base_type(conn: psycopg.Connection, oid: int) -> str:
    info = conn.adapters.types.get(oid)
    return base_type(info.name) if info is not None else "type/*"


def _field_exists(field_name: str, schema: PostgresSchema) -> bool:
    table, _, column = field_name.rpartition(".")
    candidates = [table] if "." in table else schema.tables_named(table)
    return any(column in {c.name for c in schema.columns(t) or []} for t in candidates)


def check_sql(loaded: list[LoadedFile], dsn: str) -> list[SpecError]:
    """Problems found by PostgreSQL: SQL that does not prepare, unknown tables and columns, summaries
    and groupings that do not fit their column, viz columns absent from the result.

    Raises DatabaseError when the database cannot be reached or the connection fails during the check.
    """
    errors: list[SpecError] = []
    with connect(dsn) as conn:
        try:
            conn.read_only = True
            schema = PostgresSchema.read(conn)
            conn.rollback()
            pgconn = conn.pgconn
            pgconn.exec_(b"BEGIN TRANSACTION READ ONLY")
            try:
                compiled = compile_questions(loaded, schema)
                errors += compiled.errors
                sources = _Sources(conn, schema, loaded, compiled)
                for item in loaded:
                    errors += _check_dashboard(conn, item, schema, sources)
            finally:
                if not conn.closed:
                    pgconn.exec_(b"ROLLBACK")
        except psycopg.Error as exc:
            raise DatabaseError(
                f"checking the SQL on {redact_dsn(dsn)} failed: {first_line(exc)}",
                hint="check that the database is up and the user may read its tables and views",
            ) from exc
    return errors


class _SourceFailed(Exception):
    """A question is built on one that failed its own check (already reported): nothing more to say."""


class _Sources:
    """The questions of the files as `to_sql` asks for its sources: a query-builder question's normal
    query, or a SQL question's SQL (tags filled in) with the columns PostgreSQL describes. A source that
    does not prepare on its own raises _SourceFailed: its own check reports why, once."""

    def __init__(
        self, conn: psycopg.Connection, schema: PostgresSchema, loaded: list[LoadedFile], compiled: Compiled
    ) -> None:
        self.conn, self.schema, self.compiled = conn, schema, compiled
        self.questions = {
            f"{item.spec.key}/{question.key}": (item, question)
            for item in loaded
            for _, question in item.spec.located_questions()
        }
        self.prepared: dict[str, NormalQuery | NativeSource | None] = {}

    def compiled_question(self, item: LoadedFile, question: Question) -> CompiledQuestion | None:
        return self.compiled.questions.get(f"{item.spec.key}/{question.key}")

    def __call__(self, key: str) -> NormalQuery | NativeSource | None:
        if key not in self.questions:
            return None
        if key not in self.prepared:
            self.prepared[key] = self._prepare(key)
        found = self.prepared[key]
        if found is None:
            raise _SourceFailed(key)
        return found

    def _prepare(self, key: str) -> NormalQuery | NativeSource | None:
        item, question = self.questions[key]
        if key in self.compiled.questions:
            query = self.compiled.questions[key].query
            try:
                sql = to_sql(query, self.schema, self)
            except (SqlGenError, _SourceFailed):
                return None
            return query if describe(self.conn, sql).error is None else None
        if question.key not in item.sql:  # a query-builder question that did not compile
            return None
        sql = item.sql[question.key]
        tags = {t.name: t for t in resolve_tags(item.spec, question, sql)}
        substituted = substitute(sql, tags, keep_optional=False)
        found = describe(self.conn, substituted)
        if found.error:
            return None
        return NativeSource(
            substituted, [Column(n, t) for n, t in zip(found.columns, found.base_types, strict=True)]
        )


def _check_dashboard(
    conn: psycopg.Connection, item: LoadedFile, schema: PostgresSchema, sources: _Sources
) -> list[SpecError]:
    errors: list[SpecError] = []
    for base, card in item.spec.located_questions():
        if card.key in item.sql:
            errors += _check_native(conn, item, base, card, schema)
            continue
        compiled = sources.compiled_question(item, card)
        if compiled is not None:  # else it did not compile: its errors are reported already
            errors += _check_query(conn, item, base, card, compiled, schema, sources)
    return errors


def _check_native(
    conn: psycopg.Connection, item: LoadedFile, base: Loc, card: Question, schema: PostgresSchema
) -> list[SpecError]:
    errors: list[SpecError] = []
    sql = item.sql[card.key]
    tags = {t.name: t for t in resolve_tags(item.spec, card, sql)}
    for tag in tags.values():
        if tag.field and not _field_exists(tag.field, schema):
            errors.append(
                item.locator.error(
                    (*base, "tags", tag.name, "field"),
                    f"`{tag.field}` is not a column of any table or view in the database",
                    hint="check the names; a view's columns are listed in database/002_views.sql",
                )
            )
    where = (*base, "sql" if card.sql is not None else "sql_file")
    returned: list[str] | None = None
    for keep in (False, True):
        found = describe(conn, substitute(sql, tags, keep_optional=keep))
        if found.error:
            clause = " (inside a [[ ]] clause)" if keep else ""
            errors.append(
                item.locator.error(
                    where, f"PostgreSQL rejects the SQL{clause}: {found.error.splitlines()[0]}"
                )
            )
            break
        returned = returned or found.columns
    if returned is not None:
        hint = "name a column of the SELECT list, or alias one (AS ...)"
        errors += _viz_errors(item, base, card, returned, "the SQL", hint)
    return errors


def _check_query(
    conn: psycopg.Connection,
    item: LoadedFile,
    base: Loc,
    card: Question,
    compiled: CompiledQuestion,
    schema: PostgresSchema,
    sources: _Sources,
) -> list[SpecError]:
    where = (*base, "query" if card.query is not None else "mbql")
    try:
        sql = to_sql(compiled.query, schema, sources)
    except _SourceFailed:
        return []
    except SqlGenError as exc:
        return [item.locator.error(where, f"this query cannot be written as SQL: {exc}")]
    found = describe(conn, sql)
    if found.error:
        blamed = _blame(conn, base, card, compiled.query, schema, sources)
        what = "this filter" if "filter" in blamed else "the SQL of this query"
        problem = f"PostgreSQL rejects {what}: {found.error.splitlines()[0]}"
        hint = "check that each comparison and function gets values of the type it expects"
        return [item.locator.error(blamed or where, problem, hint=hint)]
    # The names Metabase gives the result columns; PostgreSQL's agree when they are known.
    returned = [c.name for c in compiled.columns] if compiled.columns is not None else found.columns
    hint = (
        "summaries are named count, sum, avg ... (sum_2 for a second sum), a grouped column keeps its "
        "name, a joined column is `Alias__column`"
    )
    return _viz_errors(item, base, card, returned, "the query", hint)


def _blame(
    conn: psycopg.Connection,
    base: Loc,
    card: Question,
    query: NormalQuery,
    schema: PostgresSchema,
    sources: _Sources,
) -> Loc:
    """Where a query PostgreSQL rejects goes wrong: the first step that does not prepare, and in it the
    filter without which it does (or () when the query is an `mbql:` block)."""
    if card.query is None:
        return ()
    stages, steps = query["stages"], card.stages
    for index, stage in enumerate(stages):
        if _prepares(conn, stages[: index + 1], schema, sources):
            continue
        step: Loc = (*base, "query") if isinstance(card.query, Stage) else (*base, "query", index)
        filters = stage.get("filters") or []
        if len(filters) != len(steps[index].filters):  # an `and` was split: no one filter to point at
            return step
        for number in range(len(filters)):
            without = {**stage, "filters": filters[:number] + filters[number + 1 :]}
            if _prepares(conn, [*stages[:index], without], schema, sources):
                listed = isinstance(steps[index].filter, list)
                return (*step, "filter", number) if listed else (*step, "filter")
        return step
    return (*base, "query")


def _prepares(conn: psycopg.Connection, stages: list[Any], schema: PostgresSchema, sources: _Sources) -> bool:
    try:
        return describe(conn, to_sql({"stages": stages}, schema, sources)).error is None
    except (SqlGenError, _SourceFailed):
        return False


def _viz_errors(
    item: LoadedFile, base: Loc, card: Question, returned: list[str], what: str, hint: str
) -> list[SpecError]:
    return [
        item.locator.error(
            (*base, "viz", viz_key),
            f"column `{column}` is not returned by {what} (it returns: {', '.join(returned)})",
            hint=hint,
        )
        for viz_key, column in card.viz.columns()
        if column not in returned
    ]


# Metabase's row limits for a question run in its UI: 2,000 rows unsummarized (a SQL question counts as
# that), 10,000 summarized (its `max-results-bare-rows` and `max-results`).
BARE_ROWS_LIMIT = 2_000
SUMMARIZED_ROWS_LIMIT = 10_000


@dataclass(frozen=True)
class CardSql:
    """A question of the files as the SQL Metabase would run for it, without dashboard filters."""

    key: str  # `file-key/question-key`
    name: str
    type: str  # question, model or metric
    sql: str
    row_limit: int  # the rows Metabase's UI fetches at most


def questions_sql(loaded: list[LoadedFile], conn: psycopg.Connection) -> list[CardSql]:
    """The SQL of every question of `loaded` that compiles on the database of `conn` (models included): a
    query-builder question as `mbql/sql.py` writes it, a SQL question with its tags' defaults and without
    its optional clauses. For timing questions on real data; `check_sql` reports the ones left out.

    Raises psycopg.Error when the catalog cannot be read.
    """
    schema = PostgresSchema.read(conn)
    compiled = compile_questions(loaded, schema)
    sources = _Sources(conn, schema, loaded, compiled)
    found: list[CardSql] = []
    for item in loaded:
        for _, question in item.spec.located_questions():
            key = f"{item.spec.key}/{question.key}"
            try:
                source = sources(key)
            except _SourceFailed:
                continue
            if isinstance(source, NativeSource):
                found.append(CardSql(key, question.name, question.type, source.sql, BARE_ROWS_LIMIT))
            elif source is not None:
                last = source["stages"][-1]
                summarized = bool(last.get("aggregation") or last.get("breakout"))
                limit = SUMMARIZED_ROWS_LIMIT if summarized else BARE_ROWS_LIMIT
                sql = to_sql(source, schema, sources)
                found.append(CardSql(key, question.name, question.type, sql, limit))
    return found
