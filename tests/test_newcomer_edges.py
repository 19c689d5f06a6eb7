"""The rough edges a newcomer hit on a fresh clone (issue 12), each fixed and held here by name.

Others live beside their areas: the refused connection in test_metabase_waits.py, a missing jar and the
bad command lines (an empty --database-url) in test_bad_input.py, exit 64 and the help in test_cli_app.py,
the JSON shape in test_cli_app.py, the remembered runtime (and doctor under a Metabase command) in
test_remembered_demo.py, the project file in test_workspace.py, the wheel in test_install.py.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Callable
from datetime import date
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from provisioner.cli.app import app
from provisioner.db.seed import seed_database, seed_status
from provisioner.runtime import postgres
from provisioner.runtime.postgres import EmbeddedPostgres, free_port
from tests.fake_metabase.fixtures import admin_http
from tests.fake_metabase.server import FakeMetabase

REPO = Path(__file__).resolve().parent.parent
PROVISIONER = REPO / "provisioner"


def _one_error_line(result: object) -> str:
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


# --- a bad PROVISION_HOME ---------------------------------------------------------------------------


def _under_a_file(tmp_path: Path) -> Path:
    (tmp_path / "a-file").write_text("")
    return tmp_path / "a-file" / "state"


def _unwritable(tmp_path: Path) -> Path:
    if os.geteuid() == 0:  # root writes anywhere a mode allows: sysfs refuses even root
        return Path("/sys/kernel/provision-state")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    return locked / "state"


def _under_proc(tmp_path: Path) -> Path:
    return Path("/proc/provision-state")


BAD_HOMES: dict[str, Callable[[Path], Path]] = {
    "under-a-file": _under_a_file,
    "unwritable": _unwritable,
    "under-proc": _under_proc,
}
COMMANDS = {
    "demo": ["demo", "--runtime", "external", "--metabase-url", "http://127.0.0.1:9", "--database-url"],
    "db-start": ["db", "start"],
    "seed": ["seed", "--database-url"],
}


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
@pytest.mark.parametrize("home", BAD_HOMES.values(), ids=BAD_HOMES.keys())
def test_a_bad_provision_home_is_one_line_naming_the_directory_and_the_fix(
    tmp_path: Path, pg_dsn: str, home: Callable[[Path], Path], command: list[str]
) -> None:
    state = home(tmp_path)
    args = [*command, pg_dsn] if command[-1] == "--database-url" else command
    result = CliRunner().invoke(app, args, env={"PROVISION_HOME": str(state)})
    assert result.exit_code == 6, result.stderr
    error = _one_error_line(result)
    assert f"the state directory {state}" in error and "credentials.json" not in error
    assert "hint: set PROVISION_HOME to a directory you can write" in result.stderr
    with psycopg.connect(pg_dsn) as conn:  # refused before the database was touched
        assert conn.execute("SELECT to_regclass('provision_meta')").fetchone() == (None,)


# --- an interrupted delete --------------------------------------------------------------------------


def test_an_interrupted_delete_of_the_embedded_data_never_blocks_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = EmbeddedPostgres(tmp_path / "postgres")
    (server.data_dir / "base" / "1").mkdir(parents=True)
    (server.data_dir / "base" / "1" / "1259").write_text("half a cluster")
    real_rmtree = shutil.rmtree

    def interrupted(path: object, *args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C during `demo --fresh`, while it deletes

    monkeypatch.setattr(postgres.shutil, "rmtree", interrupted)
    with pytest.raises(KeyboardInterrupt):
        server.destroy()
    monkeypatch.setattr(postgres.shutil, "rmtree", real_rmtree)
    assert not server.root.exists()  # renamed aside in one step before the delete began

    # A data directory a delete (or an initdb) left half-done, without PG_VERSION, is no cluster either.
    (server.data_dir / "global").mkdir(parents=True)
    (server.data_dir / "global" / "pg_control").write_text("")
    info = server.start("pw")
    try:
        with psycopg.connect(info.dsn("pw")) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert [p.name for p in tmp_path.iterdir()] == ["postgres"]  # the renamed leftover is gone
    finally:
        server.stop()


# --- the seeded check shared by status, doctor and demo --------------------------------------------


def test_status_says_seeded_exactly_when_demo_would_change_nothing(pg_dsn: str) -> None:
    as_of = date(2026, 1, 31)
    seed_database(pg_dsn, as_of=as_of, reader_password=None)
    intact = seed_status(pg_dsn)
    assert intact is not None and intact.seeded and intact.damage is None

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DROP VIEW v_open_events")
    dropped = seed_status(pg_dsn)
    assert dropped is not None and not dropped.seeded and dropped.damage == "missing v_open_events"
    assert seed_database(pg_dsn, as_of=as_of, reader_password=None).changed is True

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM payments WHERE ctid IN (SELECT ctid FROM payments LIMIT 1)")
    deleted = seed_status(pg_dsn)
    assert deleted is not None and deleted.damage == "row counts changed in payments (63 -> 62)"
    assert "damaged since the seed" in deleted.summary

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE payments SET amount = amount + 1 WHERE ctid IN (SELECT ctid FROM payments LIMIT 1)"
        )
    seed_database(pg_dsn, as_of=as_of, reader_password=None)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE oems SET name = name || ' (edited)' WHERE ctid IN (SELECT ctid FROM oems LIMIT 1)"
        )
    edited = seed_status(pg_dsn)
    assert edited is not None and edited.damage == "rows were edited since (the checksum differs)"
    assert seed_database(pg_dsn, as_of=as_of, reader_password=None).changed is True
    healed = seed_status(pg_dsn)
    assert healed is not None and healed.seeded


def test_status_of_a_damaged_warehouse_says_what_is_missing_and_how_to_fix_it(pg_dsn: str) -> None:
    from pydantic import SecretStr

    from provisioner.status import probe_database

    seed_database(pg_dsn, as_of=date(2026, 1, 31), reader_password=None)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DROP VIEW v_poi_summary")
    state = probe_database(SecretStr(pg_dsn))
    assert state.reachable and state.seeded is False
    assert state.detail is not None and "missing v_poi_summary" in state.detail
    assert "provision demo" in (state.hint or "")


# --- validate and the YAML ------------------------------------------------------------------------


GOOD = (
    "key: sales\nname: Sales\ncollection: Team\n"
    "cards:\n  - key: total\n    name: Total\n    display: scalar\n    sql: SELECT 1 AS n\n"
)


def _validate(tmp_path: Path, text: str) -> object:
    (tmp_path / "sales.yaml").write_text(text)
    return CliRunner().invoke(app, ["dashboards", "validate", str(tmp_path / "sales.yaml"), "--json"])


@pytest.mark.parametrize(
    ("broken", "line", "said"),
    [
        (
            GOOD.replace("    display: scalar", "      display: scalar"),
            7,
            "line 7 is indented deeper than line 6",
        ),
        (GOOD.replace("    display: scalar", "   display: scalar"), 7, "the indentation is off at line 7"),
        (
            GOOD.replace("  - key: total", "  - key: total\n  name: Total"),
            6,
            "the indentation is off at line 6",
        ),
        (GOOD.replace("name: Sales", "name: Sales: EU"), 2, "a `: ` inside a value at line 2"),
        (GOOD.replace("    display: scalar", "\tdisplay: scalar"), 7, "a tab at line 7"),
    ],
    ids=["indented-deeper", "indented-less", "a-key-out-of-its-list-item", "colon-in-a-value", "tab"],
)
def test_a_yaml_syntax_error_names_the_cause_and_shows_the_line(
    tmp_path: Path, broken: str, line: int, said: str
) -> None:
    result = _validate(tmp_path, broken)
    assert result.exit_code == 3  # type: ignore[attr-defined]
    (error,) = json.loads(result.stdout)["errors"]  # type: ignore[attr-defined]
    assert error["line"] == line and said in error["problem"], error
    assert "<block" not in error["problem"] and "expected" not in error["problem"]
    shown = broken.splitlines()[line - 1].strip()
    assert f"`{shown}`" in error["problem"]


def test_an_export_warns_of_a_filter_wired_to_no_card_which_validate_refuses(
    fake_metabase: FakeMetabase, tmp_path: Path
) -> None:
    session = admin_http(fake_metabase)
    url = fake_metabase.url
    database = session.get(f"{url}/api/database").json()["data"][0]["id"]
    native = {"type": "native", "database": database, "native": {"query": "SELECT 1 AS n"}}
    card = session.post(
        f"{url}/api/card",
        json={"name": "Total", "display": "scalar", "visualization_settings": {}, "dataset_query": native},
    ).json()
    region = {"id": "f1", "slug": "region", "name": "Region", "type": "category"}
    board = session.post(f"{url}/api/dashboard", json={"name": "Sales", "parameters": [region]}).json()
    dashcard = {"id": -1, "card_id": card["id"], "row": 0, "col": 0, "size_x": 6, "size_y": 4}
    assert (
        session.put(f"{url}/api/dashboard/{board['id']}", json={"dashcards": [dashcard]}).status_code == 200
    )

    result = CliRunner().invoke(
        app,
        ["dashboards", "export", "Sales", "--out", str(tmp_path / "out"), "--metabase-url", url, "--json"],
        env={"METABASE_ADMIN_EMAIL": "admin@example.com", "METABASE_ADMIN_PASSWORD": "Fake-Admin-Pass-1"},
    )
    assert result.exit_code == 0, result.stderr
    warnings = json.loads(result.stdout)["warnings"]
    assert "'Sales': filter `region` is wired to no card, which validate refuses; wire it in a card's " in (
        " ".join(warnings)
    )
    refused = CliRunner().invoke(app, ["dashboards", "validate", str(tmp_path / "out")])
    assert refused.exit_code == 3 and "filter `region` is wired to no card" in refused.stderr


def test_an_overlap_names_both_cards_and_whose_rows_and_columns_are_whose(tmp_path: Path) -> None:
    overlapping = GOOD + (
        "    at: {row: 0, col: 0, width: 12, height: 4}\n"
        "  - text: hello\n    at: {row: 1, col: 6, width: 12, height: 3}\n"
    )
    (error,) = json.loads(_validate(tmp_path, overlapping).stdout)["errors"]  # type: ignore[attr-defined]
    assert error["problem"] == ("this card (rows 1-3, cols 6-17) overlaps card `total` (rows 0-3, cols 0-11)")


# --- hints -----------------------------------------------------------------------------------------


def test_no_hint_names_a_command_that_does_not_exist() -> None:
    commands = {name for name in _command_paths(app)}
    for source in PROVISIONER.rglob("*.py"):
        for quoted in _quoted_commands(source.read_text()):
            assert any(quoted == c or quoted.startswith(c + " ") for c in commands), (source, quoted)


def _command_paths(typer_app: object) -> list[str]:
    import typer.main

    group = typer.main.get_command(typer_app)  # type: ignore[arg-type]
    found: list[str] = []

    def walk(command: object, prefix: str) -> None:
        children = getattr(command, "commands", {})
        for name, child in children.items():
            path = f"{prefix} {name}".strip()
            found.append(path)
            walk(child, path)

    walk(group, "")
    return found


def _quoted_commands(text: str) -> list[str]:
    """The `provision ...` commands quoted in backticks, without their arguments' placeholders."""
    import re

    commands = []
    for match in re.finditer(r"`provision ([a-z][a-z -]*?)(?: --| [A-Z\[<(\"'$]|`)", text):
        commands.append(match.group(1).strip())
    return commands


# --- the local state -------------------------------------------------------------------------------


def test_the_state_directory_is_private_and_as_root_only_searchable_by_the_postgres_user(
    tmp_path: Path,
) -> None:
    home = tmp_path / ".provision"
    result = CliRunner().invoke(
        app, ["db", "start", "--port", str(free_port())], env={"PROVISION_HOME": str(home)}
    )
    try:
        assert result.exit_code == 0, result.stderr
        mode = stat.S_IMODE(home.stat().st_mode)
        # As root, PostgreSQL runs as the `embedded_postgres` user, which must pass through (x, never r or
        # w) to reach its data directory; the README says so.
        assert mode == (0o701 if os.geteuid() == 0 else 0o700)
        assert stat.S_IMODE((home / "credentials.json").stat().st_mode) == 0o600
    finally:
        CliRunner().invoke(app, ["db", "stop"], env={"PROVISION_HOME": str(home)})
