"""The embedded server listens on TCP 127.0.0.1 with password auth, as Metabase needs."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

from provisioner.errors import EnvironmentProblem
from provisioner.runtime.postgres import EmbeddedPostgres, _system_user


def test_server_accepts_tcp_connections_with_the_password(pg_server) -> None:
    with psycopg.connect(pg_server.dsn()) as conn:
        assert conn.info.host == "127.0.0.1"
        assert conn.execute("select 1").fetchone() == (1,)


def test_wrong_password_is_refused(pg_server) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg_server.info.dsn("wrong-password"))


def test_start_reuses_the_running_server(pg_server) -> None:
    again = EmbeddedPostgres(pg_server.info.data_dir.parent).start(pg_server.password)
    assert again.pid == pg_server.info.pid
    assert again.port == pg_server.info.port


def test_start_on_another_port_while_running_is_refused(pg_server) -> None:
    with pytest.raises(EnvironmentProblem, match="already runs on port"):
        EmbeddedPostgres(pg_server.info.data_dir.parent).start(
            pg_server.password, port=pg_server.info.port + 1
        )


def test_requested_port_in_use_is_refused(tmp_path, pg_server) -> None:
    with pytest.raises(EnvironmentProblem, match="in use"):
        EmbeddedPostgres(tmp_path / "other").start("pw", port=pg_server.info.port)


def test_a_pid_file_naming_another_program_is_stale_and_start_recovers(tmp_path) -> None:
    # After a crash, postmaster.pid stays behind and its pid may be reused by any other program.
    # PostgreSQL refuses to start while that pid is alive and its own user's, so the "other
    # program" here runs as the user the server runs as (a system user when we are root).
    server = EmbeddedPostgres(tmp_path / "pg")
    port = server.start("pw").port
    server.stop()
    pid_file = server.data_dir / "postmaster.pid"
    with subprocess.Popen(["sleep", "60"], user=_system_user()) as other:
        try:
            pid_file.write_text(f"{other.pid}\n{server.data_dir}\n1700000000\n{port}\n\n127.0.0.1\n")
            assert server.running() is None  # alive, but no PostgreSQL

            info = server.start("pw")
            try:
                assert server.running() == info and info.pid != other.pid
                with psycopg.connect(info.dsn("pw")) as conn:
                    assert conn.execute("select 1").fetchone() == (1,)
                server._remove_stale_pid_file()  # a live server's own file is never taken for stale
                assert pid_file.exists()
            finally:
                server.stop()
        finally:
            other.kill()


def test_another_pytest_run_does_not_cut_the_server_off_its_data(tmp_path, tmp_path_factory) -> None:
    # Any pytest run that uses tmp_path resets the shared `pytest-of-<user>` to 0700. As root the server
    # runs as a system user, whose pg_ctl then could not reach a data directory below it (stop, status
    # and every later start failed). This run's base temp directory is its own (conftest.py).
    server = EmbeddedPostgres(tmp_path / "pg")
    info = server.start("pw")
    try:
        foreign = tmp_path / "foreign"
        foreign.mkdir()
        (foreign / "test_uses_tmp_path.py").write_text(
            "def test_it(tmp_path):\n    assert tmp_path.exists()\n"
        )
        ran = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "--rootdir",
                str(foreign),
                str(foreign),
            ],
            cwd=foreign,
            capture_output=True,
            text=True,
            check=False,
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "pytest-of-" not in str(tmp_path_factory.getbasetemp())
        with psycopg.connect(info.dsn("pw")) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
    finally:
        assert server.stop()
    assert server.running() is None


def test_root_without_useradd_is_an_environment_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    import pwd
    import subprocess

    from provisioner.errors import EnvironmentProblem
    from provisioner.runtime import postgres

    def no_such_user(name: str) -> None:
        raise KeyError(name)

    def useradd_fails(args: list[str], **kwargs: object) -> None:
        raise subprocess.CalledProcessError(9, args, stderr="useradd: cannot lock /etc/passwd\n")

    monkeypatch.setattr(postgres.os, "geteuid", lambda: 0)
    monkeypatch.setattr(pwd, "getpwnam", no_such_user)
    monkeypatch.setattr(postgres.subprocess, "run", useradd_fails)
    with pytest.raises(EnvironmentProblem) as caught:
        postgres._system_user()
    assert "cannot lock /etc/passwd" in caught.value.message
    assert "--database-url" in (caught.value.hint or "")
