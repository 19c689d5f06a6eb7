"""`provision status`: what runs, its health, Metabase's version, sync state and dashboard drift.

Probes never start or change anything; each failure becomes a `detail` in the report (the
report itself is the answer), so status works on a half-built or stopped demo.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, SecretStr

from provisioner.errors import ProvisionError
from provisioner.progress import NullProgress, Progress
from provisioner.runtime.base import RuntimeStatus

if TYPE_CHECKING:
    from provisioner.config import Settings
    from provisioner.runtime.base import Runtime

# Probes answer quickly: a status or doctor run must not wait for a starting Metabase.
PROBE_TIMEOUT_S = 5.0


class MetabaseState(BaseModel):
    """Whether Metabase answers, its version, and whether that version is supported."""

    url: str | None
    reachable: bool
    healthy: bool = False
    version: str | None = None
    supported: bool | None = None
    detail: str | None = None
    hint: str | None = None


class DatabaseState(BaseModel):
    """The warehouse: reachable and seeded, and Metabase's sync state of it."""

    reachable: bool
    seeded: bool | None = None
    sync_status: str | None = None
    detail: str | None = None
    hint: str | None = None


class DashboardsState(BaseModel):
    """Whether the dashboards in Metabase match the YAML files."""

    in_sync: bool | None
    changes: int | None = None
    detail: str | None = None
    hint: str | None = None


class StatusReport(BaseModel):
    """Everything `provision status` shows."""

    runtime: RuntimeStatus
    metabase: MetabaseState
    database: DatabaseState
    dashboards: DashboardsState

    @property
    def ok(self) -> bool:
        return (
            self.runtime.running
            and self.metabase.healthy
            and self.database.reachable
            and bool(self.database.seeded)
            and self.dashboards.in_sync is True
        )


def probe_metabase(url: str | None) -> MetabaseState:
    """Metabase's health and version at `url`, without credentials; never raises."""
    from provisioner.metabase.client import MetabaseClient
    from provisioner.metabase.versions import check_version

    if url is None:
        return MetabaseState(url=None, reachable=False, detail="not started yet", hint="run `provision up`")
    try:
        with MetabaseClient(url, timeout_s=PROBE_TIMEOUT_S, retries=0) as client:
            health = client.health()
            if not health.ok:
                return MetabaseState(
                    url=url,
                    reachable=True,
                    detail=f"starting ({health.status})",
                    hint="wait a minute, then check again",
                )
            tag = client.session_properties().version_tag
    except ProvisionError as exc:
        return MetabaseState(url=url, reachable=False, detail=exc.message, hint=exc.hint)
    try:
        checked = check_version(tag)
    except ProvisionError as exc:
        return MetabaseState(
            url=url,
            reachable=True,
            healthy=True,
            version=tag,
            supported=False,
            detail=exc.message,
            hint=exc.hint,
        )
    return MetabaseState(
        url=url, reachable=True, healthy=True, version=checked.tag, supported=True, detail=checked.warning
    )


def probe_database(dsn: SecretStr | None) -> DatabaseState:
    """Whether the warehouse answers and holds the seeded demo data; never raises."""
    if dsn is None:
        return DatabaseState(reachable=False, detail="no warehouse known yet", hint="run `provision up`")
    from provisioner.db.seed import seed_status

    try:
        seeded = seed_status(dsn.get_secret_value())
    except ProvisionError as exc:
        return DatabaseState(reachable=False, detail=exc.message, hint=exc.hint)
    if seeded is None:
        return DatabaseState(
            reachable=True,
            seeded=False,
            detail="reachable, but the demo data is not loaded",
            hint="run `provision demo` (or `provision seed`) to load the demo data",
        )
    if seeded.damage is not None:
        # The check `demo` makes before it decides to reseed: the two never disagree.
        return DatabaseState(
            reachable=True,
            seeded=False,
            detail=f"the demo data is {seeded.summary}",
            hint="run `provision demo` (or `provision seed`): it puts the demo data back",
        )
    return DatabaseState(reachable=True, seeded=True, detail=seeded.summary)


def probe_sync_and_dashboards(
    settings: Settings,
    dashboards_dirs: list[Path] | None,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[str | None, DashboardsState, str | None]:
    """Metabase's sync state of the demo database, the dashboard drift, and a credentials problem if any."""
    from provisioner.metabase.setup import DATABASE_NAME, open_client

    quick = settings.model_copy(
        update={"health_timeout_s": PROBE_TIMEOUT_S, "http_timeout_s": PROBE_TIMEOUT_S}
    )
    try:
        authed = open_client(quick, progress=NullProgress(), clock=clock, read_only=True)
    except ProvisionError as exc:
        unknown = DashboardsState(in_sync=None, detail="cannot log in to Metabase", hint=exc.hint)
        return None, unknown, exc.message
    try:
        databases = authed.client.list_databases()
    except ProvisionError:
        databases = []
    finally:
        authed.client.close()
    ours = next((d for d in databases if d.name == DATABASE_NAME), None)
    sync = ours.initial_sync_status if ours is not None else "not registered"
    return sync, probe_dashboards(quick, dashboards_dirs), None


def probe_dashboards(settings: Settings, dashboards_dirs: list[Path] | None) -> DashboardsState:
    """Whether applying the dashboard YAML would change anything; never raises.

    The YAML: `dashboards_dirs`, else the settings' (project file, ./dashboards, the demo's), else the
    demo dashboards the tool ships.
    """
    import os

    from provisioner import dashboards
    from provisioner.resources import demo_dashboards_dir

    try:
        paths = dashboards_dirs or list(settings.dashboards) or [demo_dashboards_dir()]
        environ = {**settings.variables, **os.environ}
        plan = dashboards.plan(settings, paths, progress=NullProgress(), environ=environ)
    except ProvisionError as exc:
        return DashboardsState(in_sync=None, detail=exc.message, hint=exc.hint)
    changes = sum(action.action != "unchanged" for action in plan.actions)
    if plan.has_changes:
        return DashboardsState(
            in_sync=False,
            changes=changes,
            detail="Metabase differs from the YAML",
            hint="run `provision dashboards plan` to see how, `provision dashboards apply` to fix",
        )
    return DashboardsState(in_sync=True, changes=0, detail="Metabase matches the YAML")


def collect_status(
    settings: Settings,
    runtime: Runtime,
    *,
    dashboards_dirs: list[Path] | None = None,
) -> StatusReport:
    """The status of the demo this runtime runs; raises nothing a probe can report instead."""
    running = runtime.status()
    url = running.metabase_url
    metabase = probe_metabase(url)
    database = probe_database(running.warehouse_dsn)
    dashboards_state = DashboardsState(in_sync=None, detail="Metabase is not healthy")
    if metabase.healthy and url is not None:
        pointed = settings.model_copy(update={"metabase_url": url})
        sync, dashboards_state, auth_problem = probe_sync_and_dashboards(pointed, dashboards_dirs)
        database.sync_status = sync
        if auth_problem:
            metabase.detail = auth_problem
    return StatusReport(runtime=running, metabase=metabase, database=database, dashboards=dashboards_state)


def status_of(
    settings: Settings, *, dashboards_dirs: list[Path] | None = None, progress: Progress | None = None
) -> StatusReport:
    """The status of the demo the configured runtime runs; raises EnvironmentProblem when none applies."""
    from provisioner.stack import select_runtime

    runtime = select_runtime(settings)
    (progress or NullProgress()).step(f"Checking the {runtime.name} demo")
    return collect_status(settings, runtime, dashboards_dirs=dashboards_dirs)
