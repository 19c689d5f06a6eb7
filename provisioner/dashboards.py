"""The dashboards core the CLI and `demo` call: validate, plan, apply, export, schema.

Plan and apply share one path: apply computes the same plan, then executes its actions.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioner import plan_file
from provisioner.apply import ApplyResult, execute
from provisioner.apply_lock import ApplyLock, remove_abandoned
from provisioner.backup import RestoreResult, new_backup_dir, start_backup
from provisioner.backup import restore as restore_backup
from provisioner.compare import Reader
from provisioner.desired import desired_state
from provisioner.errors import ConfigError, EnvironmentProblem, SpecErrors
from provisioner.id_cache import IdCache
from provisioner.metabase.models import Card, Dashboard
from provisioner.observe import ActualState, EarlyReads, Wanted, observe, resolve_databases
from provisioner.plan import Plan, build_plan
from provisioner.progress import NullProgress, Progress
from provisioner.spec import LoadedFile, json_schema, load_paths
from provisioner.spec.models import DashboardSpec
from provisioner.state import StateDir
from provisioner.translate import MetadataSchema

if TYPE_CHECKING:
    from provisioner.config import Settings
    from provisioner.export import ExportResult
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
        from provisioner import sqlcheck  # psycopg: loaded only when SQL is checked (`plan` never does)

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
    # Pruning must see everything that left the YAML: never through the remembered ids.
    known_ids = cache.dashboards(metabase_url) if cache is not None and not prune else {}
    known_cards = cache.cards(metabase_url) if cache is not None and not prune else {}
    keys = [item.spec.key for item in loaded if isinstance(item.spec, DashboardSpec)]
    # Read while the databases' metadata is read and the desired state built: the list of collections, and
    # when every dashboard is remembered (observe then reads them by id), those and the remembered cards.
    shortcut = all(k in known_ids for k in keys)
    early_ids = [known_ids[k] for k in keys] if shortcut else []
    early_cards = list(known_cards.values()) if shortcut else []
    with EarlyReads(client, early_ids, early_cards) as early:
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
        actual = observe(client, wanted, known_ids or None, known_cards or None, early)

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


@dataclass
class _Inputs:
    """What a plan is computed from: the files read, how to prune, the environment they used."""

    paths: list[Path]
    loaded: list[LoadedFile]
    prune: bool
    prune_scope: set[str] | None
    environ: plan_file.RecordingEnviron
    saved: plan_file.SavedPlan | None = None


@contextmanager
def _inputs(
    paths: Sequence[Path],
    prune: bool,
    environ: Mapping[str, str] | None,
    progress: Progress,
    *,
    saved_plans: bool = False,
) -> Iterator[_Inputs]:
    """The YAML given, or (with `saved_plans`, for apply) the snapshot inside a saved plan file."""
    recording = plan_file.RecordingEnviron(os.environ if environ is None else environ)
    saved = plan_file.saved_plan_in(paths) if saved_plans else None
    if saved is None:
        loaded = load_paths(paths, recording)
        yield _Inputs(list(paths), loaded, prune, _prune_scope(paths, loaded, prune, progress), recording)
        return
    if prune:
        raise ConfigError(
            "--prune cannot be given with a saved plan", hint="the plan itself says whether it prunes"
        )
    with plan_file.materialized(saved) as given:
        loaded = load_paths(given, recording)
        scope = _prune_scope(given, loaded, saved.prune, NullProgress())
        yield _Inputs(given, loaded, saved.prune, scope, recording, saved)


def plan(
    settings: Settings,
    paths: Sequence[Path] = (DEFAULT_DIR,),
    *,
    prune: bool = False,
    out: Path | None = None,
    progress: Progress | None = None,
    client: MetabaseClient | None = None,
    environ: Mapping[str, str] | None = None,
) -> Plan:
    """What `apply` would change, per object; reads Metabase, writes nothing (but `out`, the saved plan).

    Raises SpecErrors (invalid files, unknown table.column in Metabase), MetabaseError, ConfigError.
    """
    progress = progress or NullProgress()
    with (
        _inputs(paths, prune, environ, progress) as inputs,
        _metabase(settings, client, progress, read_only=True) as mb,
    ):
        progress.step(f"Reading Metabase for {len(inputs.loaded)} file(s)")
        computed = _compute_plan(
            mb,
            inputs.loaded,
            prune=prune,
            cache=IdCache.of(settings.home),
            metabase_url=settings.metabase_url,
            prune_scope=inputs.prune_scope,
        ).plan
        if out is not None:
            saved = plan_file.snapshot(
                computed,
                paths=inputs.paths,
                loaded=inputs.loaded,
                environ=inputs.environ,
                metabase_url=settings.metabase_url,
                prune=prune,
            )
            plan_file.save(saved, out)
            computed.saved_to = str(out)
    return computed


def apply(
    settings: Settings,
    paths: Sequence[Path] = (DEFAULT_DIR,),
    *,
    prune: bool = False,
    force: bool = False,
    backup_dir: Path | None = None,
    progress: Progress | None = None,
    client: MetabaseClient | None = None,
    environ: Mapping[str, str] | None = None,
    run_cards: bool = True,
    databases: Sequence[DatabaseMetadata] = (),
    lock: ApplyLock | None = None,
) -> ApplyResult:
    """Create or update collections, cards and dashboards (archive removed ones with `prune`).

    `paths` may be one saved plan (`plan --out`): then the plan saved is applied and nothing else, and
    apply refuses (StalePlan) before any write when it no longer holds, unless `force`. Every object
    changed or archived is first backed up (backup.py). A plan that creates anything is applied under
    the apply lock, and computed again once the lock is held (apply_lock.py): two applies at once never
    create the same object twice. `databases` is metadata the caller has just read (the demo's connect
    step), used instead of reading it again. Re-running after a failure converges. Raises SpecErrors,
    MetabaseError, StalePlan, ApplyBusy, ConfigError.
    """
    progress = progress or NullProgress()
    cache = IdCache.of(settings.home)
    with (
        _inputs(paths, prune, environ, progress, saved_plans=True) as inputs,
        _metabase(settings, client, progress) as mb,
    ):
        if inputs.saved is None and force:
            raise ConfigError(
                "--force applies only to a saved plan", hint="give the file `dashboards plan --out` wrote"
            )
        if inputs.saved is not None:
            plan_file.check_target(inputs.saved, settings.metabase_url)
            progress.step(f"Checking the saved plan of {inputs.saved.created_at} against Metabase")
        start = mb.request_count
        records = StateDir(settings.home).apply_locks_dir
        remove_abandoned(mb, records, settings.metabase_url, progress)

        def computed_plan(remembered: IdCache | None) -> _Computed:
            computed = _compute_plan(
                mb,
                inputs.loaded,
                prune=inputs.prune,
                cache=remembered,
                metabase_url=settings.metabase_url,
                databases=databases,
                prune_scope=inputs.prune_scope,
            )
            if inputs.saved is not None and not force:
                plan_file.refuse_if_drifted(inputs.saved, computed.plan, inputs.environ)
            return computed

        progress.step(f"Planning {len(inputs.loaded)} file(s)")
        computed = computed_plan(cache)
        # Made before any write, so that an apply that cannot keep a backup changes nothing.
        backup_at = (
            new_backup_dir(backup_dir or StateDir(settings.home).backups_dir)
            if computed.plan.has_changes
            else None
        )
        if any(a.action == "create" for a in computed.plan.actions):
            with (lock or ApplyLock()).held(
                mb,
                progress,
                records=StateDir(settings.home).apply_locks_dir,
                metabase_url=settings.metabase_url,
            ):
                # Another apply may have made these objects since the plan read: plan again, locked.
                computed = computed_plan(None)
                result = _execute(settings, mb, computed, backup_at, progress, run_cards)
        else:
            result = _execute(settings, mb, computed, backup_at, progress, run_cards)
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


def _execute(
    settings: Settings,
    client: MetabaseClient,
    computed: _Computed,
    backup_at: Path | None,
    progress: Progress,
    run_cards: bool,
) -> ApplyResult:
    """Back up what the plan changes or archives into `backup_at`, then carry the plan out."""
    plan = computed.plan
    if backup_at is None or not plan.has_changes:
        if backup_at is not None:
            with suppress(OSError):
                backup_at.rmdir()  # another apply did it all while this one waited for the lock
        progress.step("Nothing to change")
        return execute(plan, client, computed.reader, metabase_url=settings.metabase_url, run_cards=run_cards)
    touched = [
        (a.key, a.action, a.actual)
        for a in plan.actions
        if a.action in ("update", "archive") and isinstance(a.actual, Card | Dashboard)
    ]
    backup = start_backup(
        backup_at,
        touched,
        metabase_url=settings.metabase_url,
        command="apply",
    )
    progress.step(f"Applying (previous state saved in {backup.directory})")
    try:
        result = execute(
            plan,
            client,
            computed.reader,
            metabase_url=settings.metabase_url,
            progress=progress,
            run_cards=run_cards,
            created=backup.created,
        )
    finally:
        backup.finish()
    result.backup = str(backup.directory)
    return result


def restore(
    settings: Settings,
    directory: Path,
    *,
    backup_dir: Path | None = None,
    progress: Progress | None = None,
    client: MetabaseClient | None = None,
) -> RestoreResult:
    """Put back the cards and dashboards an apply backed up, archive what it created.

    What restore overwrites is backed up first, so a restore can be undone by restoring that backup.
    Raises ConfigError (not a backup, another Metabase), MetabaseError.
    """
    progress = progress or NullProgress()
    with _metabase(settings, client, progress) as mb:
        return restore_backup(
            mb,
            directory,
            metabase_url=settings.metabase_url,
            backup_dir=new_backup_dir(backup_dir or StateDir(settings.home).backups_dir),
            progress=progress,
        )


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
        from provisioner.export import export_dashboards

        return export_dashboards(mb, dashboards, out_dir=out_dir, force=force, progress=progress)
