"""`provision doctor`: each check passes or fails with a fix, only the checks for the chosen runtime run."""

from __future__ import annotations

import json
import socket
import subprocess
from collections import namedtuple
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from provisioner.cli.app import app
from provisioner.config import Settings
from provisioner.doctor import Check, check_disk_space, parse_compose_version, run_doctor
from provisioner.progress import RecordingProgress
from provisioner.runtime.compose import ComposeRuntime
from provisioner.runtime.postgres import free_port
from tests.fake_metabase.server import FakeMetabase

Usage = namedtuple("Usage", "total used free")
PLENTY = Usage(500 * 2**30, 100 * 2**30, 400 * 2**30)


class DockerRunner:
    """A machine where `docker info` and `docker compose version` answer as configured."""

    def __init__(self, engine: str | None = "28.2.2", compose: str | None = "2.29.1", ps: str = "[]") -> None:
        self.engine, self.compose, self.ps = engine, compose, ps
        self.calls: list[list[str]] = []

    def run(
        self, args: list[str], *, timeout_s: float, env: dict[str, str] | None = None, on_line: object = None
    ) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        if args[:2] == ["docker", "info"]:
            ok = self.engine is not None
            return subprocess.CompletedProcess(args, 0 if ok else 1, f"{self.engine}\n" if ok else "", "")
        if args[:3] == ["docker", "compose", "version"]:
            ok = self.compose is not None
            return subprocess.CompletedProcess(args, 0 if ok else 1, f"{self.compose}\n" if ok else "", "")
        if "ps" in args:
            return subprocess.CompletedProcess(args, 0, self.ps, "")
        if args[-1] == "-version":  # java
            return subprocess.CompletedProcess(args, 0, "", 'openjdk version "17.0.2"\n')
        return subprocess.CompletedProcess(args, 0, "", "")


@pytest.fixture
def settings(clean_environ: Path) -> Settings:
    return Settings.load({}, home=clean_environ)


@pytest.fixture
def fake() -> Iterator[FakeMetabase]:
    with FakeMetabase() as server:
        yield server


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def test_auto_with_nothing_available_fails_with_every_way_forward(settings: Settings) -> None:
    checks = _by_name(
        run_doctor(
            settings, runtime_choice="auto", runner=DockerRunner(engine=None), disk_usage=lambda _: PLENTY
        )
    )
    assert not checks["runtime"].ok and "--runtime external" in (checks["runtime"].hint or "")
    assert not checks["docker engine"].ok and "start Docker" in (checks["docker engine"].hint or "")
    assert not checks["metabase jar"].ok and "--metabase-jar" in (checks["metabase jar"].hint or "")
    assert "java" in checks
    assert "metabase" not in checks  # nothing to probe without a runtime


def test_docker_checks_pass_but_a_stack_not_yet_started_says_run_up(settings: Settings) -> None:
    checks = _by_name(
        run_doctor(settings, runtime_choice="docker", runner=DockerRunner(), disk_usage=lambda _: PLENTY)
    )
    assert checks["docker engine"] == Check(name="docker engine", ok=True, detail="Docker engine 28.2.2")
    assert checks["docker compose"].ok and checks["docker compose"].detail == "Compose 2.29.1"
    assert checks["disk space"].ok
    assert "java" not in checks  # docker needs no Java
    assert checks["ports"].ok and "none fixed yet" in checks["ports"].detail
    assert not checks["metabase"].ok and "provision up" in (checks["metabase"].hint or "")
    assert not checks["database"].ok


@pytest.mark.parametrize(("text", "version"), [("2.29.1\n", (2, 29, 1)), ("v2.5.0", (2, 5, 0)), ("", None)])
def test_compose_version_is_parsed(text: str, version: tuple[int, int, int] | None) -> None:
    assert parse_compose_version(text) == version


def test_compose_v1_or_missing_fails(settings: Settings) -> None:
    for compose in ("1.29.2", None):
        checks = _by_name(
            run_doctor(
                settings,
                runtime_choice="docker",
                runner=DockerRunner(compose=compose),
                disk_usage=lambda _: PLENTY,
            )
        )
        assert not checks["docker compose"].ok
        assert "Compose v2" in (checks["docker compose"].hint or "")


def test_low_disk_space_fails_with_a_fix(tmp_path: Path) -> None:
    check = check_disk_space(tmp_path / "missing" / "home", "docker", lambda _: Usage(10, 9, 2**29))
    assert not check.ok
    assert "0.5 GiB free" in check.detail and str(tmp_path) in check.detail
    assert "docker system prune" in (check.hint or "")


def test_a_port_held_by_another_program_fails(settings: Settings) -> None:
    runner = DockerRunner()
    ComposeRuntime(settings, runner=runner).ensure_env(RecordingProgress())
    env_file = settings.home / ".env"
    port = free_port()
    env_file.write_text(
        "\n".join(
            f"METABASE_PORT={port}" if line.startswith("METABASE_PORT=") else line
            for line in env_file.read_text().splitlines()
        )
    )
    # Bound but not listening: the port is taken, and a probe is refused at once instead of hanging.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        checks = _by_name(
            run_doctor(settings, runtime_choice="docker", runner=runner, disk_usage=lambda _: PLENTY)
        )
    assert not checks["ports"].ok
    assert f"metabase {port}" in checks["ports"].detail


def test_ports_held_by_the_running_demo_pass(settings: Settings) -> None:
    ps = json.dumps(
        [
            {"Service": "metabase", "State": "running", "Health": "healthy"},
            {"Service": "warehouse", "State": "running", "Health": "healthy"},
        ]
    )
    runner = DockerRunner(ps=ps)
    ComposeRuntime(settings, runner=runner).ensure_env(RecordingProgress())
    checks = _by_name(
        run_doctor(settings, runtime_choice="docker", runner=runner, disk_usage=lambda _: PLENTY)
    )
    assert checks["ports"].ok


def test_external_metabase_is_probed_for_health_and_version(settings: Settings, fake: FakeMetabase) -> None:
    external = settings.model_copy(update={"metabase_url": fake.url})
    checks = _by_name(
        run_doctor(external, runtime_choice="external", runner=DockerRunner(), disk_usage=lambda _: PLENTY)
    )
    assert checks["metabase"].ok
    assert "v0.65.4" in checks["metabase"].detail
    # Not set up yet: no credentials can work, and doctor says what to run.
    assert not checks["credentials"].ok
    assert "docker engine" not in checks and "ports" not in checks


def test_external_metabase_too_old_fails(settings: Settings) -> None:
    with FakeMetabase(version="v0.58.2") as old:
        external = settings.model_copy(update={"metabase_url": old.url})
        checks = _by_name(
            run_doctor(
                external, runtime_choice="external", runner=DockerRunner(), disk_usage=lambda _: PLENTY
            )
        )
    assert not checks["metabase"].ok and "too old" in checks["metabase"].detail


def test_unreachable_metabase_fails(settings: Settings) -> None:
    external = settings.model_copy(update={"metabase_url": f"http://127.0.0.1:{free_port()}"})
    checks = _by_name(
        run_doctor(external, runtime_choice="external", runner=DockerRunner(), disk_usage=lambda _: PLENTY)
    )
    assert not checks["metabase"].ok
    assert "credentials" not in checks


def test_doctor_command_exits_1_and_prints_json_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METABASE_URL", f"http://127.0.0.1:{free_port()}")
    result = CliRunner().invoke(app, ["doctor", "--runtime", "external", "--json"])
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["ok"] is False
    names = [c["name"] for c in payload["checks"]]
    assert names[:2] == ["runtime", "disk space"] and "metabase" in names


def test_doctor_text_shows_pass_fail_and_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METABASE_URL", f"http://127.0.0.1:{free_port()}")
    result = CliRunner().invoke(app, ["doctor", "--runtime", "external"])
    assert result.exit_code == 1
    assert "PASS  runtime: external" in result.stdout
    assert "FAIL  metabase" in result.stdout and "      fix: " in result.stdout
