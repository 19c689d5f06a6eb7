"""The root command: errors rendered once (text on stderr, JSON on stdout with --json), exit codes, -v."""

from __future__ import annotations

import json
import logging

import pytest
import typer
from typer.testing import CliRunner

from provisioner.cli.app import _log_http_requests, _RendersProvisionErrors
from provisioner.cli.context import output_for
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
    _log_http_requests()
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
