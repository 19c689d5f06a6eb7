"""`provision metabase check`: the points of Metabase's API the tool relies on, checked on this Metabase.

The tool is tested against a fake Metabase and the versions CI runs; a user's own Metabase may differ (a
patch release, a plugin, a proxy). Before anything is applied there, the probe writes a scratch
collection and two scratch cards exactly as apply writes them: the cards are questions of a YAML file
built in memory, so the identity mark, the template tags, the legacy MBQL and the CardCreate body all
come from the code apply runs. It reads each card back the way plan reads it, runs it, and archives
everything at the end, also when a check or a write fails. Each point is a check, passed or failed; a
failure names the field Metabase changed, with what was written and what came back.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from provisioner.apply import new_card_body
from provisioner.compare import Reader, card_differences, query_differences, tag_canon
from provisioner.desired import DesiredCard, desired_state
from provisioner.errors import (
    ConfigError,
    MetabaseError,
    MetabaseNotFound,
    MetabaseUnreachable,
    ProbeFailed,
)
from provisioner.identity import KEY_SETTING, identity_of
from provisioner.metabase.client import MetabaseClient
from provisioner.metabase.models import (
    Card,
    CardUpdate,
    CollectionCreate,
    CollectionUpdate,
    Database,
    DatabaseMetadata,
    FieldMetadata,
    QueryParameter,
    TableMetadata,
    TemplateTag,
)
from provisioner.progress import NullProgress, Progress
from provisioner.spec import LoadedFile, Locator
from provisioner.spec.models import QuestionsSpec
from provisioner.translate import MetadataSchema

if TYPE_CHECKING:
    from provisioner.config import Settings

PROBE_KEY = "provisioner-probe"  # the file key of the scratch cards: their marks read `provisioner-probe/...`
SQL_CARD = "sql"
QUERY_CARD = "query"
FILTER_TAG = "probe_filter"
FILTER_VALUE = "provisioner probe"  # a value no row holds: the filtered count must be 0
COLLECTION_PREFIX = "provisioner probe"
COLLECTION_DESCRIPTION = (
    "Scratch objects of `provision metabase check` (metabase-provisioner), archived when it ends. "
    "Safe to delete."
)
# Names the probe can write unquoted in the YAML (`table.column`) and, lower case, in SQL.
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LOWER_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
_PATH_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_TEXT_TYPES = frozenset({"type/Text"})
_KEY_COLUMNS = frozenset({"type/PK", "type/FK"})

Now = Callable[[], datetime]


class Difference(BaseModel):
    """One value Metabase changed: where (a path in what the tool reads), what was written, what came back."""

    path: str
    expected: Any = None
    got: Any = None
    missing: Literal["expected", "got"] | None = None  # "got": Metabase dropped it; "expected": it added it

    def describe(self) -> str:
        expected = "(missing)" if self.missing == "expected" else _shown(self.expected)
        got = "(missing)" if self.missing == "got" else _shown(self.got)
        return f"{self.path}: expected {expected}, got {got}"


class ProbeCheck(BaseModel):
    """One point of the API contract: whether this Metabase kept it, what was seen, the fix to try."""

    name: str
    ok: bool
    detail: str
    hint: str | None = None
    differences: list[Difference] = Field(default_factory=list)

    def lines(self) -> list[str]:
        """The check for people: a PASS/FAIL line, each difference, the fix."""
        out = [f"{'PASS' if self.ok else 'FAIL'}  {self.name}: {self.detail}"]
        out += [f"      {d.describe()}" for d in self.differences]
        if not self.ok and self.hint:
            out.append(f"      fix: {self.hint}")
        return out


class ProbeCard(BaseModel):
    """A scratch card the probe wrote (id None when Metabase's answer to the POST never came)."""

    key: str
    name: str
    id: int | None = None


class ProbeResult(BaseModel):
    """Every check of one probe run, what it wrote, and whether anything it wrote is still live."""

    metabase_url: str
    version: str
    database: str
    database_id: int
    table: str
    column: str
    collection: str
    collection_id: int | None = None
    cards: list[ProbeCard] = Field(default_factory=list)
    checks: list[ProbeCheck] = Field(default_factory=list)
    left_live: list[str] = Field(default_factory=list)  # scratch objects the cleanup could not archive

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    @property
    def failed(self) -> list[ProbeCheck]:
        return [check for check in self.checks if not check.ok]

    def summary(self) -> str:
        """One line: how many checks passed, on what."""
        where = f"Metabase {self.version}, database {self.database!r}, {self.table}.{self.column}"
        if self.ok:
            return f"all {len(self.checks)} checks passed ({where}); scratch objects archived"
        names = ", ".join(check.name for check in self.failed)
        return f"{len(self.failed)} of {len(self.checks)} checks failed: {names} ({where})"

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **self.model_dump(mode="json")}

    def describe(self) -> str:
        """The result for people: every check, then the summary."""
        lines = [line for check in self.checks for line in check.lines()]
        lines.append(("All checks passed: " if self.ok else "") + self.summary())
        return "\n".join(lines)

    def failure(self) -> ProbeFailed:
        """The error `check` raises when a check failed: the failed checks, and the first one's fix."""
        failed = self.failed
        lines = [line for check in failed for line in check.lines() if not line.lstrip().startswith("fix:")]
        return ProbeFailed(
            f"this Metabase ({self.version}) changed, refused or could not run what the tool writes: "
            f"{len(failed)} of {len(self.checks)} checks failed\n" + "\n".join(lines),
            hint=next((c.hint for c in failed if c.hint), None),
            report=self.to_dict(),
        )


# --- what the probe writes ---------------------------------------------------------------------


class ProbeTarget(BaseModel):
    """The database, table and text column the scratch cards read."""

    database: Database
    metadata: DatabaseMetadata
    table: TableMetadata
    column: FieldMetadata


def choose_target(client: MetabaseClient, database: str | None) -> ProbeTarget:
    """The database named (else the first one besides the Sample Database), a table and a text column of it.

    Raises ConfigError (no database of that name), MetabaseNotFound (no database, or no table the probe can
    read); nothing has been written then.
    """
    databases = client.list_databases()
    if database is not None:
        found = next((d for d in databases if d.name == database), None)
        if found is None:
            names = ", ".join(repr(d.name) for d in databases) or "none"
            raise ConfigError(
                f"Metabase has no database named {database!r}",
                hint=f"name one of Metabase's databases with --database: {names}",
            )
    else:
        usable = sorted((d for d in databases if not d.is_sample and not d.is_audit), key=lambda d: d.id)
        if not usable:
            raise MetabaseNotFound(
                "Metabase has no database besides the Sample Database: the probe needs one to read",
                hint="run `provision metabase connect`, or register your database in Metabase",
            )
        found = usable[0]
    metadata = client.database_metadata(found.id)
    for table in sorted(
        metadata.tables, key=lambda t: (t.schema_name != "public", t.schema_name or "", t.name)
    ):
        if not table.active or not _IDENTIFIER.match(table.name):
            continue
        if table.schema_name and not _IDENTIFIER.match(table.schema_name):
            continue
        for column in table.fields:
            kind = column.effective_type or column.base_type
            if (
                kind in _TEXT_TYPES
                and column.semantic_type not in _KEY_COLUMNS
                and _IDENTIFIER.match(column.name)
            ):
                return ProbeTarget(database=found, metadata=metadata, table=table, column=column)
    raise MetabaseNotFound(
        f"database {found.name!r} has no synced table with a text column for the probe to filter on",
        hint="name another database with --database, or let Metabase sync this one "
        "(`provision metabase connect`)",
    )


def _sql_name(name: str) -> str:
    return name if _LOWER_IDENTIFIER.match(name) else '"' + name.replace('"', '""') + '"'


def probe_file(collection: str, target: ProbeTarget) -> LoadedFile:
    """The YAML file of the two scratch questions, validated as `dashboards/*.yaml` files are."""
    schema = MetadataSchema(target.metadata)
    table = schema.canonical_table(target.table.qualified_name) or target.table.qualified_name
    column = target.column.name
    from_sql = ".".join(_sql_name(p) for p in (target.table.schema_name, target.table.name) if p)
    sql = f"SELECT count(*) AS n FROM {from_sql} WHERE {{{{{FILTER_TAG}}}}}"
    spec = QuestionsSpec.model_validate(
        {
            "key": PROBE_KEY,
            "collection": collection,
            "database": target.database.name,
            "questions": [
                {
                    "key": SQL_CARD,
                    "name": "provisioner probe: SQL with a field filter",
                    "display": "scalar",
                    "sql": sql,
                    "tags": {FILTER_TAG: {"field": f"{table}.{column}", "label": "Probe filter"}},
                    "viz": {"y": "n"},
                },
                {
                    "key": QUERY_CARD,
                    "name": "provisioner probe: query builder",
                    "display": "bar",
                    "query": {
                        "source": table,
                        "filter": f"`{column}` is not null",
                        "summarize": ["count"],
                        "group_by": [f"`{column}`"],
                    },
                    "viz": {"x": column, "y": ["count"]},
                },
            ],
        }
    )
    loaded = LoadedFile(Path(f"<{PROBE_KEY}>"), spec, Locator(Path(f"<{PROBE_KEY}>")))
    loaded.sql[SQL_CARD] = sql
    return loaded


def _desired_cards(loaded: LoadedFile, target: ProbeTarget) -> list[DesiredCard]:
    """The scratch cards as apply would write them; raises ConfigError if the table cannot hold them."""
    state = desired_state([loaded], {PROBE_KEY: target.database.id}, {target.database.id: target.metadata})
    if state.errors:
        raise ConfigError(
            f"the probe cannot build its cards on {target.table.qualified_name}.{target.column.name}: "
            + "; ".join(f"{e.field}: {e.problem}" for e in state.errors),
            hint="name another database with --database",
        )
    return state.cards


# --- comparing what came back -----------------------------------------------------------------


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 300 else text[:299] + "…"


def _child(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    key = str(key)
    return f"{path}.{key}" if _PATH_KEY.match(key) else f"{path}[{_shown(key)}]"


def differences(path: str, expected: Any, got: Any) -> list[Difference]:
    """Every leaf where `got` differs from `expected`, by path (`template-tags.x.widget-type`)."""
    if isinstance(expected, dict) and isinstance(got, dict):
        out: list[Difference] = []
        for key in [*expected, *(k for k in got if k not in expected)]:
            where = _child(path, key)
            if key not in got:
                out.append(Difference(path=where, expected=expected[key], missing="got"))
            elif key not in expected:
                out.append(Difference(path=where, got=got[key], missing="expected"))
            else:
                out += differences(where, expected[key], got[key])
        return out
    if isinstance(expected, list) and isinstance(got, list) and len(expected) == len(got):
        return [
            d
            for i, (a, b) in enumerate(zip(expected, got, strict=True))
            for d in differences(_child(path, i), a, b)
        ]
    return [] if expected == got else [Difference(path=path, expected=expected, got=got)]


def _check(name: str, found: list[Difference], passed: str, failed: str, hint: str) -> ProbeCheck:
    if not found:
        return ProbeCheck(name=name, ok=True, detail=passed)
    return ProbeCheck(name=name, ok=False, detail=failed, hint=hint, differences=found)


def check_mark(label: str, desired: DesiredCard, card: Card) -> ProbeCheck:
    """The identity mark is where plan reads it: `visualization_settings` of GET /api/card/:id."""
    got = identity_of(card)
    path = f'visualization_settings["{KEY_SETTING}"]'
    found: list[Difference] = []
    if got != desired.ident:
        missing: Literal["got"] | None = "got" if got is None else None
        found.append(Difference(path=path, expected=desired.ident, got=got, missing=missing))
    return _check(
        f"{label} mark",
        found,
        f"the identity mark {desired.ident!r} came back where plan reads it",
        "Metabase did not keep the identity mark the tool finds its cards by",
        "do not apply to this Metabase: plan could not recognise the cards apply writes (each apply would "
        "create them again); report this with the Metabase version",
    )


def check_template_tags(label: str, desired: DesiredCard, card: Card) -> ProbeCheck:
    """The field filter came back as written: name, type dimension, widget type, field id, label."""
    name = f"{label} template tags"
    try:
        got = {key: tag_canon(tag) for key, tag in card.template_tags.items()}
    except MetabaseError as exc:
        return ProbeCheck(name=name, ok=False, detail=exc.message, hint=exc.hint)
    expected = {key: tag_canon(tag) for key, tag in desired.template_tags.items()}
    tag = desired.template_tags[FILTER_TAG]
    return _check(
        name,
        differences("template-tags", expected, got),
        f"the field filter {{{{{FILTER_TAG}}}}} came back as written "
        f"(dimension on field {tag.dimension_field_id}, widget {tag.widget_type})",
        "Metabase changed the template tags the tool wrote",
        "every apply of a SQL card with variables would report `differs after apply: template_tags` "
        "and every plan would show a change; report this with the Metabase version",
    )


def check_query(label: str, desired: DesiredCard, card: Card, reader: Reader) -> ProbeCheck:
    """The query-builder query reads back, in the tool's normal form, as the one written."""
    assert desired.query is not None
    got = reader.query(card)
    clauses = query_differences(desired.query, got)
    found = differences("query", desired.query, got) if clauses else []
    return _check(
        f"{label} query",
        found,
        "the filter, summary and grouping came back as written (compared in the tool's normal form)",
        f"Metabase changed the query the tool wrote ({', '.join(clauses)})",
        f"apply would report `differs after apply: {clauses[0] if clauses else 'query'}` and every plan "
        "would show a change; report this with the Metabase version",
    )


_COVERED = frozenset({"template_tags", "visualization_settings"})


def check_read_back(
    label: str, desired: DesiredCard, card: Card, reader: Reader, collection_id: int
) -> ProbeCheck:
    """Everything else plan compares (name, display, settings, collection, ...) is as written."""
    names = [
        n
        for n in card_differences(desired, card, collection_id, reader)
        if n not in _COVERED and not n.startswith("query")
    ]
    plain: dict[str, tuple[Any, Any]] = {
        "name": (desired.name, card.name),
        "description": (desired.description, card.description),
        "display": (desired.display, card.display),
        "type": (desired.type, card.type),
        "sql": (desired.sql, card.native_sql),
        "collection": (collection_id, card.collection_id),
        "archived": (False, card.archived),
        "database": (desired.database_id, card.database_id),
        "dashboard": (None, card.dashboard_id),
    }
    found = [Difference(path=n, expected=plain[n][0], got=plain[n][1]) for n in names if n in plain]
    found += [Difference(path=n, expected="(as written)", got="(changed)") for n in names if n not in plain]
    # The settings besides the mark (the mark has its own check).
    found += [
        d
        for d in differences(
            "visualization_settings", desired.visualization_settings, card.visualization_settings
        )
        if d.path != f'visualization_settings["{KEY_SETTING}"]'
    ]
    return _check(
        f"{label} read back",
        found,
        "name, display, visualization settings and collection came back as written",
        "Metabase changed fields of the card that plan compares",
        "every plan would show these fields changed right after an apply; report this with the Metabase "
        "version",
    )


def check_runs(label: str, client: MetabaseClient, card_id: int) -> ProbeCheck:
    """POST /api/card/:id/query completes, as apply runs each card it changed (HTTP 202 either way)."""
    answer = client.run_card(card_id)
    if answer.ok:
        return ProbeCheck(name=f"{label} runs", ok=True, detail=f"ran and returned {answer.row_count} row(s)")
    return _not_run(f"{label} runs", answer.error or answer.status)


def check_filter_runs(label: str, client: MetabaseClient, card_id: int, tag: TemplateTag) -> ProbeCheck:
    """The SQL card runs with its field filter set to a value no row has, and counts 0 rows: the filter
    reached the field its tag names (as a dashboard filter wired to the tag would)."""
    name = f"{label} runs filtered"
    value = QueryParameter(
        type=tag.widget_type or "category",
        target=["dimension", ["template-tag", tag.name]],
        value=[FILTER_VALUE],
    )
    answer = client.run_card(card_id, [value])
    if not answer.ok:
        return _not_run(name, answer.error or answer.status)
    rows = answer.data.rows
    count = rows[0][0] if rows and rows[0] else None
    if count == 0:
        return ProbeCheck(
            name=name, ok=True, detail=f"{{{{{tag.name}}}}} = {FILTER_VALUE!r} counted 0 rows, as it should"
        )
    return ProbeCheck(
        name=name,
        ok=False,
        detail=f"with {{{{{tag.name}}}}} = {FILTER_VALUE!r} the card did not count 0 rows: the field filter "
        "did not filter",
        hint="dashboard filters wired to SQL field filters would not filter on this Metabase; report this "
        "with the Metabase version",
        differences=[Difference(path="data.rows[0][0]", expected=0, got=count)],
    )


def _not_run(name: str, error: str | None) -> ProbeCheck:
    said = (error or "failed").strip().splitlines() or ["failed"]
    return ProbeCheck(
        name=name,
        ok=False,
        detail=f"Metabase could not run the card: {said[0][:300]}",
        hint="check that Metabase's connection to this database may read the table (the same error would "
        "hit apply's run of each card it changes)",
    )


# --- the run -----------------------------------------------------------------------------------


class _Run:
    """One probe: records checks (reporting each as it is made) and what must be archived."""

    def __init__(self, client: MetabaseClient, result: ProbeResult, progress: Progress) -> None:
        self.client, self.result, self.progress = client, result, progress
        self.stopped = False  # Metabase stopped answering: nothing more is tried but the cleanup

    def add(self, check: ProbeCheck) -> None:
        self.result.checks.append(check)
        for line in check.lines():
            self.progress.info(line)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """A write or read whose refusal is a failed check named `name` (and stops this card's checks)."""
        try:
            yield
        except MetabaseError as exc:
            self.add(ProbeCheck(name=name, ok=False, detail=exc.message, hint=exc.hint))
            self.stopped = isinstance(exc, MetabaseUnreachable)
            raise _StepFailed from exc


class _StepFailed(Exception):
    """A step failed and was recorded as a check."""


def _probe_card(run: _Run, desired: DesiredCard, reader: Reader, collection_id: int) -> None:
    label = "sql card" if desired.query is None else "query card"
    client = run.client
    written = ProbeCard(key=desired.ident, name=desired.name)
    run.result.cards.append(written)
    with run.step(f"{label} saved"):
        made = client.create_card(new_card_body(desired, reader, collection_id))
    written.id = made.id
    reader.card_keys[made.id] = desired.ident
    run.add(ProbeCheck(name=f"{label} saved", ok=True, detail=f"POST /api/card accepted it (id {made.id})"))
    with run.step(f"{label} read"):
        card = client.get_card(made.id)
    run.add(check_mark(label, desired, card))
    if desired.query is None:
        run.add(check_template_tags(label, desired, card))
    else:
        run.add(check_query(label, desired, card, reader))
    run.add(check_read_back(label, desired, card, reader, collection_id))
    with run.step(f"{label} runs"):
        run.add(check_runs(label, client, made.id))
    if desired.query is None:
        with run.step(f"{label} runs filtered"):
            run.add(check_filter_runs(label, client, made.id, desired.template_tags[FILTER_TAG]))


def _cleanup(run: _Run, metabase_url: str) -> None:
    """Archive the scratch cards, then their collection (which archives whatever is in it)."""
    client, result = run.client, run.result
    problems: list[str] = []
    live_cards: list[str] = []
    for card in result.cards:
        if card.id is None:
            continue
        try:
            client.update_card(card.id, CardUpdate(archived=True))
        except MetabaseError as exc:
            problems.append(exc.message)
            live_cards.append(f"card {card.name!r} (id {card.id})")
    if result.collection_id is None:
        result.left_live = live_cards
    else:
        try:
            client.update_collection(result.collection_id, CollectionUpdate(archived=True))
            result.left_live = []  # archiving a collection archives the cards in it
        except MetabaseError as exc:
            problems.append(exc.message)
            result.left_live = [f"collection {result.collection!r} (id {result.collection_id})", *live_cards]
    if not result.left_live:
        what = (
            f"collection {result.collection!r}" if result.collection_id is not None else "nothing to archive"
        )
        count = sum(card.id is not None for card in result.cards)
        run.add(ProbeCheck(name="cleanup", ok=True, detail=f"archived {what} and {count} card(s) in it"))
        return
    where = f"{metabase_url.rstrip('/')}/collection/{result.collection_id}" if result.collection_id else None
    run.add(
        ProbeCheck(
            name="cleanup",
            ok=False,
            detail=f"could not archive {', '.join(result.left_live)}: {problems[0]}",
            hint="archive them by hand (move to Trash)" + (f": {where}" if where else ""),
        )
    )


def probe_client(
    client: MetabaseClient,
    *,
    metabase_url: str,
    version: str,
    database: str | None = None,
    progress: Progress | None = None,
    now: Now = lambda: datetime.now(UTC),
) -> ProbeResult:
    """Every check on the Metabase `client` talks to; failed checks are in the result, never raised.

    Raises ConfigError or MetabaseNotFound (no database or table to probe) and MetabaseError (the
    metadata cannot be read) before anything is written. What is written is archived before it returns.
    """
    progress = progress or NullProgress()
    target = choose_target(client, database)
    collection = f"{COLLECTION_PREFIX} {now():%Y-%m-%d %H:%M:%S} UTC"
    cards = _desired_cards(probe_file(collection, target), target)
    reader = Reader(schemas={target.database.id: MetadataSchema(target.metadata)})
    result = ProbeResult(
        metabase_url=metabase_url,
        version=version,
        database=target.database.name,
        database_id=target.database.id,
        table=target.table.qualified_name,
        column=target.column.name,
        collection=collection,
    )
    run = _Run(client, result, progress)
    progress.step(
        f"Probing Metabase {version}: scratch cards on {target.database.name!r} "
        f"{target.table.qualified_name}.{target.column.name}, in collection {collection!r}"
    )
    try:
        with run.step("collection created"):
            made = client.create_collection(
                CollectionCreate(name=collection, description=COLLECTION_DESCRIPTION)
            )
        assert isinstance(made.id, int)
        result.collection_id = made.id
        run.add(ProbeCheck(name="collection created", ok=True, detail=f"{collection!r} (id {made.id})"))
        for card in cards:
            if run.stopped:
                break
            try:
                _probe_card(run, card, reader, made.id)
            except _StepFailed:
                continue
    except _StepFailed:
        pass
    finally:
        _cleanup(run, metabase_url)
    return result


def run_probe(
    settings: Settings,
    *,
    database: str | None = None,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
    now: Now = lambda: datetime.now(UTC),
) -> ProbeResult:
    """Log in (no API key is created) and probe; failed checks are in the result.

    Raises MetabaseUnreachable, MetabaseAuthError, MetabaseVersionError, and what `probe_client` raises.
    """
    from provisioner.metabase.setup import open_client

    progress = progress or NullProgress()
    # read_only only means: log in without creating the tool's API key (a check leaves no key behind).
    authed = open_client(settings, progress=progress, clock=clock, read_only=True)
    try:
        return probe_client(
            authed.client,
            metabase_url=settings.metabase_url,
            version=authed.version,
            database=database,
            progress=progress,
            now=now,
        )
    finally:
        authed.client.close()


def check(
    settings: Settings,
    *,
    database: str | None = None,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
    now: Now = lambda: datetime.now(UTC),
) -> ProbeResult:
    """`provision metabase check`: the probe's result when every check passed; raises ProbeFailed otherwise
    (exit 4, with every check), and what `run_probe` raises."""
    result = run_probe(settings, database=database, progress=progress, clock=clock, now=now)
    if not result.ok:
        raise result.failure()
    return result
