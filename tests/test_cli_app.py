"""The root command: errors rendered once (text on stderr, JSON on stdout with --json), exit codes, -v."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from provisioner.cli.app import _RendersProvisionErrors
from provisioner.cli.context import output_for
from provisioner.cli.http_log import log_http_requests
from provisioner.errors import DatabaseError


def _app_raising(error: BaseException) -> typer.Typer:
    app = typer.Typer(cls=_RendersProvisionErrors)

    @app.callback()
    def root() -> None:
        pass

    @app.command()
    def boom(ctx: typer.Context, json_output: bool = typer.Option(False, "--json")) -> None:
        output_for(ctx, json_output).progress.step("Doing the thing")
        raise error

    return app


def test_a_provision_error_is_one_error_and_hint_line_with_its_exit_code() -> None:
    app = _app_raising(DatabaseError("cannot connect", hint="start it"))
    result = CliRunner().invoke(app, ["boom"])
    assert result.exit_code == 5
    assert result.stdout == ""
    assert result.stderr == "→ Doing the thing\nerror: cannot connect\nhint: start it\n"


def test_with_json_the_error_is_also_one_json_document_on_stdout() -> None:
    app = _app_raising(DatabaseError("cannot connect", hint="start it"))
    result = CliRunner().invoke(app, ["boom", "--json"])
    assert result.exit_code == 5
    assert json.loads(result.stdout) == {
        "ok": False,
        "error": "database",
        "message": "cannot connect",
        "hint": "start it",
        "exit_code": 5,
    }
    assert "error: cannot connect" in result.stderr


def test_ctrl_c_exits_130_and_says_a_rerun_resumes() -> None:
    result = CliRunner().invoke(_app_raising(KeyboardInterrupt()), ["boom"])
    assert result.exit_code == 130
    assert "run the same command again" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_any_other_exception_is_not_dressed_up_as_handled() -> None:
    result = CliRunner().invoke(_app_raising(ValueError("bug")), ["boom"])
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)


@pytest.fixture
def http_log() -> logging.Logger:
    logger = logging.getLogger("urllib3.connectionpool")
    log_http_requests()
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)


def test_verbose_shows_each_http_request_line_redacted(capsys, http_log: logging.Logger) -> None:
    http_log.debug(
        '%s://%s:%s "%s %s %s" %s %s', "http", "h", 3000, "GET", "/api/x?k=mb_SECRET1234", "HTTP/1.1", 200, 5
    )
    http_log.debug("Starting new HTTP connection (%d): %s:%s", 1, "h", 3000)
    err = capsys.readouterr().err
    assert '"GET /api/x?k=<redacted> HTTP/1.1" 200' in err
    assert "SECRET1234" not in err and "Starting new" not in err


def test_runtime_settings_takes_keyword_arguments_only() -> None:
    from provisioner.cli.options import runtime_settings

    with pytest.raises(TypeError):
        runtime_settings(None, "demo", "http://mb:3000")  # type: ignore[misc]


def test_metabase_url_is_the_same_option_on_every_command() -> None:
    from provisioner.cli.app import app

    command = typer.main.get_command(app)
    helps = set()
    names = ["demo", "reset", "up", "down", "status", "doctor", "metabase setup", "metabase connect"]
    names += ["dashboards plan", "dashboards apply", "dashboards export"]
    for name in names:
        sub = command
        for part in name.split():
            sub = sub.commands[part]  # type: ignore[attr-defined]
        (option,) = [p for p in sub.params if "--metabase-url" in p.opts]
        helps.add(option.help)
    assert len(helps) == 1


def _leaf_commands() -> list[str]:
    from provisioner.cli.app import app

    found: list[str] = []

    def walk(command: object, prefix: str) -> None:
        children = getattr(command, "commands", None)
        if not children:
            found.append(prefix)
            return
        for name, child in children.items():
            walk(child, f"{prefix} {name}".strip())

    walk(typer.main.get_command(app), "")
    return sorted(found)


def test_every_command_answers_json_in_one_shape(tmp_path, monkeypatch) -> None:
    from provisioner.cli.app import app
    from provisioner.runtime.postgres import free_port
    from tests.paths import TESTS

    dead = f"http://127.0.0.1:{free_port()}"
    nowhere = f"postgresql://u:pw@127.0.0.1:{free_port()}/x"
    dashboards = str(TESTS.parent / "dashboards")
    # Each command with arguments that answer at once, in success or in failure.
    runs = {
        "dashboards apply": ["dashboards", "apply", dashboards, "--metabase-url", dead],
        "dashboards export": ["dashboards", "export", "Sales", "--metabase-url", dead],
        "dashboards plan": ["dashboards", "plan", dashboards, "--metabase-url", dead],
        "dashboards restore": ["dashboards", "restore", str(tmp_path), "--metabase-url", dead],
        "dashboards schema": ["dashboards", "schema"],
        "dashboards validate": ["dashboards", "validate", dashboards],
        "db start": ["db", "start"],
        "db status": ["db", "status"],
        "db stop": ["db", "stop"],
        "db url": ["db", "url"],
        "demo": ["demo", "--runtime", "external"],
        "doctor": ["doctor", "--runtime", "external", "--metabase-url", dead],
        "down": ["down", "--runtime", "external"],
        "init": ["init"],
        "metabase check": ["metabase", "check", "--metabase-url", dead],
        "metabase connect": ["metabase", "connect", "--metabase-url", dead, "--database-url", nowhere],
        "metabase setup": ["metabase", "setup", "--metabase-url", dead],
        "reset": ["reset", "--runtime", "external"],
        "seed": ["seed", "--database-url", nowhere],
        "status": ["status", "--runtime", "external", "--metabase-url", dead],
        "up": ["up", "--runtime", "external"],
    }
    assert sorted(runs) == _leaf_commands(), "a new command needs its case here"
    (tmp_path / "state-is-a-file").write_text("")
    monkeypatch.setenv("PROVISION_HOME", str(tmp_path / "state-is-a-file"))  # db start fails at once
    seen = set()
    for name, args in runs.items():
        result = CliRunner().invoke(app, [*args, "--json"])
        document = json.loads(result.stdout)
        assert list(document)[:2] == ["ok", "exit_code"], (name, document)
        assert document["exit_code"] == result.exit_code, (name, document)
        if document["ok"]:
            assert result.exit_code in (0, 2), name
        else:
            assert result.exit_code != 0 and ("error" in document or name in ("status", "doctor")), name
        seen.add(document["ok"])
    assert seen == {True, False}


def test_a_typo_on_the_command_line_exits_64_never_2_the_code_of_pending_changes() -> None:
    from provisioner.cli.app import app

    for args in (["dashboards", "plan", "--prnue"], ["dashboards", "plan", "--format", "html"], ["--bogus"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 64, (args, result.stderr)
        assert len([line for line in result.stderr.splitlines() if line.startswith("error: ")]) == 1
    bare = CliRunner().invoke(app, ["dashboards"])
    assert bare.exit_code == 64 and "Usage: provision dashboards" in bare.stderr


def test_help_shows_plain_placeholders_and_whole_choices() -> None:
    from provisioner.cli.app import app

    text = CliRunner().invoke(app, ["demo", "--help"]).stdout
    assert "<bool>" not in text and "╭" not in text
    assert "--runtime <auto|docker|local|external>" in text
    assert "--metabase-url URL" in text and "--database-url DSN" in text and "--as-of DATE" in text
    assert "<bool>" not in CliRunner().invoke(app, ["--help"]).stdout


def test_no_option_of_any_command_shows_a_type_placeholder() -> None:
    import re

    import typer.main

    from provisioner.cli.app import app

    def commands(group: Any, path: list[str]) -> list[list[str]]:
        found = [path]
        if hasattr(group, "commands"):  # a group (typer's own click)
            for name, command in group.commands.items():
                found += commands(command, [*path, name])
        return found

    placeholder = re.compile(r"^\s+--[a-z-]+ <(str|int|bool|path|float)>", re.MULTILINE)
    every = commands(typer.main.get_command(app), [])
    assert len(every) > 20
    for path in every:
        text = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"}).stdout
        assert placeholder.search(text) is None, (path, placeholder.findall(text))


def test_version_prints_the_package_version() -> None:
    from provisioner import __version__
    from provisioner.cli.app import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"provision (metabase-provisioner) {__version__}\n"
