"""`provision dashboards validate|plan|apply|restore|export|schema`: parse, call one core function, print."""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from provisioner.cli.context import JsonOption, output_for, settings_for
from provisioner.cli.options import ConcurrencyOption, MetabaseAddressOption, TargetOption
from provisioner.errors import ConfigError

if TYPE_CHECKING:
    from provisioner.config import Settings

dashboards_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Dashboards as YAML: validate, plan, apply, export."
)

PathsArgument = Annotated[
    list[Path] | None,
    typer.Argument(
        metavar="PATHS",
        help="Dashboard files or folders (default: the project file's, else ./dashboards, else the demo's).",
        show_default=False,
    ),
]
PruneOption = Annotated[
    bool,
    typer.Option("--prune", help="Archive (never delete) managed cards and dashboards gone from the YAML."),
]


class PlanFormat(StrEnum):
    """The values of `plan --format`."""

    text = "text"
    json = "json"
    markdown = "markdown"


def _paths(given: list[Path] | None, settings: Settings) -> list[Path]:
    """The paths given, else the ones the settings found; ConfigError saying where it looked."""
    from provisioner.workspace import no_dashboards_error

    if given:
        return list(given)
    if settings.dashboards:
        return list(settings.dashboards)
    raise no_dashboards_error(settings, Path.cwd())


def _environ(settings: Settings) -> dict[str, str]:
    """The `${VAR}` values of dashboard files: the target's, overridden by the environment."""
    return {**settings.variables, **os.environ}


@dashboards_app.command("validate")
def validate_command(
    ctx: typer.Context,
    paths: PathsArgument = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            metavar="DSN",
            help="Also prepare every card's SQL on this PostgreSQL (read only); with --target, the "
            "target's database_url_env.",
        ),
    ] = None,
    target: TargetOption = None,
    json_output: JsonOption = False,
) -> None:
    """Check dashboard files offline; every problem with file:line:column, in one run."""
    from provisioner import dashboards

    output = output_for(ctx, json_output)
    if database_url is not None and not database_url.strip():
        raise ConfigError(
            "--database-url is empty: the SQL would not be checked",
            hint="give a PostgreSQL URL; with `$(provision db url)`, that command failed: run it alone "
            "to see why, or leave --database-url out for the offline checks",
        )
    settings = settings_for(target=target, target_credentials=False)
    dsn = database_url or (
        settings.database_url.get_secret_value() if settings.target and settings.database_url else None
    )
    result = dashboards.validate(
        _paths(paths, settings), database_url=dsn, environ=_environ(settings), progress=output.progress
    )
    output.result(result.to_dict(), result.describe)


@dashboards_app.command("plan")
def plan_command(
    ctx: typer.Context,
    paths: PathsArgument = None,
    prune: PruneOption = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", metavar="FILE", help="Save the plan (and the files it was made from) for `apply FILE`."
        ),
    ] = None,
    metabase_url: MetabaseAddressOption = None,
    target: TargetOption = None,
    output_format: Annotated[
        PlanFormat,
        typer.Option(
            "--format",
            help="text, json (as --json), or markdown: a comment for a pull request (what is created, "
            "updated, archived).",
        ),
    ] = PlanFormat.text,
    concurrency: ConcurrencyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show what `apply` would change; changes nothing. Exit 2 when changes are pending."""
    from provisioner import dashboards

    output = output_for(ctx, json_output or output_format == PlanFormat.json)
    settings = settings_for(metabase_url=metabase_url, target=target, concurrency=concurrency)
    plan = dashboards.plan(
        settings,
        _paths(paths, settings),
        prune=prune,
        out=out,
        progress=output.progress,
        environ=_environ(settings),
    )

    def text() -> str:
        if output_format == PlanFormat.markdown:
            from provisioner.cli.plan_markdown import plan_markdown

            return plan_markdown(plan, metabase_url=settings.metabase_url, target=settings.target)
        return plan.describe()

    # Changes pending is a finding, not a failure: `ok` stays true, the exit code says 2.
    output.result(plan.to_dict(), text, exit_code=2 if plan.has_changes else 0)
    if plan.has_changes:
        raise typer.Exit(2)  # scripts and CI read "changes pending" from the exit code


BackupDirOption = Annotated[
    Path | None,
    typer.Option(
        "--backup-dir",
        metavar="DIR",
        help="Keep backups here instead of .provision/backups/.",
        show_default=False,
    ),
]


@dashboards_app.command("apply")
def apply_command(
    ctx: typer.Context,
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Dashboard files or directories (default: dashboards/), or one plan saved by `plan --out`.",
            show_default=False,
        ),
    ] = None,
    prune: PruneOption = False,
    force: Annotated[
        bool, typer.Option("--force", help="Apply a saved plan even if Metabase changed since it was made.")
    ] = False,
    backup_dir: BackupDirOption = None,
    metabase_url: MetabaseAddressOption = None,
    target: TargetOption = None,
    concurrency: ConcurrencyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Create or update collections, cards and dashboards; unchanged objects are not touched.

    What it changes or archives is backed up first; `restore` puts it back.
    """
    from provisioner import dashboards

    output = output_for(ctx, json_output)
    settings = settings_for(metabase_url=metabase_url, target=target, concurrency=concurrency)
    result = dashboards.apply(
        settings,
        _paths(paths, settings),
        prune=prune,
        force=force,
        backup_dir=backup_dir,
        progress=output.progress,
        environ=_environ(settings),
    )
    output.result(result.to_dict(), result.describe, ok=result.ok, exit_code=0 if result.ok else 1)
    if not result.ok:
        raise typer.Exit(1)  # written, but a query fails in Metabase or the read-back differs


@dashboards_app.command("restore")
def restore_command(
    ctx: typer.Context,
    backup: Annotated[
        Path,
        typer.Argument(metavar="BACKUP", help="A backup directory an apply wrote (.provision/backups/...)."),
    ],
    backup_dir: BackupDirOption = None,
    metabase_url: MetabaseAddressOption = None,
    target: TargetOption = None,
    json_output: JsonOption = False,
) -> None:
    """Put back the cards and dashboards an apply changed or archived; archive what it created."""
    from provisioner import dashboards

    output = output_for(ctx, json_output)
    settings = settings_for(metabase_url=metabase_url, target=target)
    result = dashboards.restore(settings, backup, backup_dir=backup_dir, progress=output.progress)
    output.result(result.to_dict(), result.describe, ok=result.ok, exit_code=0 if result.ok else 1)
    if not result.ok:
        raise typer.Exit(1)


@dashboards_app.command("export")
def export_command(
    ctx: typer.Context,
    dashboard: Annotated[
        list[str], typer.Argument(metavar="NAME_OR_ID...", help="Dashboard name or id (several allowed).")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", metavar="DIR", help="Directory to write the YAML to (not dashboards/: review first)."
        ),
    ] = Path("exported"),
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite a file, or a key already used in --out.")
    ] = False,
    metabase_url: MetabaseAddressOption = None,
    target: TargetOption = None,
    json_output: JsonOption = False,
) -> None:
    """Write existing Metabase dashboards as YAML: every id becomes a name, nothing is left out."""
    from provisioner import dashboards

    output = output_for(ctx, json_output)
    settings = settings_for(metabase_url=metabase_url, target=target)
    result = dashboards.export(settings, dashboard, out_dir=out, force=force, progress=output.progress)
    output.result(result.to_dict(), result.describe)


@dashboards_app.command("schema")
def schema_command(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Print the JSON Schema of dashboard files (for editors; kept in dashboards/schema.json)."""
    from provisioner import dashboards

    output = output_for(ctx, json_output)
    schema = dashboards.schema()
    if output.json_mode:
        output.result({"schema": schema})
    else:  # the schema itself, as editors and `> schema.json` want it
        sys.stdout.write(json.dumps(schema, indent=2) + "\n")
