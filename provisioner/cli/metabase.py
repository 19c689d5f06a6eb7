"""`provision metabase setup|connect`: parse, call one core function, print."""

from __future__ import annotations

from typing import Annotated

import typer

from provisioner.cli.context import JsonOption, output_for, settings_for
from provisioner.cli.options import MetabaseAddressOption, TargetOption

metabase_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Set up Metabase and register the database."
)


@metabase_app.command("setup")
def setup_command(
    ctx: typer.Context,
    metabase_url: MetabaseAddressOption = None,
    target: TargetOption = None,
    json_output: JsonOption = False,
) -> None:
    """Wait for Metabase, create its admin on first run, and an API key for this tool."""
    from provisioner.metabase.setup import setup_metabase

    output = output_for(ctx, json_output)
    settings = settings_for(metabase_url=metabase_url, target=target)
    result = setup_metabase(settings, progress=output.progress)

    def text() -> str:
        lines = [
            f"Metabase {result.version} at {result.metabase_url}",
            f"Logged in as: {result.who}",
            f"Credentials: {result.credentials_file}"
            if result.credentials_stored
            else "Credentials: none stored (METABASE_API_KEY was used)",
        ]
        if result.created_admin:
            lines.append(f"Created the admin {result.user_email} (password in the credentials file)")
        return "\n".join(lines)

    output.result(result.model_dump(mode="json"), text)


@metabase_app.command("connect")
def connect_command(
    ctx: typer.Context,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url", metavar="DSN", help="Owner DSN of the demo database (env DATABASE_URL)."
        ),
    ] = None,
    metabase_database_url: Annotated[
        str | None,
        typer.Option(
            "--metabase-database-url",
            metavar="DSN",
            help="The DSN Metabase itself uses (inside Docker the host differs); env METABASE_DATABASE_URL; "
            "default: the read-only role on the --database-url host.",
        ),
    ] = None,
    metabase_url: MetabaseAddressOption = None,
    target: TargetOption = None,
    json_output: JsonOption = False,
) -> None:
    """Register the demo database in Metabase as the read-only role and wait for its tables."""
    from provisioner.connect import connect_database

    output = output_for(ctx, json_output)
    settings = settings_for(
        target=target,
        metabase_url=metabase_url,
        database_url=database_url,
        metabase_database_url=metabase_database_url,
    )
    result = connect_database(settings, progress=output.progress)

    def text() -> str:
        return "\n".join(
            [
                f"Database {result.database_name!r} (id {result.database_id}): {result.action}",
                f"Metabase connects with: {result.connection}",
                f"Tables and views visible in Metabase: {result.tables_found}/{result.tables_expected}",
            ]
        )

    output.result(result.model_dump(mode="json"), text)


@metabase_app.command("check")
def check_command(
    ctx: typer.Context,
    database: Annotated[
        str | None,
        typer.Option(
            "--database", metavar="NAME", help="The database to read (default: the first one added)."
        ),
    ] = None,
    metabase_url: MetabaseAddressOption = None,
    json_output: JsonOption = False,
) -> None:
    """Probe this Metabase: write scratch cards as apply does, read them back, run them, archive them."""
    from provisioner.probe import check

    output = output_for(ctx, json_output)
    result = check(settings_for(metabase_url=metabase_url), database=database, progress=output.progress)
    output.result(result.to_dict(), result.describe)
