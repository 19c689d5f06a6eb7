"""`provision dashboards validate|plan|apply|restore|export|schema`: parse, call one core function, print."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from provisioner.cli.context import JsonOption, output_for, settings_for
from provisioner.cli.options import ConcurrencyOption, MetabaseAddressOption

dashboards_app = typer.Typer(no_args_is_help=True, help="Dashboards as YAML: validate, plan, apply, export.")

PathsArgument = Annotated[
    list[Path] | None,
    typer.Argument(help="Dashboard files or directories (default: dashboards/).", show_default=False),
]
PruneOption = Annotated[
    bool,
    typer.Option("--prune", help="Archive (never delete) managed cards and dashboards gone from the YAML."),
]


def _paths(paths: list[Path] | None) -> list[Path]:
    return list(paths) if paths else [Path("dashboards")]


@dashboards_app.command("validate")
def validate_command(
    ctx: typer.Context,
    paths: PathsArgument = None,
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="Also prepare every card's SQL on this PostgreSQL (read only)."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Check dashboard files offline; every problem with file:line:column, in one run."""
    from provisioner import dashboards

    output = output_for(ctx, json_output)
    result = dashboards.validate(_paths(paths), database_url=database_url, progress=output.progress)
    output.result(result.to_dict(), result.describe)


@dashboards_app.command("plan")
def plan_command(
    ctx: typer.Context,
    paths: PathsArgument = None,
    prune: PruneOption = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Save the plan (and the files it was made from) for `apply FILE`."),
    ] = None,
    metabase_url: MetabaseAddressOption = None,
    concurrency: ConcurrencyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show what `apply` would change; changes nothing. Exit 2 when changes are pending."""
    from provisioner import dashboards

    output = output_for(ctx, json_output)
    settings = settings_for(metabase_url=metabase_url, concurrency=concurrency)
    plan = dashboards.plan(settings, _paths(paths), prune=prune, out=out, progress=output.progress)
    output.result(plan.to_dict(), plan.describe)
    if plan.has_changes:
        raise typer.Exit(2)  # scripts and CI read "changes pending" from the exit code


BackupDirOption = Annotated[
    Path | None,
    typer.Option(
        "--backup-dir", help="Keep backups here instead of .provision/backups/.", show_default=False
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
    concurrency: ConcurrencyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Create or update collections, cards and dashboards; unchanged objects are not touched.

    What it changes or archives is backed up first; `restore` puts it back.
    """
    from provisioner import dashboards

    output = output_for(ctx, json_output)
    settings = settings_for(metabase_url=metabase_url, concurrency=concurrency)
    result = dashboards.apply(
        settings, _paths(paths), prune=prune, force=force, backup_dir=backup_dir, progress=output.progress
    )
    output.result(result.to_dict(), result.describe)
    if not result.ok:
        raise typer.Exit(1)  # written, but a query fails in Metabase or the read-back differs


@dashboards_app.command("restore")
def restore_command(
    ctx: typer.Context,
    backup: Annotated[
        Path, typer.Argument(help="A backup directory an apply wrote (.provision/backups/...).")
    ],
    backup_dir: BackupDirOption = None,
    metabase_url: MetabaseAddressOption = None,
    json_output: JsonOption = False,
) -> None:
    """Put back the cards and dashboards an apply changed or archived; archive what it created."""
    from provisioner import dashboards

    output = output_for(ctx, json_output)
    settings = settings_for(metabase_url=metabase_url)
    result = dashboards.restore(settings, backup, backup_dir=backup_dir, progress=output.progress)
    output.result(result.to_dict(), result.describe)
    if not result.ok:
        raise typer.Exit(1)


@dashboards_app.command("export")
def export_command(
    ctx: typer.Context,
    dashboard: Annotated[list[str], typer.Argument(help="Dashboard name or id (several allowed).")],
    out: Annotated[
        Path, typer.Option("--out", help="Directory to write the YAML to (not dashboards/: review first).")
    ] = Path("exported"),
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite a file, or a key already used in --out.")
    ] = False,
    metabase_url: MetabaseAddressOption = None,
    json_output: JsonOption = False,
) -> None:
    """Write existing Metabase dashboards as YAML: every id becomes a name, nothing is left out."""
    from provisioner import dashboards

    output = output_for(ctx, json_output)
    settings = settings_for(metabase_url=metabase_url)
    result = dashboards.export(settings, dashboard, out_dir=out, force=force, progress=output.progress)
    output.result(result.to_dict(), result.describe)


@dashboards_app.command("schema")
def schema_command(json_output: JsonOption = False) -> None:
    """Print the JSON Schema of dashboard files (for editors; kept in dashboards/schema.json)."""
    from provisioner import dashboards

    del json_output  # the schema is JSON either way; the flag is accepted like on every command
    sys.stdout.write(json.dumps(dashboards.schema(), indent=2) + "\n")
