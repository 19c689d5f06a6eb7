"""What every runtime provides (start, stop, destroy, status), and how commands are run for it.

A runtime runs the demo's Metabase and warehouse: `docker` (compose), `local` (embedded
PostgreSQL plus the Metabase jar as a supervised process) or `external` (the user's own; nothing
started). Commands go through a `CommandRunner`, so tests assert the exact argument lists.
"""

from __future__ import annotations

import queue
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel, Field, SecretStr

from provisioner.config import DEFAULT_STACK_NAME
from provisioner.errors import EnvironmentProblem
from provisioner.progress import Progress

if TYPE_CHECKING:
    pass

RuntimeChoice = Literal["auto", "docker", "local", "external"]
DEFAULT_NAME = DEFAULT_STACK_NAME  # the compose project name when --name is not given
COMPOSE_VERSION_COMMAND = ["docker", "compose", "version", "--short"]
# A streamed command that has printed nothing for this long gets an `on_line(None)` heartbeat.
HEARTBEAT_S = 15.0

OnLine = Callable[[str | None], None]


class Endpoints(BaseModel):
    """Where a started runtime's Metabase and warehouse answer."""

    metabase_url: str
    # The owner DSN as seen from this machine; None = provisioner.runtime.warehouse resolves the embedded one.
    warehouse_dsn: SecretStr | None = None
    # How Metabase reaches the warehouse when that differs from this machine's view (compose network).
    metabase_warehouse_host: str | None = None
    metabase_warehouse_port: int | None = None
    # Whether this start had to start anything (False: everything already ran).
    started: bool = False


class ServiceStatus(BaseModel):
    """One service of a runtime: its state (running, exited, stopped) and health."""

    name: str
    state: str
    health: str | None = None
    detail: str | None = None

    @property
    def healthy(self) -> bool:
        return self.state == "running" and self.health in (None, "", "healthy")


class RuntimeStatus(BaseModel):
    """What a runtime runs right now, without starting anything."""

    runtime: str
    services: list[ServiceStatus] = []
    detail: str | None = None
    metabase_url: str | None = None
    log_file: str | None = None
    # The warehouse owner DSN when the runtime knows it (docker); never part of printed output.
    warehouse_dsn: SecretStr | None = Field(default=None, exclude=True)

    @property
    def running(self) -> bool:
        return bool(self.services) and all(s.state in ("running", "external") for s in self.services)


class Runtime(Protocol):
    """Starts and stops the demo's Metabase and warehouse."""

    name: str

    def check(self) -> None:
        """Raise the ProvisionError a start would meet before it changes anything (a missing program,
        jar or URL); writes nothing, so a command refused here leaves no trace."""

    def start(self, progress: Progress) -> Endpoints:
        """Endpoints of the healthy services (reuses what runs); raises ProvisionError naming the log."""

    def stop(self, progress: Progress) -> None:
        """Stop the services, keeping their data."""

    def destroy(self, progress: Progress) -> None:
        """Stop the services and delete their data (for --fresh)."""

    def status(self) -> RuntimeStatus:
        """What runs now; starts nothing."""


class CommandRunner(Protocol):
    """Runs an external command (docker, java) and returns its completed process."""

    def run(
        self,
        args: list[str],
        *,
        timeout_s: float,
        env: dict[str, str] | None = None,
        on_line: OnLine | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """The finished command (in `env`, default ours) with text output; raises EnvironmentProblem.

        With `on_line`, each output line (stdout and stderr merged, as they come) is passed on while
        the command runs, and None after every HEARTBEAT_S of silence; the result's stdout holds it all.
        """


class SubprocessRunner:
    """Runs commands with their output captured as text, or streamed line by line (`on_line`)."""

    def __init__(self, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.heartbeat_s = heartbeat_s

    def run(
        self,
        args: list[str],
        *,
        timeout_s: float,
        env: dict[str, str] | None = None,
        on_line: OnLine | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """The finished command; raises EnvironmentProblem when it is missing or times out."""
        try:
            if on_line is not None:
                return self._stream(args, timeout_s, env, on_line)
            return subprocess.run(
                args,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                stdin=subprocess.DEVNULL,
                check=False,
                env=env,
            )
        except FileNotFoundError as exc:
            raise EnvironmentProblem(
                f"`{args[0]}` is not installed or not on PATH",
                hint=f"install {args[0]}, or choose another runtime with --runtime",
            ) from exc
        except OSError as exc:  # e.g. not executable (PermissionError), wrong architecture
            raise EnvironmentProblem(
                f"`{args[0]}` cannot be run: {exc.strerror or exc}",
                hint=f"check {args[0]} (its permissions and that it suits this machine), or choose "
                "another runtime with --runtime",
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise EnvironmentProblem(
                f"`{shlex.join(args)}` did not finish within {timeout_s:.0f} s",
                hint="check that the service it talks to is responsive, then run the command again",
            ) from exc

    def _stream(
        self, args: list[str], timeout_s: float, env: dict[str, str] | None, on_line: OnLine
    ) -> subprocess.CompletedProcess[str]:
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:  # a thread, so the wait below can time out and send heartbeats
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, name="command-output", daemon=True).start()
        deadline = time.monotonic() + timeout_s
        output: list[str] = []
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise subprocess.TimeoutExpired(args, timeout_s)
                try:
                    line = lines.get(timeout=min(remaining, self.heartbeat_s))
                except queue.Empty:
                    on_line(None)
                    continue
                if line is None:
                    break
                output.append(line)
                on_line(line.rstrip("\n"))
            returncode = process.wait(timeout=max(deadline - time.monotonic(), 1.0))
        except BaseException:  # a timeout or Ctrl-C: never leave the command running
            process.kill()
            process.wait()
            raise
        return subprocess.CompletedProcess(args, returncode, "".join(output), "")


def docker_engine_version(runner: CommandRunner) -> str | None:
    """The Docker engine's server version, or None when no engine answers."""
    try:
        done = runner.run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout_s=20)
    except EnvironmentProblem:
        return None
    version = done.stdout.strip()
    return version if done.returncode == 0 and version else None


def compose_available(runner: CommandRunner) -> bool:
    """True when the Docker Compose v2 plugin answers `docker compose version`."""
    try:
        done = runner.run(COMPOSE_VERSION_COMMAND, timeout_s=20)
    except EnvironmentProblem:
        return False
    return done.returncode == 0 and bool(done.stdout.strip())
