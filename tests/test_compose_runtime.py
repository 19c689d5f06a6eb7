"""The docker runtime through its seams: argument lists issued, `ps` output parsed, the env file."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provisioner.config import Settings
from provisioner.errors import EnvironmentProblem
from provisioner.progress import RecordingProgress
from provisioner.runtime.base import OnLine, SubprocessRunner
from provisioner.runtime.compose import (
    COMPOSE_VERSION_COMMAND,
    ComposeEnv,
    ComposeProgress,
    ComposeRuntime,
    compose_file,
    parse_ps_output,
)
from provisioner.stack import select_runtime
from tests.credentials import store_credentials, stored_section

PS_ROWS = [
    {"Name": "demo-warehouse-1", "Service": "warehouse", "State": "running", "Health": "healthy",
     "Status": "Up 2 minutes (healthy)", "Publishers": [{"URL": "127.0.0.1", "PublishedPort": 5432}]},
    {"Name": "demo-metabase-db-1", "Service": "metabase-db", "State": "running", "Health": "healthy",
     "Status": "Up 2 minutes (healthy)"},
    {"Name": "demo-metabase-1", "Service": "metabase", "State": "running", "Health": "starting",
     "Status": "Up 30 seconds (health: starting)", "ExitCode": 0},
]  # fmt: skip


class FakeRunner:
    """Records each command; answers from canned (returncode, stdout, stderr) by compose sub-command."""

    def __init__(self, answers: dict[str, tuple[int, str, str]] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.envs: list[dict[str, str] | None] = []
        self.answers = answers or {}

    def run(
        self,
        args: list[str],
        *,
        timeout_s: float,
        env: dict[str, str] | None = None,
        on_line: OnLine | None = None,
    ) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        self.envs.append(env)
        if args[:2] == ["docker", "info"]:
            key = "info"
        elif args == COMPOSE_VERSION_COMMAND:
            key = "version"
        elif args[:3] == ["docker", "volume", "ls"]:
            key = "volumes"
        else:
            key = args[8]
        code, out, err = self.answers.get(key, (0, "2.29.1\n" if key == "version" else "", ""))
        if on_line is not None:  # as SubprocessRunner streams: output merged, passed on line by line
            for line in (out + err).splitlines():
                on_line(line)
            return subprocess.CompletedProcess(args, code, out + err, "")
        return subprocess.CompletedProcess(args, code, out, err)


@pytest.fixture
def settings(clean_environ: Path) -> Settings:
    return Settings.load({}, home=clean_environ)


def _runtime(settings: Settings, runner: FakeRunner, name: str = "metabase-demo") -> ComposeRuntime:
    return ComposeRuntime(settings, name=name, runner=runner)


def _prefix(settings: Settings, env_name: str = ".env", project: str = "metabase-demo") -> list[str]:
    return [
        "docker",
        "compose",
        "--project-name",
        project,
        "--file",
        str(compose_file()),
        "--env-file",
        str(settings.home / env_name),
    ]


VOLUMES_COMMAND = ["docker", "volume", "ls", "--quiet", "--filter", "label=com.docker.compose.project="]


def _volumes_command(project: str = "metabase-demo") -> list[str]:
    return [*VOLUMES_COMMAND[:-1], VOLUMES_COMMAND[-1] + project]


def test_up_issues_compose_up_wait_and_returns_host_and_network_endpoints(settings: Settings) -> None:
    runner = FakeRunner()
    endpoints = _runtime(settings, runner).start(RecordingProgress())

    assert runner.calls == [
        COMPOSE_VERSION_COMMAND,
        _volumes_command(),  # before generating passwords: none may exist for this project yet
        [*_prefix(settings), "up", "--detach", "--wait"],
    ]
    env = ComposeEnv.parse(settings.home / ".env")
    assert endpoints.metabase_url == f"http://127.0.0.1:{env.metabase_port}"
    dsn = endpoints.warehouse_dsn.get_secret_value()
    assert dsn == (
        f"postgresql://provisioner:{env.warehouse_owner_password.get_secret_value()}"
        f"@127.0.0.1:{env.warehouse_port}/asset_finance"
    )
    assert (endpoints.metabase_warehouse_host, endpoints.metabase_warehouse_port) == ("warehouse", 5432)


def test_a_second_up_checks_what_runs_first_and_says_whether_it_started_anything(settings: Settings) -> None:
    assert _runtime(settings, FakeRunner()).start(RecordingProgress()).started is True  # first start

    healthy = [{**row, "Health": "healthy", "Status": "Up 2 minutes (healthy)"} for row in PS_ROWS]
    runner = FakeRunner({"ps": (0, json.dumps(healthy), "")})
    assert _runtime(settings, runner).start(RecordingProgress()).started is False
    assert runner.calls[-2:] == [
        [*_prefix(settings), "ps", "--all", "--format", "json"],
        [*_prefix(settings), "up", "--detach", "--wait"],
    ]

    for rows in (PS_ROWS, healthy[:2], []):  # metabase still starting; metabase gone; nothing runs
        runner = FakeRunner({"ps": (0, json.dumps(rows), "")})
        assert _runtime(settings, runner).start(RecordingProgress()).started is True


def test_env_file_is_private_random_and_complete(settings: Settings) -> None:
    _runtime(settings, FakeRunner()).start(RecordingProgress())
    path = settings.home / ".env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keys = {line.split("=", 1)[0] for line in path.read_text().splitlines() if "=" in line}
    assert keys == {
        "METABASE_PORT",
        "WAREHOUSE_PORT",
        "WAREHOUSE_DB",
        "WAREHOUSE_OWNER_USER",
        "WAREHOUSE_OWNER_PASSWORD",
        "WAREHOUSE_READER_USER",
        "WAREHOUSE_READER_PASSWORD",
        "MB_APP_DB_PASSWORD",
        "MB_ENCRYPTION_SECRET_KEY",
    }
    env = ComposeEnv.parse(path)
    secrets = {
        env.warehouse_owner_password.get_secret_value(),
        env.warehouse_reader_password.get_secret_value(),
        env.mb_app_db_password.get_secret_value(),
    }
    assert len(secrets) == 3 and all(len(s) >= 24 for s in secrets)
    assert len(env.mb_encryption_secret_key.get_secret_value()) >= 32


def test_compose_runs_without_shell_variables_that_would_override_the_env_file(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Compose ranks the shell above --env-file: an exported METABASE_PORT would move Metabase
    # away from the port the tool polls, an exported key would replace the generated one.
    monkeypatch.setenv("METABASE_PORT", "9999")
    monkeypatch.setenv("MB_ENCRYPTION_SECRET_KEY", "from-the-shell")
    monkeypatch.setenv("METABASE_VERSION", "v0.64.6.x")  # meant for compose: kept
    runner = FakeRunner({"up": (1, "", "unhealthy\n")})
    with pytest.raises(EnvironmentProblem):
        _runtime(settings, runner).start(RecordingProgress())
    compose_envs = [env for args, env in zip(runner.calls, runner.envs, strict=True) if "--env-file" in args]
    assert [args[8] for args in runner.calls if "--env-file" in args] == ["up", "logs"]
    for env in compose_envs:
        assert env is not None
        assert "METABASE_PORT" not in env and "MB_ENCRYPTION_SECRET_KEY" not in env
        assert env["METABASE_VERSION"] == "v0.64.6.x" and env["PATH"] == os.environ["PATH"]


def test_env_file_is_never_regenerated(settings: Settings) -> None:
    runtime = _runtime(settings, FakeRunner())
    runtime.start(RecordingProgress())
    first = (settings.home / ".env").read_text()
    runtime.start(RecordingProgress())
    _runtime(settings, FakeRunner()).start(RecordingProgress())
    assert (settings.home / ".env").read_text() == first


def test_reader_password_is_stored_for_seeding(settings: Settings) -> None:
    _runtime(settings, FakeRunner()).start(RecordingProgress())
    env = ComposeEnv.parse(settings.home / ".env")
    # The same shape seeding stores, so `provision demo` seeds the reader with this password.
    assert stored_section(settings.home, "reader") == {
        "user": "metabase_reader",
        "password": env.warehouse_reader_password.get_secret_value(),
        "host": "127.0.0.1",
        "port": env.warehouse_port,
        "dbname": "asset_finance",
    }


def test_existing_reader_password_is_reused_in_new_env(settings: Settings) -> None:
    store_credentials(settings.home, reader={"user": "metabase_reader", "password": "kept-pw-123456"})
    _runtime(settings, FakeRunner()).start(RecordingProgress())
    env = ComposeEnv.parse(settings.home / ".env")
    assert env.warehouse_reader_password.get_secret_value() == "kept-pw-123456"


def test_named_project_gets_its_own_env_file_and_project_name(settings: Settings) -> None:
    runner = FakeRunner()
    _runtime(settings, runner, name="second").start(RecordingProgress())
    assert runner.calls[1:] == [
        _volumes_command("second"),
        [*_prefix(settings, ".env.second", "second"), "up", "--detach", "--wait"],
    ]
    assert (settings.home / ".env.second").exists()
    assert not (settings.home / ".env").exists()


def test_down_keeps_volumes_and_destroy_removes_them(settings: Settings) -> None:
    runner = FakeRunner()
    runtime = _runtime(settings, runner)
    runtime.start(RecordingProgress())
    runtime.stop(RecordingProgress())
    runtime.destroy(RecordingProgress())
    assert runner.calls[3:] == [
        [*_prefix(settings), "down"],
        [*_prefix(settings), "down", "--volumes", "--remove-orphans"],
    ]
    # The old passwords died with the volumes; the next start generates new ones.
    assert not (settings.home / ".env").exists()


def test_down_without_a_started_demo_removes_nothing(settings: Settings) -> None:
    runner = FakeRunner()
    progress = RecordingProgress()
    _runtime(settings, runner).stop(progress)
    _runtime(settings, runner).destroy(progress)
    # Only the look for volumes an earlier, lost env file left behind; no compose command at all.
    assert runner.calls == [_volumes_command()]
    assert "was ever started here" in progress.text


def test_down_without_docker_and_without_a_demo_says_nothing_to_remove(settings: Settings) -> None:
    class NoDocker(FakeRunner):
        def run(
            self,
            args: list[str],
            *,
            timeout_s: float,
            env: dict[str, str] | None = None,
            on_line: object = None,
        ) -> subprocess.CompletedProcess[str]:
            raise EnvironmentProblem("`docker` is not installed or not on PATH")

    progress = RecordingProgress()
    _runtime(settings, NoDocker()).destroy(progress)
    assert "was ever started here" in progress.text


LEFTOVERS = "metabase-demo_metabase-app-db\nmetabase-demo_warehouse-data\n"


def test_up_refuses_volumes_whose_env_file_is_lost(settings: Settings) -> None:
    # New passwords would not open them: PostgreSQL keeps the password it was initialised with.
    runner = FakeRunner({"volumes": (0, LEFTOVERS, "")})
    with pytest.raises(EnvironmentProblem, match="already has volumes") as caught:
        _runtime(settings, runner).start(RecordingProgress())
    assert "metabase-demo_warehouse-data" in caught.value.message
    assert "provision down --volumes" in (caught.value.hint or "")
    assert runner.calls == [COMPOSE_VERSION_COMMAND, _volumes_command()]
    assert not (settings.home / ".env").exists()


def test_down_volumes_removes_a_project_whose_env_file_is_lost(settings: Settings) -> None:
    runner = FakeRunner({"volumes": (0, LEFTOVERS, "")})
    placeholder = settings.home / ".env.metabase-demo.placeholder"
    seen: list[str] = []
    original = runner.run

    def run(
        args: list[str], *, timeout_s: float, env: dict[str, str] | None = None, on_line: object = None
    ) -> subprocess.CompletedProcess[str]:
        if "down" in args:
            seen.append(placeholder.read_text())
        return original(args, timeout_s=timeout_s, env=env)

    runner.run = run  # type: ignore[method-assign]
    _runtime(settings, runner).destroy(RecordingProgress())

    prefix = _prefix(settings, ".env.metabase-demo.placeholder")
    assert runner.calls == [_volumes_command(), [*prefix, "down", "--volumes", "--remove-orphans"]]
    # Every variable the compose file requires has a value, or compose refuses to load it.
    assert "WAREHOUSE_OWNER_USER=" in seen[0] and "MB_ENCRYPTION_SECRET_KEY=" in seen[0]
    assert not placeholder.exists()


def test_down_stops_a_project_whose_env_file_is_damaged(settings: Settings) -> None:
    settings.home.mkdir(parents=True)
    (settings.home / ".env").write_text("METABASE_PORT=3000\n")
    runner = FakeRunner()
    _runtime(settings, runner).stop(RecordingProgress())
    assert runner.calls == [[*_prefix(settings, ".env.metabase-demo.placeholder"), "down"]]
    # Stopping keeps the data, so the env file (to be restored by the user) is left alone.
    assert (settings.home / ".env").read_text() == "METABASE_PORT=3000\n"


def test_down_volumes_removes_a_project_whose_env_file_is_damaged(settings: Settings) -> None:
    settings.home.mkdir(parents=True)
    (settings.home / ".env").write_text("METABASE_PORT=3000\nMB_APP_DB_PASSWORD=left-in-damaged-file\n")
    runner = FakeRunner({"down": (1, "", "volume in use: left-in-damaged-file\n")})
    with pytest.raises(EnvironmentProblem) as caught:
        _runtime(settings, runner).destroy(RecordingProgress())
    # Not the "damaged" error again (that hint sends the user here), and no secret in the message.
    assert "docker compose down` failed" in caught.value.message
    assert "left-in-damaged-file" not in caught.value.message
    assert runner.calls[-1][7] == str(settings.home / ".env.metabase-demo.placeholder")

    runner.answers["down"] = (0, "", "")
    _runtime(settings, runner).destroy(RecordingProgress())
    assert not (settings.home / ".env").exists()


def test_failed_up_saves_redacted_logs_and_names_them(settings: Settings) -> None:
    runner = FakeRunner({"up": (1, "", "container demo-metabase-1 is unhealthy\n")})
    runtime = _runtime(settings, runner)
    env = runtime.ensure_env(RecordingProgress())
    secret = env.mb_app_db_password.get_secret_value()
    runner.answers["logs"] = (0, f"metabase-1 | connecting with password {secret}\n", "")

    with pytest.raises(EnvironmentProblem) as caught:
        runtime.start(RecordingProgress())

    log = settings.home / "logs" / "docker-metabase-demo.log"
    assert "unhealthy" in caught.value.message
    assert str(log) in (caught.value.hint or "")
    assert runner.calls[-1] == [*_prefix(settings), "logs", "--no-color", "--tail", "200"]
    assert secret not in log.read_text() and "<redacted>" in log.read_text()


def test_status_parses_ps_and_reports_health(settings: Settings) -> None:
    runner = FakeRunner({"ps": (0, json.dumps(PS_ROWS), "")})
    runtime = _runtime(settings, runner)
    runtime.ensure_env(RecordingProgress())
    status = runtime.status()
    assert runner.calls == [[*_prefix(settings), "ps", "--all", "--format", "json"]]
    assert [(s.name, s.state, s.health) for s in status.services] == [
        ("warehouse", "running", "healthy"),
        ("metabase-db", "running", "healthy"),
        ("metabase", "running", "starting"),
    ]
    assert not status.services[2].healthy and status.services[0].healthy
    assert status.running


def test_status_of_a_never_started_project_runs_nothing(settings: Settings) -> None:
    runner = FakeRunner()
    status = _runtime(settings, runner).status()
    assert runner.calls == [] and status.services == [] and not status.running


def test_status_when_the_engine_is_down_is_a_detail_not_a_crash(settings: Settings) -> None:
    runner = FakeRunner(
        {"ps": (1, "", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock\n")}
    )
    runtime = _runtime(settings, runner)
    runtime.ensure_env(RecordingProgress())
    status = runtime.status()
    assert status.services == [] and "Cannot connect to the Docker daemon" in (status.detail or "")


def test_ps_output_as_one_array_and_as_json_lines_parse_the_same() -> None:
    as_array = parse_ps_output(json.dumps(PS_ROWS))
    as_lines = parse_ps_output("\n".join(json.dumps(row) for row in PS_ROWS) + "\n")
    assert as_array == as_lines
    assert [s.service for s in as_array] == ["warehouse", "metabase-db", "metabase"]


def test_ps_output_empty_means_no_containers() -> None:
    assert parse_ps_output("") == []
    assert parse_ps_output("[]") == []


def test_ps_output_garbage_is_an_environment_problem() -> None:
    with pytest.raises(EnvironmentProblem):
        parse_ps_output("NAME   IMAGE   COMMAND\n")


def test_damaged_env_file_is_reported_not_overwritten(settings: Settings) -> None:
    settings.home.mkdir(parents=True)
    (settings.home / ".env").write_text("METABASE_PORT=3000\n")
    with pytest.raises(EnvironmentProblem, match="incomplete or damaged"):
        _runtime(settings, FakeRunner()).start(RecordingProgress())
    assert (settings.home / ".env").read_text() == "METABASE_PORT=3000\n"


def test_auto_selects_docker_when_the_engine_answers(settings: Settings) -> None:
    runner = FakeRunner({"info": (0, "28.2.2\n", "")})
    runtime = select_runtime(settings, "auto", runner=runner)
    assert runtime.name == "docker"
    assert runner.calls == [["docker", "info", "--format", "{{.ServerVersion}}"], COMPOSE_VERSION_COMMAND]


def test_auto_with_an_engine_but_no_compose_plugin_falls_back_to_local(
    settings: Settings, tmp_path: Path
) -> None:
    runner = FakeRunner({"info": (0, "28.2.2\n", ""), "version": (1, "", "docker: unknown command\n")})
    with_jar = settings.model_copy(update={"metabase_jar": tmp_path / "metabase.jar"})
    assert select_runtime(with_jar, "auto", runner=runner).name == "local"


def test_auto_without_engine_or_jar_lists_the_three_ways_forward(settings: Settings) -> None:
    runner = FakeRunner({"info": (1, "", "Cannot connect to the Docker daemon\n")})
    with pytest.raises(EnvironmentProblem) as caught:
        select_runtime(settings, "auto", runner=runner)
    hint = caught.value.hint or ""
    assert "docker" in hint and "--metabase-jar" in hint and "--runtime external" in hint


def test_auto_without_engine_but_with_a_jar_selects_local(settings: Settings, tmp_path: Path) -> None:
    runner = FakeRunner({"info": (1, "", "Cannot connect\n")})
    with_jar = settings.model_copy(update={"metabase_jar": tmp_path / "metabase.jar"})
    assert select_runtime(with_jar, "auto", runner=runner).name == "local"


def test_up_and_down_commands_issue_compose_for_the_named_project(settings: Settings) -> None:
    from provisioner.stack import bring_down, bring_up

    docker = settings.model_copy(update={"runtime": "docker", "stack_name": "sales-eu"})
    runner = FakeRunner()
    endpoints = bring_up(docker, progress=RecordingProgress(), runner=runner)
    assert bring_down(docker, volumes=False, progress=RecordingProgress(), runner=runner) == "docker"
    bring_down(docker, volumes=True, progress=RecordingProgress(), runner=runner)
    prefix = _prefix(settings, ".env.sales-eu", "sales-eu")
    assert runner.calls == [
        COMPOSE_VERSION_COMMAND,  # the check before the state directory's lock
        COMPOSE_VERSION_COMMAND,
        _volumes_command("sales-eu"),
        [*prefix, "up", "--detach", "--wait"],
        [*prefix, "down"],
        [*prefix, "down", "--volumes", "--remove-orphans"],
    ]
    assert endpoints.metabase_warehouse_host == "warehouse"


def test_missing_compose_plugin_is_named_before_anything_is_generated(settings: Settings) -> None:
    runner = FakeRunner({"version": (1, "", "docker: unknown command: docker compose\n")})
    with pytest.raises(EnvironmentProblem, match="Docker Compose v2 is not available") as caught:
        _runtime(settings, runner).start(RecordingProgress())
    assert "--runtime local" in (caught.value.hint or "")
    assert runner.calls == [COMPOSE_VERSION_COMMAND]
    assert not (settings.home / ".env").exists()


def test_up_streams_what_compose_does_without_layer_noise_or_secrets(settings: Settings) -> None:
    _runtime(settings, FakeRunner()).start(RecordingProgress())  # writes the env file
    password = ComposeEnv.parse(settings.home / ".env").warehouse_owner_password.get_secret_value()
    output = "\n".join(
        [
            " metabase Pulling ",
            " 3f4ca61aafcd Pulling fs layer ",
            " 3f4ca61aafcd Downloading [==>      ]  12.5MB/210MB",
            " metabase Pulled ",
            " Container metabase-demo-metabase-1  Waiting",
            " Container metabase-demo-metabase-1  Waiting",
            f" warehouse  | FATAL: password authentication failed ({password})",
            " Container metabase-demo-metabase-1  Healthy",
        ]
    )
    progress = RecordingProgress()

    _runtime(settings, FakeRunner({"up": (0, output, "")})).start(progress)

    shown = [text.strip() for kind, text in progress.lines if kind == "info" and text.startswith("  ")]
    assert shown == [
        "metabase Pulling",
        "metabase Pulled",
        "Container metabase-demo-metabase-1  Waiting",
        "warehouse  | FATAL: password authentication failed (<redacted>)",
        "Container metabase-demo-metabase-1  Healthy",
    ]


def test_a_silent_wait_says_how_long_it_has_been() -> None:
    now = [100.0]
    progress = RecordingProgress()
    report = ComposeProgress(progress, lambda text: text, clock=lambda: now[0])
    now[0] = 145.0
    report(None)
    assert "still starting after 45 s" in progress.text


def test_a_streamed_command_passes_lines_on_as_they_come_and_heartbeats_in_silence() -> None:
    seen: list[str | None] = []
    script = "echo one; echo two >&2; sleep 0.4; echo three; exit 3"

    done = SubprocessRunner(heartbeat_s=0.05).run(["sh", "-c", script], timeout_s=10, on_line=seen.append)

    assert [line for line in seen if line is not None] == ["one", "two", "three"]
    assert None in seen[2:-1]  # the silence between two and three
    assert done.returncode == 3 and done.stdout.split() == ["one", "two", "three"]


def test_a_streamed_command_past_its_timeout_is_killed_and_reported() -> None:
    started = time.monotonic()
    with pytest.raises(EnvironmentProblem, match="did not finish within"):
        SubprocessRunner(heartbeat_s=0.05).run(["sleep", "30"], timeout_s=0.3, on_line=lambda _line: None)
    assert time.monotonic() - started < 5


def test_a_program_that_cannot_be_executed_is_an_environment_problem(tmp_path: Path) -> None:
    program = tmp_path / "java"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o644)  # present but not executable: PermissionError, not FileNotFoundError
    with pytest.raises(EnvironmentProblem) as caught:
        SubprocessRunner().run([str(program), "-version"], timeout_s=5)
    assert f"`{program}` cannot be run" in caught.value.message
    assert "--runtime" in (caught.value.hint or "")


def test_a_timeout_names_the_whole_command() -> None:
    args = [sys.executable, "-c", "import time; time.sleep(30)", "up", "--wait"]
    with pytest.raises(EnvironmentProblem) as caught:
        SubprocessRunner().run(args, timeout_s=0.2)
    # The sub-command (for compose it comes after the project, file and env-file options) is named.
    assert "up --wait" in caught.value.message and "did not finish within 0 s" in caught.value.message
