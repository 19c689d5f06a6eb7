"""Bad input on the command line, in the environment, for the seed: one error line, its exit code, no trace.

Each case runs the real `provision` command (in-process) and asserts that stderr holds exactly one
`error:` line and no traceback, that the exit code is the documented one (64 usage, 3 config, 5 database,
6 environment), and that nothing was written: no file under the test's directory (the state directory
and the working directory) is created or changed, and the database holds no new object or role.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from provisioner.cli.app import app
from tests.conftest import PgServer

USAGE, CONFIG, DATABASE, ENVIRONMENT = 64, 3, 5, 6
SECRET = "Sekret-pw-42"  # planted in bad values: no error may repeat it


@dataclass(frozen=True)
class Case:
    """One bad input: the arguments, extra environment, the exit code, and words the error must name."""

    args: list[str]
    exit_code: int
    names: str
    env: dict[str, str] = field(default_factory=dict)


def _tree(root: Path) -> dict[str, str]:
    """Every file under `root` with a digest of its content (directories as their own entries)."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        found[relative] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _assert_one_error_line(result: object, exit_code: int, names: str) -> str:
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert result.exit_code == exit_code, stderr  # type: ignore[attr-defined]
    assert isinstance(result.exception, SystemExit), result.exception  # type: ignore[attr-defined]
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr and "╭" not in stderr, stderr
    assert names.lower() in errors[0].lower(), errors[0]
    assert SECRET not in stderr and SECRET not in result.stdout  # type: ignore[attr-defined]
    return errors[0]


def _run(args: list[str], env: dict[str, str] | None = None) -> object:
    return CliRunner().invoke(app, args, env=env or {})


# --- the command line: flags and values ---------------------------------------------------------

COMMAND_LINE = {
    "seed-port-zero": Case(["seed", "--port", "0"], USAGE, "--port"),
    "seed-port-above-65535": Case(["seed", "--port", "70000"], USAGE, "--port"),
    "seed-port-not-a-number": Case(["seed", "--port", "abc"], USAGE, "--port"),
    "db-start-port-negative": Case(["db", "start", "--port", "-1"], USAGE, "--port"),
    "unknown-root-option": Case(["--bogus"], USAGE, "--bogus"),
    "unknown-command": Case(["nosuch"], USAGE, "nosuch"),
    "unknown-subcommand": Case(["db", "explode"], USAGE, "explode"),
    "seed-extra-argument": Case(["seed", "extra"], USAGE, "extra"),
    "runtime-not-a-choice": Case(["up", "--runtime", "kubernetes"], USAGE, "--runtime"),
    "flag-without-its-value": Case(["down", "--runtime"], USAGE, "--runtime"),
    "connect-option-without-its-value": Case(
        ["metabase", "connect", "--database-url"], USAGE, "--database-url"
    ),
    "seed-scale-zero": Case(["seed", "--scale", "0"], CONFIG, "--scale"),
    "seed-scale-beyond-the-limit": Case(["seed", "--scale", "5000000"], CONFIG, "--scale"),
    # Refused before the embedded PostgreSQL is started for it.
    "seed-schema-not-an-identifier": Case(["seed", "--schema", "1bad-name"], CONFIG, "schema name"),
    "seed-into-a-system-schema": Case(["seed", "--schema", "pg_catalog"], CONFIG, "schema name"),
    "demo-schema-not-an-identifier": Case(
        ["demo", "--runtime", "external", "--schema", "Sales Data"], CONFIG, "schema name"
    ),
    "as-of-month-13": Case(["seed", "--as-of", "2026-13-01"], CONFIG, "--as-of"),
    "as-of-a-word": Case(["seed", "--as-of", "yesterday"], CONFIG, "--as-of"),
    "as-of-day-first": Case(["demo", "--as-of", "31/01/2026"], CONFIG, "--as-of"),
    "as-of-at-the-end-of-time": Case(["seed", "--as-of", "9999-12-31"], CONFIG, "--as-of"),
    "seed-port-with-a-database-url": Case(
        ["seed", "--port", "5433", "--database-url", "postgresql://u@db.example.com/x"], CONFIG, "--port"
    ),
    "stack-name-with-a-space": Case(["up", "--name", "Sales EU"], CONFIG, "--name"),
    "metabase-url-without-http": Case(
        ["metabase", "setup", "--metabase-url", "ftp://mb"], CONFIG, "--metabase-url"
    ),
    "metabase-url-with-a-password": Case(
        ["metabase", "setup", "--metabase-url", f"http://admin:{SECRET}@mb:3000"], CONFIG, "--metabase-url"
    ),
    "database-url-of-another-database": Case(
        ["seed", "--database-url", f"mysql://u:{SECRET}@db/x"], CONFIG, "--database-url"
    ),
    "database-url-with-a-space-in-the-password": Case(
        ["seed", "--database-url", f"postgresql://u:{SECRET} x@db/x"], CONFIG, "--database-url"
    ),
    "database-url-with-an-unknown-option": Case(
        ["seed", "--database-url", f"postgresql://u:{SECRET}@db/x?no_such_option=1"], CONFIG, "--database-url"
    ),
    "reader-database-url-not-a-dsn": Case(
        ["seed", "--reader-database-url", "metabase_reader"], CONFIG, "--reader-database-url"
    ),
    # `validate --database-url "$(provision db url)"` after `db url` failed: refused, not run offline only.
    "validate-with-an-empty-database-url": Case(
        ["dashboards", "validate", "dashboards", "--database-url", ""], CONFIG, "--database-url is empty"
    ),
    "metabase-database-url-empty": Case(
        ["metabase", "connect", "--metabase-database-url", ""], CONFIG, "--metabase-database-url"
    ),
}


@pytest.mark.parametrize("case", COMMAND_LINE.values(), ids=COMMAND_LINE.keys())
def test_a_bad_command_line_is_one_error_line_and_writes_nothing(tmp_path: Path, case: Case) -> None:
    before = _tree(tmp_path)
    _assert_one_error_line(_run(case.args, case.env), case.exit_code, case.names)
    assert _tree(tmp_path) == before


# --- the environment and the local state --------------------------------------------------------

ENVIRONMENT_CASES = {
    "database-url-env-of-another-database": Case(
        ["seed"], CONFIG, "DATABASE_URL", {"DATABASE_URL": f"mysql://u:{SECRET}@db/x"}
    ),
    "metabase-url-env-without-a-scheme": Case(
        ["metabase", "setup"], CONFIG, "METABASE_URL", {"METABASE_URL": "localhost:3000"}
    ),
    "metabase-url-env-with-a-password": Case(
        ["status", "--runtime", "external"], CONFIG, "METABASE_URL", {"METABASE_URL": f"http://a:{SECRET}@mb"}
    ),
    "runtime-env-not-a-choice": Case(
        ["up"], CONFIG, "PROVISION_RUNTIME", {"PROVISION_RUNTIME": "kubernetes"}
    ),
    "stack-name-env-with-a-slash": Case(["down"], CONFIG, "PROVISION_NAME", {"PROVISION_NAME": "sales/eu"}),
    "reader-url-env-not-a-dsn": Case(
        ["seed"], CONFIG, "DATABASE_READER_URL", {"DATABASE_READER_URL": f"reader:{SECRET}"}
    ),
    "metabase-database-url-env-not-a-dsn": Case(
        ["metabase", "connect"], CONFIG, "METABASE_DATABASE_URL", {"METABASE_DATABASE_URL": "warehouse:5432"}
    ),
    "local-runtime-without-a-jar": Case(["up", "--runtime", "local"], CONFIG, "jar"),
    "local-runtime-with-a-missing-jar": Case(
        ["up", "--runtime", "local"], CONFIG, "does not exist", {"METABASE_JAR": "/nowhere/metabase.jar"}
    ),
    # Checked before the embedded PostgreSQL is started for it: no server, no data directory.
    "demo-on-the-local-runtime-with-a-missing-jar": Case(
        ["demo", "--runtime", "local", "--metabase-jar", "/nowhere/metabase.jar"], CONFIG, "does not exist"
    ),
    "local-runtime-command-with-an-unknown-placeholder": Case(
        ["up", "--runtime", "local"], CONFIG, "{nowhere}", {"METABASE_COMMAND": "metabase --dir {nowhere}"}
    ),
    "external-runtime-without-a-database": Case(["demo", "--runtime", "external"], CONFIG, "--database-url"),
    "docker-runtime-without-docker": Case(["up", "--runtime", "docker"], ENVIRONMENT, "docker", {"PATH": ""}),
    "db-url-before-the-embedded-server-exists": Case(["db", "url"], DATABASE, "no demo warehouse"),
}


@pytest.mark.parametrize("case", ENVIRONMENT_CASES.values(), ids=ENVIRONMENT_CASES.keys())
def test_a_bad_environment_is_one_error_line_and_writes_nothing(tmp_path: Path, case: Case) -> None:
    before = _tree(tmp_path)
    _assert_one_error_line(_run(case.args, case.env), case.exit_code, case.names)
    assert _tree(tmp_path) == before


DAMAGED_CREDENTIALS = {
    "not-json": '{"postgres": {"password": "' + SECRET,
    "a-list": f'["{SECRET}"]',
    "an-unknown-section": f'{{"postgress": {{"password": "{SECRET}"}}}}',
    "a-section-missing-its-password": '{"postgres": {"user": "postgres"}}',
}


@pytest.mark.parametrize("content", DAMAGED_CREDENTIALS.values(), ids=DAMAGED_CREDENTIALS.keys())
def test_a_damaged_credentials_file_stops_db_start_and_is_left_as_it_was(
    clean_environ: Path, tmp_path: Path, content: str
) -> None:
    clean_environ.mkdir(mode=0o700)
    (clean_environ / "postgres" / "data").mkdir(parents=True)
    (clean_environ / "postgres" / "data" / "PG_VERSION").write_text("17\n")  # an initialised cluster
    (clean_environ / "credentials.json").write_text(content)
    before = _tree(tmp_path)
    error = _assert_one_error_line(_run(["db", "start"]), CONFIG, "credentials.json is damaged")
    assert str(clean_environ / "credentials.json") in error
    assert _tree(tmp_path) == before


# --- the seed: what the database refuses ---------------------------------------------------------


def _objects_and_roles(server: PgServer, dsn: str) -> tuple[set[str], set[str]]:
    with psycopg.connect(dsn) as conn:
        objects = {
            f"{kind}:{name}"
            for name, kind in conn.execute(
                "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public'"
            ).fetchall()
        }
    with psycopg.connect(server.dsn()) as conn:
        roles = {row[0] for row in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
    return objects, roles


@pytest.fixture
def nothing_created(pg_server: PgServer, pg_dsn: str, tmp_path: Path) -> Iterator[Callable[[], None]]:
    """A check that the database's objects, the cluster's roles and the test's files are as they were."""
    before = _objects_and_roles(pg_server, pg_dsn), _tree(tmp_path)

    def check() -> None:
        assert (_objects_and_roles(pg_server, pg_dsn), _tree(tmp_path)) == before

    yield check


def _with(
    dsn: str, *, user: str | None = None, password: str | None = None, dbname: str | None = None
) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    parts = conninfo_to_dict(dsn)
    changes = {k: v for k, v in (("user", user), ("password", password), ("dbname", dbname)) if v is not None}
    return make_conninfo(**{**parts, **changes})


def test_seeding_a_database_that_does_not_exist_is_a_database_error(
    pg_dsn: str, nothing_created: Callable[[], None]
) -> None:
    missing = _with(pg_dsn, dbname="no_such_database_here")
    _assert_one_error_line(_run(["seed", "--database-url", missing]), DATABASE, "cannot connect")
    nothing_created()


def test_seeding_with_a_wrong_password_is_a_database_error_that_hides_it(
    pg_dsn: str, nothing_created: Callable[[], None]
) -> None:
    wrong = _with(pg_dsn, password=SECRET)
    error = _assert_one_error_line(
        _run(["seed", "--database-url", wrong]), DATABASE, "password authentication"
    )
    assert "<redacted>" in error
    nothing_created()


def test_seeding_over_same_named_objects_of_someone_else_changes_nothing(
    pg_server: PgServer, pg_dsn: str, tmp_path: Path
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE customers (id int, theirs text)")
        conn.execute("INSERT INTO customers VALUES (1, 'keep me')")
    before = _objects_and_roles(pg_server, pg_dsn), _tree(tmp_path)
    _assert_one_error_line(_run(["seed", "--database-url", pg_dsn]), DATABASE, "not created by this tool")
    assert (_objects_and_roles(pg_server, pg_dsn), _tree(tmp_path)) == before
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT theirs FROM customers").fetchall() == [("keep me",)]


def test_seeding_as_a_user_without_create_is_told_what_to_grant(pg_server: PgServer, pg_dsn: str) -> None:
    import uuid

    role = f"bi_{uuid.uuid4().hex[:8]}"
    dbname = str(psycopg.conninfo.conninfo_to_dict(pg_dsn)["dbname"])
    with psycopg.connect(pg_server.dsn(dbname), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'plain-pw-1'")
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    try:
        before = _objects_and_roles(pg_server, pg_dsn)
        weak = _with(pg_dsn, user=role, password="plain-pw-1")
        _assert_one_error_line(_run(["seed", "--database-url", weak]), DATABASE, "may not create")
        assert _objects_and_roles(pg_server, pg_dsn) == before
    finally:
        with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
            conn.execute(f"DROP ROLE {role}")


# --- dashboard YAML, through `dashboards apply`: refused before Metabase is asked anything ----------

GOOD_YAML = """\
key: sales
name: Sales
collection: Demo
filters:
  - {key: region, name: Region, type: category}
cards:
  - key: total
    name: Total sales
    display: scalar
    sql: SELECT count(*) AS total FROM sales WHERE true [[AND {{region}}]]
    tags: {region: {field: sales.region}}
    filters: {region: region}
    at: {row: 0, col: 0, width: 6, height: 3}
  - key: by-region
    name: Sales by region
    display: bar
    query:
      source: sales
      summarize: [count]
      group_by: [region]
    filters: {region: region}
    at: {row: 0, col: 6, width: 18, height: 6}
"""

# Each: (what to replace in GOOD_YAML, its replacement, the line the error names, words it names)
BAD_YAML = {
    "display-not-a-choice": ("display: scalar", "display: tabel", 9, "cards[0].display"),
    "unknown-field-on-a-card": ("    display: bar", "    colour: red\n    display: bar", 16, "colour"),
    "indentation": ("    display: scalar", "  display: scalar", 9, "indentation"),
    "card-wider-than-the-grid": ("width: 18", "width: 30", 22, "width"),
    "cards-overlap": ("col: 6, width: 18", "col: 4, width: 18", 22, "overlaps"),
    "duplicate-card-key": ("key: by-region", "key: total", 14, "total"),
    "filter-of-an-unknown-type": ("type: category}", "type: colour}", 5, "filters[0].type"),
    "card-wired-to-an-unknown-filter": (
        "filters: {region: region}\n    at: {row: 0, col: 6",
        ("filters: {region: regoin}\n    at: {row: 0, col: 6"),
        21,
        "regoin",
    ),
    "summary-of-an-unknown-function": ("summarize: [count]", "summarize: [tally(amount)]", 19, "tally"),
    "group-by-with-a-bad-temporal-unit": (
        "group_by: [region]",
        "group_by: [region:fortnight]",
        20,
        "group_by[0]",
    ),
    "card-with-both-sql-and-query": (
        "    display: bar\n",
        "    display: bar\n    sql: SELECT 1\n",
        14,
        "sql",
    ),
    "tag-of-a-field-without-a-table": ("field: sales.region", "field: region", 11, "tags.region.field"),
    "a-list-where-a-file-is-a-mapping": (GOOD_YAML, "- key: sales\n", 1, "mapping"),
    "a-tab-character": ("    display: scalar", "\tdisplay: scalar", 9, "tab"),
}


@pytest.mark.parametrize(("old", "new", "line", "names"), BAD_YAML.values(), ids=BAD_YAML.keys())
def test_a_bad_dashboard_file_is_one_error_line_naming_file_and_line_and_writes_nothing(
    tmp_path: Path, old: str, new: str, line: int, names: str
) -> None:
    assert old in GOOD_YAML
    (tmp_path / "sales.yaml").write_text(GOOD_YAML.replace(old, new, 1))
    before = _tree(tmp_path)
    # Nothing listens on port 9: the file must be refused before any request.
    result = _run(["dashboards", "apply", "sales.yaml", "--metabase-url", "http://127.0.0.1:9"])
    error = _assert_one_error_line(result, CONFIG, names)
    assert error.startswith(f"error: sales.yaml:{line}:"), error
    assert _tree(tmp_path) == before


def test_the_good_dashboard_file_of_those_cases_is_valid(tmp_path: Path) -> None:
    (tmp_path / "sales.yaml").write_text(GOOD_YAML)
    result = _run(["dashboards", "validate", "sales.yaml"])
    assert result.exit_code == 0, result.stderr  # type: ignore[attr-defined]
