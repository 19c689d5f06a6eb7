"""The one-shot demo: runtime → schema and seed → Metabase setup → connect → dashboards.

Every step is idempotent, so `demo` run again on a healthy demo changes nothing, and a run
interrupted anywhere resumes where it stopped. `fresh=True` first destroys what the tool owns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from provisioner.progress import NullProgress, Progress
from provisioner.resources import demo_dashboards_dir
from provisioner.state import StateDir

if TYPE_CHECKING:
    from provisioner.config import Settings
    from provisioner.runtime.base import Endpoints, Runtime


class StepTiming(BaseModel):
    """How long one step of the demo took."""

    name: str
    seconds: float
    changed: bool


class DashboardLink(BaseModel):
    """A demo dashboard and where to open it."""

    name: str
    url: str
    action: str


class DemoResult(BaseModel):
    """What `provision demo` reports: where to go, what changed, how long each step took."""

    runtime: str
    metabase_url: str
    admin_email: str | None
    credentials_file: str
    database_id: int
    dashboards: list[DashboardLink]
    failed_cards: list[str]
    steps: list[StepTiming]
    warnings: list[str]
    changed: bool

    @property
    def total_seconds(self) -> float:
        return sum(s.seconds for s in self.steps)


class _Steps:
    """Times each step and reports it through Progress."""

    def __init__(self, progress: Progress, clock: Callable[[], float]) -> None:
        self.progress = progress
        self.clock = clock
        self.timings: list[StepTiming] = []

    @contextmanager
    def step(self, name: str, title: str) -> Iterator[dict[str, bool]]:
        self.progress.step(title)
        outcome = {"changed": False}
        started = self.clock()
        yield outcome
        self.timings.append(
            StepTiming(name=name, seconds=round(self.clock() - started, 3), changed=outcome["changed"])
        )


def run_demo(
    settings: Settings,
    *,
    runtime: Runtime,
    fresh: bool = False,
    as_of: date | None = None,
    schema: str | None = None,
    scale: int | None = None,
    dashboards_dir: Path | None = None,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> DemoResult:
    """Bring the demo to its desired state and return where everything is.

    Raises the ProvisionError of the first step that fails (the next run resumes from there), or
    EnvironmentProblem while another demo, up or down command runs on the same state directory.
    """
    from provisioner import dashboards
    from provisioner.connect import connect_database
    from provisioner.db.seed import check_seed_options
    from provisioner.metabase.setup import prepare_metabase, setup_result
    from provisioner.seeding import seed
    from provisioner.workspace import remember_demo

    # Refused before anything starts or is written: bad options, the runtime's own checks (before the
    # lock, which creates the state directory).
    check_seed_options(schema=schema, scale=scale)
    runtime.check()
    # One demo command at a time per state directory: two would race to start the same processes.
    with StateDir(settings.home).exclusive("demo --fresh" if fresh else "demo"):
        progress = progress or NullProgress()
        steps = _Steps(progress, clock)
        warnings: list[str] = []

        if fresh:
            with steps.step("destroy", f"Removing the {runtime.name} demo to rebuild it from nothing") as out:
                runtime.destroy(progress)
                out["changed"] = True

        with steps.step("start", f"Starting the {runtime.name} runtime") as out:
            endpoints = runtime.start(progress)
            out["changed"] = endpoints.started
        # Recorded as soon as it runs: status, down and the rest find it even if a later step fails.
        remember_demo(
            settings,
            runtime=runtime.name,
            metabase_url=endpoints.metabase_url,
            dashboards=[dashboards_dir] if dashboards_dir is not None else None,
        )
        settings = _point_at(settings, endpoints)

        with steps.step("seed", "Seeding the demo database") as out:
            # External databases keep their data on --fresh unless reset: reseed only what we own.
            seeded = seed(
                settings,
                as_of=as_of,
                reset=fresh and runtime.name == "external",
                force=False,
                port=None,
                progress=progress,
                schema=schema,
                scale=scale,
            )
            out["changed"] = seeded.changed
            if seeded.reader.fallback_warning:
                warnings.append(seeded.reader.fallback_warning)

        with steps.step("setup", "Setting up Metabase") as out:
            # One client for setup, connect and dashboards: one health check and one login per run.
            authed = prepare_metabase(
                settings, progress=progress, clock=clock, sleep=sleep, just_started=endpoints.started
            )
            setup = setup_result(settings, authed)
            out["changed"] = setup.created_admin or setup.created_api_key or setup.turned_off_tracking

        try:
            with steps.step(
                "connect", "Registering the demo database in Metabase and waiting for sync"
            ) as out:
                connected = connect_database(
                    settings,
                    progress=progress,
                    clock=clock,
                    sleep=sleep,
                    metabase_dsn=_metabase_dsn(settings, endpoints),
                    authed=authed,
                    schema=seeded.schema_name,  # known from the seed: no second look in the warehouse
                )
                out["changed"] = connected.action != "unchanged"

            with steps.step("dashboards", "Applying the demo dashboards") as out:
                applied = dashboards.apply(
                    settings,
                    [dashboards_dir or demo_dashboards_dir()],
                    prune=False,
                    progress=progress,
                    client=authed.client,
                    databases=[connected.metadata] if connected.metadata else [],
                )
                out["changed"] = any(o.action != "unchanged" for o in applied.outcomes)
        finally:
            authed.client.close()

        changed = any(s.changed for s in steps.timings)
        if not changed:
            progress.info("The demo was already up to date: nothing changed.")
        return DemoResult(
            runtime=runtime.name,
            metabase_url=settings.metabase_url,
            admin_email=setup.user_email,
            credentials_file=str(setup.credentials_file),
            database_id=connected.database_id,
            dashboards=[
                DashboardLink(name=o.name, url=o.url or "", action=o.action)
                for o in applied.outcomes
                if o.kind == "dashboard" and o.action != "archived"
            ],
            failed_cards=[f"{f.name}: {f.error}" for f in applied.failed_queries],
            steps=steps.timings,
            warnings=warnings,
            changed=changed,
        )


def _point_at(settings: Settings, endpoints: Endpoints) -> Settings:
    """Settings aimed at what the runtime started (its Metabase URL and warehouse DSN)."""
    update: dict[str, object] = {"metabase_url": endpoints.metabase_url}
    if endpoints.warehouse_dsn is not None:
        update["database_url"] = endpoints.warehouse_dsn
    return settings.model_copy(update=update)


def _metabase_dsn(settings: Settings, endpoints: Endpoints) -> str | None:
    """The reader DSN as Metabase sees it: inside Docker the warehouse host differs from ours."""
    if settings.metabase_database_url is not None:
        return settings.metabase_database_url.get_secret_value()
    if endpoints.metabase_warehouse_host is None:
        return None  # connect_database derives it from the warehouse and the reader role
    from provisioner.connect import metabase_connection
    from provisioner.dsn import DEFAULT_PORT, dsn_with
    from provisioner.runtime.warehouse import resolve_warehouse

    reader = metabase_connection(settings, resolve_warehouse(settings, start=False))
    return dsn_with(
        reader.dsn.get_secret_value(),
        host=endpoints.metabase_warehouse_host,
        port=endpoints.metabase_warehouse_port or DEFAULT_PORT,
    )
