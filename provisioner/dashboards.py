"""The dashboards core the CLI and `demo` call: validate, plan, apply, export, schema.

Plan and apply share one path: apply computes the same plan, then executes its actions.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioner import sqlcheck
from provisioner.apply import ApplyResult, execute
from provisioner.compare import Reader
from provisioner.desired import desired_state
from provisioner.errors import EnvironmentProblem, SpecErrors
from provisioner.export import ExportResult, export_dashboards
from provisioner.id_cache import IdCache
from provisioner.observe import ActualState, Wanted, observe, resolve_databases
from provisioner.plan import Plan, build_plan
from provisioner.progress import NullProgress, Progress
from provisioner.spec import LoadedFile, json_schema, load_paths
from provisioner.spec.models import DashboardSpec
from provisioner.translate import MetadataSchema

if TYPE_CHECKING:
    from provisioner.config import Settings
    from provisioner.metabase.client import MetabaseClient
    from provisioner.metabase.models import DatabaseMetadata

DEFAULT_DIR = Path("dashboards")
EXPORT_DIR = Path("exported")  # never straight into dashboards/: an export is reviewed before it is applied


def schema() -> dict[str, Any]:
    """The JSON Schema of dashboard files (what `dashboards/schema.json` holds)."""
    return json_schema()


@dataclass
class ValidateResult:
    """Dashboards that passed, and whether their SQL was checked on PostgreSQL."""

    dashboards: list[dict[str, Any]] = field(default_factory=list)
    sql_checked: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"ok": True, "sql_checked": self.sql_checked, "dashboards": self.dashboards}

    def describe(self) -> str:
        checked = " (SQL prepared on PostgreSQL)" if self.sql_checked else ""
        lines = [f"ok {d['path']}: {d['name']} ({d['cards']} cards){checked}" for d in self.dashboards]
        lines.append(f"{len(self.dashboards)} dashboard(s) valid")
        return "\n".join(lines)


def validate(
    paths: Sequence[Path],
    *,
    database_url: str | None = None,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> ValidateResult:
    """Every dashboard file checked offline (and its SQL on PostgreSQL with `database_url`).

    Raises SpecErrors listing every problem of every file at once; DatabaseError if the database
    cannot be reached.
    """
    progress = progress or NullProgress()
    progress.step(f"Validating {', '.join(str(p) for p in paths)}")
    loaded = load_paths(paths, environ)
    result = ValidateResult(
        dashboards=[
            {
                "path": str(d.path),
                "key": d.spec.key,
                "name": d.spec.name if isinstance(d.spec, DashboardSpec) else d.spec.collection,
                "cards": len(d.spec.all_questions()),
            }
            for d in loaded
        ]
    )
    if database_url:
        progress.step("Preparing every card's SQL on PostgreSQL (read only, nothing executed)")
        errors = sqlcheck.check_sql(loaded, database_url)
        if errors:
            raise SpecErrors(sorted(errors, key=lambda e: (str(e.path), e.line, e.column)))
        result.sql_checked = True
    return result


@contextmanager
def _metabase(
    settings: Settings, client: MetabaseClient | None, progress: Progress, *, read_only: bool = False
) -> Iterator[MetabaseClient]:
    if client is not None:
        yield client
        return
    from provisioner.metabase.setup import open_client

    opened = open_client(settings, progress=progress, read_only=read_only).client
    try:
        yield opened
    finally:
        opened.close()


@dataclass
class _Computed:
    """A plan and what computing it read: each database's schema and the managed cards' keys."""

    plan: Plan
    reader: Reader


def _compute_plan(
    client: MetabaseClient,
    loaded: list[LoadedFile],
    *,
    prune: bool,
    cache: IdCache | None = None,
    metabase_url: str = "",
    databases: Sequence[DatabaseMetadata] = (),
    prune_scope: set[str] | None = None,
) -> _Computed:
    start = client.request_count
    database_ids, metadata = resolve_databases(client, loaded, known=databases)
    state = desired_state(loaded, database_ids, metadata)
    if state.errors:
        raise SpecErrors(sorted(state.errors, key=lambda e: (str(e.path), e.line, e.column)))
    on_dashboards = {d.card_ident for dash in state.dashboards for d in dash.dashcards if d.card_ident}
    wanted = Wanted(
        dashboards=state.dashboards,
        standalone_cards=[c.ident for c in state.cards if c.ident not in on_dashboards],
        collection_paths=[item.spec.collection_path for item in loaded],
    )
    reader = Reader(schemas={db_id: MetadataSchema(m) for db_id, m in metadata.items()})
    # Pruning must see everything that left the YAML: never through the remembered ids.
    remembered = cache is not None and not prune
    actual = observe(
        client,
        wanted,
        cache.dashboards(metabase_url) if cache is not None and remembered else None,
        cache.cards(metabase_url) if cache is not None and remembered else None,
    )

    def plan_from(actual: ActualState) -> Plan:
        reader.card_keys = {card.id: ident for ident, card in actual.cards.items()}
        return build_plan(state.dashboards, state.cards, actual, reader, prune=prune, prune_scope=prune_scope)

    computed = plan_from(actual)
    if not actual.complete and any(a.action == "create" for a in computed.actions):
        # What the shortcut did not find may exist elsewhere (left by an interrupted run): look.
        computed = plan_from(observe(client, wanted))
    computed.requests = client.request_count - start
    return _Computed(computed, reader)


def _prune_scope(
    paths: Sequence[Path], loaded: list[LoadedFile], prune: bool, progress: Progress
) -> set[str] | None:
    """What `--prune` may archive: everything under the YAML's collections when given a directory
    (a dashboard gone from it is pruned), only the given dashboards' own cards when given files."""
    if not prune or any(p.is_dir() for p in paths):
        return None
    progress.info(
        "--prune with files archives only cards removed from these dashboards; "
        "give the directory to also archive dashboards removed from it"
    )
    return {item.spec.key for item in loaded if not item.dependency}


def plan(
    settings: Settings,
    paths: Sequence[Path] = (DEFAULT_DIR,),
    *,
    prune: bool = False,
    progress: Progress | None = None,
    client: MetabaseClient | None = None,
    environ: Mapping[str, str] | None = None,
) -> Plan:
    """What `apply` would change, per object; reads Metabase, writes nothing.

    Raises SpecErrors (invalid files, unknown table.column in Metabase), MetabaseError.
    """
    progress = progress or NullProgress()
    loaded = load_paths(paths, environ)
    with _metabase(settings, client, progress, read_only=True) as mb:
        progress.step(f"Reading Metabase for {len(loaded)} file(s)")
        computed = _compute_plan(
            mb,
            loaded,
            prune=prune,
            cache=IdCache.of(settings.home),
            metabase_url=settings.metabase_url,
            prune_scope=_prune_scope(paths, loaded, prune, progress),
        )
    return computed.plan


def apply(
    settings: Settings,
    paths: Sequence[Path] = (DEFAULT_DIR,),
    *,
    prune: bool = False,
    progress: Progress | None = None,
    client: MetabaseClient | None = None,
    environ: Mapping[str, str] | None = None,
    run_cards: bool = True,
    databases: Sequence[DatabaseMetadata] = (),
) -> ApplyResult:
    """Create or update collections, cards and dashboards (archive removed ones with `prune`).

    `databases` is metadata the caller has just read (the demo's connect step), used instead of
    reading it again. Re-running after a failure converges. Raises SpecErrors, MetabaseError.
    """
    progress = progress or NullProgress()
    loaded = load_paths(paths, environ)
    cache = IdCache.of(settings.home)
    with _metabase(settings, client, progress) as mb:
        start = mb.request_count
        progress.step(f"Planning {len(loaded)} file(s)")
        computed = _compute_plan(
            mb,
            loaded,
            prune=prune,
            cache=cache,
            metabase_url=settings.metabase_url,
            databases=databases,
            prune_scope=_prune_scope(paths, loaded, prune, progress),
        )
        progress.step("Applying" if computed.plan.has_changes else "Nothing to change")
        result = execute(
            computed.plan,
            mb,
            computed.reader,
            metabase_url=settings.metabase_url,
            progress=progress,
            run_cards=run_cards,
        )
        result.requests = mb.request_count - start
    dashboards = [o for o in result.outcomes if o.kind == "dashboard"]
    standalone = {a.key for a in computed.plan.actions if a.kind == "card" and _standalone(a)}
    cards = [o for o in result.outcomes if o.kind == "card" and o.key in standalone]
    try:
        cache.remember(
            settings.metabase_url,
            {o.key: o.id for o in dashboards if o.action != "archived" and o.id is not None},
            forgotten={o.key for o in dashboards if o.action == "archived"},
            cards={o.key: o.id for o in cards if o.action != "archived" and o.id is not None},
            forgotten_cards={o.key for o in result.outcomes if o.kind == "card" and o.action == "archived"},
        )
    except (OSError, EnvironmentProblem) as exc:  # a read-only checkout: only the shortcut is lost
        reason = exc.message if isinstance(exc, EnvironmentProblem) else exc.strerror or exc
        progress.warn(f"cannot write {cache.path} ({reason}); the next run reads every collection")
    for problem in result.verify_problems:
        progress.warn(problem)
    for failed in result.failed_queries:
        progress.warn(f"card {failed.name!r} fails in Metabase: {failed.error}")
    return result


def _standalone(action: Any) -> bool:
    """A card kept in a collection on no dashboard of the YAML (remembered to be read by id)."""
    card = action.desired
    return card is not None and not card.on_dashboard


def export(
    settings: Settings,
    dashboards: Sequence[str],
    *,
    out_dir: Path = EXPORT_DIR,
    force: bool = False,
    progress: Progress | None = None,
    client: MetabaseClient | None = None,
) -> ExportResult:
    """Write existing dashboards (by exact name or id) as YAML in `out_dir`.

    Raises MetabaseNotFound, MetabaseError, ConfigError (`out_dir` cannot be written, or the export would
    overwrite a file or a key there without `force`).
    """
    progress = progress or NullProgress()
    with _metabase(settings, client, progress, read_only=True) as mb:
        return export_dashboards(mb, dashboards, out_dir=out_dir, force=force, progress=progress)
