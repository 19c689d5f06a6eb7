"""Which runtime runs the demo, and bringing its services up or down under the state directory's lock.

The factory lives here, above the runtimes: `runtime.base` holds only what every runtime shares, so no
runtime module imports another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from provisioner.errors import EnvironmentProblem
from provisioner.progress import Progress
from provisioner.runtime.base import (
    CommandRunner,
    Endpoints,
    Runtime,
    RuntimeChoice,
    SubprocessRunner,
    compose_available,
    docker_engine_version,
)
from provisioner.state import StateDir
from provisioner.workspace import remember_demo

if TYPE_CHECKING:
    from provisioner.config import Settings


def select_runtime(
    settings: Settings,
    choice: RuntimeChoice | None = None,
    *,
    name: str | None = None,
    runner: CommandRunner | None = None,
) -> Runtime:
    """The runtime for `choice` (default: settings.runtime); raises EnvironmentProblem when auto finds none.

    auto: docker if an engine answers, else local if a Metabase jar or command is known.
    """
    choice = choice or settings.runtime
    name = name or settings.stack_name
    runner = runner or SubprocessRunner()
    if choice == "auto":
        choice = auto_choice(settings, runner)
    if choice == "docker":
        from provisioner.runtime.compose import ComposeRuntime

        return ComposeRuntime(settings, name=name, runner=runner)
    if choice == "local":
        from provisioner.runtime.local import LocalRuntime

        return LocalRuntime(settings, runner=runner)
    if choice == "external":
        from provisioner.runtime.external import ExternalRuntime

        return ExternalRuntime(settings)
    raise EnvironmentProblem(f"unknown runtime {choice!r}", hint="use --runtime auto|docker|local|external")


def auto_choice(settings: Settings, runner: CommandRunner) -> Literal["docker", "local"]:
    """Which runtime `auto` means on this machine; raises EnvironmentProblem listing the ways forward."""
    if docker_engine_version(runner) is not None and compose_available(runner):
        return "docker"
    if settings.metabase_jar is not None or settings.metabase_command:
        return "local"
    raise EnvironmentProblem(
        "no way to run Metabase here: no Docker engine with Compose v2 answers and no Metabase jar is known",
        hint=(
            "pick one: (1) start Docker with the Compose v2 plugin (`docker info` and `docker compose "
            "version` must work) for --runtime docker; "
            "(2) download metabase.jar and pass --metabase-jar PATH (or METABASE_JAR), Java 21+ needed, "
            "for --runtime local; (3) point at your own with --runtime external "
            "--metabase-url URL --database-url postgresql://..."
        ),
    )


def bring_up(settings: Settings, *, progress: Progress, runner: CommandRunner | None = None) -> Endpoints:
    """Start the demo's services with the configured runtime; raises the runtime's ProvisionError."""
    runtime = select_runtime(settings, runner=runner)
    runtime.check()  # before the lock, which creates the state directory
    with StateDir(settings.home).exclusive("up"):
        progress.step(f"Starting the {runtime.name} runtime")
        endpoints = runtime.start(progress)
        remember_demo(settings, runtime=runtime.name, metabase_url=endpoints.metabase_url, dashboards=None)
        return endpoints


def bring_down(
    settings: Settings, *, volumes: bool, progress: Progress, runner: CommandRunner | None = None
) -> str:
    """Stop the demo's services (and delete their data with `volumes`); returns the runtime's name."""
    runtime = select_runtime(settings, runner=runner)
    with StateDir(settings.home).exclusive("down --volumes" if volumes else "down"):
        if volumes:
            progress.step(f"Removing the {runtime.name} demo and its data")
            runtime.destroy(progress)
        else:
            progress.step(f"Stopping the {runtime.name} demo (data kept)")
            runtime.stop(progress)
    return runtime.name
