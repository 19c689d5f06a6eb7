"""`provision seed` and `provision db ...` through the CLI: results on stdout, errors once on stderr."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

import provisioner.db.connection as connection_module
from provisioner.cli.app import app
from provisioner.db.roles import with_credentials
from provisioner.runtime.postgres import EmbeddedPostgres, free_port
from provisioner.state import StateDir
from tests.credentials import stored_section


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def _assert_clean_error(result, exit_code: int, *needles: str, secrets: tuple[str, ...] = ()) -> None:
    assert result.exit_code == exit_code, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("error: ") == 1
    assert "hint: " in result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr
    for secret in secrets:
        assert secret not in result.stderr


@pytest.fixture
def embedded_home(clean_environ: Path) -> Iterator[Path]:
    """The per-test PROVISION_HOME; any embedded server a test starts there is stopped afterwards."""
    yield clean_environ
    EmbeddedPostgres(StateDir(clean_environ).postgres_dir).stop()


# -- seeding an external database -----------------------------------------------------------


def test_seed_external_database_prints_json_and_stores_the_reader_login(
    pg_dsn: str, clean_environ: Path
) -> None:
    result = _invoke("seed", "--database-url", pg_dsn, "--as-of", "2026-01-31", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["changed"] is True and data["as_of"] == "2026-01-31"
    assert data["counts"]["payments"] == 63 and len(data["counts"]) == 24
    assert data["reader"]["role"] == "metabase_reader" and data["reader"]["fallback_warning"] is None
    superuser_password = pg_dsn.split(":")[2].split("@")[0]
    assert superuser_password not in result.stdout + result.stderr
    assert "Seeding the demo warehouse" in result.stderr
    stored = stored_section(clean_environ, "reader")
    assert stored is not None and stored["user"] == "metabase_reader"
    assert stored["password"] not in result.stdout + result.stderr
    with psycopg.connect(with_credentials(pg_dsn, stored["user"], stored["password"])) as conn:
        assert conn.execute("SELECT count(*) FROM v_account_risk_dashboard").fetchone() == (15,)


def test_second_seed_reports_already_up_to_date(pg_dsn: str) -> None:
    assert _invoke("seed", "--database-url", pg_dsn, "--as-of", "2026-01-31").exit_code == 0
    again = _invoke("seed", "--database-url", pg_dsn, "--as-of", "2026-01-31")
    assert again.exit_code == 0, again.stderr
    assert again.stdout.startswith("Already up to date: the demo warehouse as of 2026-01-31")
    assert "read-only role for Metabase: metabase_reader" in again.stdout


def test_database_url_from_the_environment_is_used(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", pg_dsn)
    result = _invoke("seed", "--as-of", "2026-01-31")
    assert result.exit_code == 0, result.stderr
    assert pg_dsn.rsplit("/", 1)[1] in result.stdout


# -- error paths ----------------------------------------------------------------------------


def test_unreachable_host_is_one_error_line_with_a_hint() -> None:
    dsn = f"postgresql://someone:sekret-pw-123@127.0.0.1:{free_port()}/nowhere"
    result = _invoke("seed", "--database-url", dsn)
    _assert_clean_error(result, 5, "cannot connect", "<redacted>", secrets=("sekret-pw-123",))


def test_unreachable_host_with_json_prints_the_error_document() -> None:
    dsn = f"postgresql://someone:sekret-pw-123@127.0.0.1:{free_port()}/nowhere"
    result = _invoke("seed", "--database-url", dsn, "--json")
    assert result.exit_code == 5
    assert json.loads(result.stdout)["error"] == "database"
    assert "sekret-pw-123" not in result.stdout + result.stderr


def test_wrong_password_is_one_error_line_with_a_hint(pg_dsn: str) -> None:
    wrong = with_credentials(pg_dsn, "postgres", "definitely-wrong-pw")
    result = _invoke("seed", "--database-url", wrong)
    _assert_clean_error(result, 5, "password authentication failed", secrets=("definitely-wrong-pw",))


def test_malformed_as_of_is_a_config_error() -> None:
    result = _invoke("seed", "--as-of", "31/01/2026")
    _assert_clean_error(result, 3, "--as-of", "YYYY-MM-DD")


def test_port_flag_with_database_url_is_a_config_error(pg_dsn: str) -> None:
    result = _invoke("seed", "--database-url", pg_dsn, "--port", "5999")
    _assert_clean_error(result, 3, "--port")


def test_postgres_older_than_13_is_refused(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection_module, "MIN_SERVER_VERSION", 990000)
    result = _invoke("seed", "--database-url", pg_dsn)
    _assert_clean_error(result, 5, "too old", "13")


def test_user_without_create_privilege_is_told_what_to_grant(pg_server, pg_dsn: str) -> None:
    user = f"nocreate_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'nocreate-pw-1'").format(sql.Identifier(user)))
    result = _invoke("seed", "--database-url", with_credentials(pg_dsn, user, "nocreate-pw-1"))
    _assert_clean_error(result, 5, f"user {user} may not create tables in schema public", "GRANT CREATE")
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT to_regclass('accounts')").fetchone() == (None,)


def test_foreign_same_named_table_is_refused_until_force(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE TABLE oems (theirs int)")
    refused = _invoke("seed", "--database-url", pg_dsn)
    _assert_clean_error(refused, 5, "oems", "--force")
    forced = _invoke("seed", "--database-url", pg_dsn, "--force")
    assert forced.exit_code == 0, forced.stderr
    assert "replacing objects this tool does not own: oems" in forced.stderr


def test_port_in_use_is_an_environment_problem(embedded_home: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _invoke("db", "start", "--port", str(port))
    _assert_clean_error(result, 6, f"port {port}", "in use")


def test_db_url_before_any_demo_names_the_state_directory_it_looked_in(embedded_home: Path) -> None:
    result = _invoke("db", "url")
    _assert_clean_error(result, 5, f"no demo warehouse in {embedded_home}", "PROVISION_HOME")


def test_db_url_when_the_embedded_server_is_stopped_says_how_to_start_it(embedded_home: Path) -> None:
    (embedded_home / "postgres").mkdir(parents=True)  # a demo was here; its server is stopped
    result = _invoke("db", "url")
    _assert_clean_error(result, 5, f"the demo in {embedded_home} is not running", "provision db start")


# -- the embedded server --------------------------------------------------------------------


def test_embedded_lifecycle_start_seed_url_status_stop(embedded_home: Path) -> None:
    started = _invoke("db", "start", "--json")
    assert started.exit_code == 0, started.stderr
    status = json.loads(started.stdout)
    assert status["running"] is True and status["seeded"] is None
    port = status["port"]
    password = stored_section(embedded_home, "postgres")["password"]  # type: ignore[index]
    assert password not in started.stdout + started.stderr

    seeded = _invoke("seed", "--as-of", "2026-02-28")
    assert seeded.exit_code == 0, seeded.stderr
    assert f"127.0.0.1:{port}/asset_finance" in seeded.stdout
    assert password not in seeded.stdout + seeded.stderr

    url = _invoke("db", "url")
    assert url.exit_code == 0
    dsn = url.stdout.strip()
    assert password in dsn  # the one command that prints it
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM accounts").fetchone() == (15,)

    described = _invoke("db", "status")
    assert described.exit_code == 0
    assert f"running (pid {status['pid']}) on 127.0.0.1:{port}" in described.stdout
    assert "seeded as of 2026-02-28" in described.stdout
    assert password not in described.stdout

    stopped = _invoke("db", "stop", "--json")
    assert stopped.exit_code == 0, stopped.stderr
    assert json.loads(stopped.stdout)["running"] is False

    restarted = _invoke("db", "start", "--json")  # remembers its port
    assert restarted.exit_code == 0, restarted.stderr
    assert json.loads(restarted.stdout)["port"] == port
    assert json.loads(restarted.stdout)["seeded"]["as_of"] == "2026-02-28"


def test_db_status_text_shows_why_the_demo_data_is_unknown() -> None:
    import provisioner.cli.app  # noqa: F401  (the CLI package is imported through its root app)
    from provisioner.cli.db import _status_text
    from provisioner.runtime.warehouse import DbStatus

    status = DbStatus(running=True, pid=42, port=5433, data_dir="/x/data", detail="password not stored")
    text = _status_text(status)
    assert "demo data: unknown (password not stored)" in text
    assert "url: None" not in text and "not seeded" not in text
