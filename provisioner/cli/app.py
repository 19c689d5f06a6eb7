"""The root `provision` command: global options, sub-commands, and the one error renderer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from provisioner.cli.context import JsonOption, output_for, state_of
from provisioner.errors import Interrupted, ProvisionError, UsageProblem

if TYPE_CHECKING:
    # The base class of typer.Context, as TyperGroup.invoke declares it (typer vendors click).
    from typer._click.core import Context as BaseContext

# The command-line parser's own error (an unknown option, a flag's value of the wrong type): the base
# class of typer's BadParameter, reached through it because typer vendors its click.
_UsageError: type[Exception] = typer.BadParameter.__mro__[1]


class _RendersProvisionErrors(TyperGroup):
    """Turns a ProvisionError, or a usage error, into `error:`/`hint:` on stderr and its exit code, once."""

    def parse_args(self, ctx: BaseContext, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except _UsageError as error:  # the root's own options (`provision --bogus`)
            raise _rendered(ctx, error) from None

    def invoke(self, ctx: BaseContext) -> Any:
        try:
            return super().invoke(ctx)
        except ProvisionError as error:
            state_of(ctx).output.error(error)
            raise typer.Exit(error.exit_code) from None
        except _UsageError as error:  # a command's options and arguments, an unknown command
            raise _rendered(ctx, error) from None
        except KeyboardInterrupt:
            interrupted = Interrupted("interrupted", hint="run the same command again: it resumes")
            state_of(ctx).output.error(interrupted)
            raise typer.Exit(interrupted.exit_code) from None


def _rendered(ctx: BaseContext, error: Exception) -> Exception:
    """The exit for a usage error, shown as one `error:` line and a hint; `--help` itself is left alone."""
    if type(error).__name__ == "NoArgsIsHelpError":  # a bare `provision` or `provision db`: the help
        error.exit_code = UsageProblem.exit_code  # type: ignore[attr-defined]  # on stderr, as a usage error
        return error
    where = getattr(error, "ctx", None) or ctx
    problem = UsageProblem(
        getattr(error, "format_message", error.__str__)(), hint=f"see `{where.command_path} --help`"
    )
    state_of(ctx).output.error(problem)
    return typer.Exit(problem.exit_code)


app = typer.Typer(
    cls=_RendersProvisionErrors,
    name="provision",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    # Plain help, as click formats it: no `<bool>` placeholders, choices never broken mid-word.
    rich_markup_mode=None,
    add_completion=False,
    help="Metabase-as-code: a one-command analytics demo, and dashboards kept as YAML.",
)


def _show_version(wanted: bool) -> None:
    if wanted:
        from provisioner import __version__

        typer.echo(f"provision (metabase-provisioner) {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    json_output: JsonOption = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also show every HTTP request to Metabase on stderr.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_show_version, help="Print the version and exit."),
    ] = False,
) -> None:
    """Metabase-as-code: a one-command analytics demo, and dashboards kept as YAML."""
    output_for(ctx, json_output)
    if verbose:
        from provisioner.cli.http_log import log_http_requests  # logging costs --help 10 ms

        log_http_requests()


def _register() -> None:
    from provisioner.cli import dashboards, db, demo, init, metabase, stack

    app.add_typer(db.db_app, name="db")
    app.add_typer(metabase.metabase_app, name="metabase")
    app.add_typer(dashboards.dashboards_app, name="dashboards")
    db.register_top_level(app)
    demo.register_top_level(app)
    stack.register_top_level(app)
    init.register_top_level(app)


_register()


def main() -> None:
    """Console-script entry point."""
    app()
