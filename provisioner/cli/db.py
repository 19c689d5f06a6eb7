"""`provision seed` and `provision db start|stop|status|url`: parse, call one core function, print."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from provisioner.cli.context import JsonOption, output_for, settings_for
from provisioner.cli.options import AsOfOption, DatabaseUrlOption, ScaleOption, SchemaOption, parse_as_of
from provisioner.errors import ConfigError

if TYPE_CHECKING:
    from provisioner.db.seed import SeedResult
    from provisioner.runtime.warehouse import DbStatus

db_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Manage the embedded PostgreSQL server."
)

PortOption = Annotated[
    int | None,
    typer.Option(
        "--port",
        metavar="PORT",
        min=1,
        max=65535,
        help="Port of the embedded PostgreSQL on 127.0.0.1 (default: the last one used, else a free one).",
    ),
]
ReaderDatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--reader-database-url",
        metavar="DSN",
        help="A read-only login for Metabase, used instead of the generated metabase_reader role "
        "(env DATABASE_READER_URL).",
    ),
]


def register_top_level(app: typer.Typer) -> None:
    """Add `provision seed` to the root app."""
    app.command("seed")(seed_command)


def seed_command(
    ctx: typer.Context,
    as_of: AsOfOption = None,
    reset: Annotated[bool, typer.Option("--reset", help="Drop and rebuild the demo objects.")] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace same-named tables and views this tool did not create."),
    ] = False,
    port: PortOption = None,
    database_url: DatabaseUrlOption = None,
    reader_database_url: ReaderDatabaseUrlOption = None,
    schema: SchemaOption = None,
    scale: ScaleOption = None,
    json_output: JsonOption = False,
) -> None:
    """Create and fill the demo warehouse (24 tables, 8 views): embedded PostgreSQL unless --database-url."""
    from provisioner.db.seed import check_scale
    from provisioner.seeding import seed

    output = output_for(ctx, json_output)
    as_of_date = parse_as_of(as_of)
    copies = None if scale is None else check_scale(scale)
    settings = settings_for(
        use_target=False, database_url=database_url, reader_database_url=reader_database_url
    )
    if port is not None and settings.database_url is not None:
        raise ConfigError(
            "--port applies to the embedded PostgreSQL, not to --database-url (or DATABASE_URL)",
            hint="put the port in the database URL instead",
        )
    result = seed(
        settings,
        as_of=as_of_date,
        reset=reset,
        force=force,
        port=port,
        progress=output.progress,
        schema=schema,
        scale=copies,
    )
    output.result(result.model_dump(mode="json"), lambda: _seed_text(result))


@db_app.command("start")
def start_command(ctx: typer.Context, port: PortOption = None, json_output: JsonOption = False) -> None:
    """Start the embedded PostgreSQL (or reuse it) on 127.0.0.1."""
    from provisioner.runtime.warehouse import db_start

    output = output_for(ctx, json_output)
    status = db_start(settings_for(use_target=False), port=port, progress=output.progress)
    output.result(status.model_dump(mode="json"), lambda: _status_text(status))


@db_app.command("stop")
def stop_command(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Stop the embedded PostgreSQL; its data stays."""
    from provisioner.runtime.warehouse import db_stop

    output = output_for(ctx, json_output)
    status = db_stop(settings_for(use_target=False), progress=output.progress)
    output.result(status.model_dump(mode="json"), lambda: _status_text(status))


@db_app.command("status")
def status_command(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Whether the embedded PostgreSQL runs, where, and what is seeded in it."""
    from provisioner.runtime.warehouse import db_status

    output = output_for(ctx, json_output)
    status = db_status(settings_for(use_target=False))
    output.result(status.model_dump(mode="json"), lambda: _status_text(status))


@db_app.command("url")
def url_command(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Print the warehouse DSN WITH its password, for `psql "$(provision db url)"`."""
    from provisioner.runtime.warehouse import db_url

    output = output_for(ctx, json_output)
    url = db_url(settings_for(use_target=False))
    # Printing the password is this command's whole job; every other command redacts it.
    output.result({"url": url}, url)


def _seed_text(result: SeedResult) -> str:
    rows = sum(result.counts.values())
    verb = "Seeded" if result.changed else "Already up to date:"
    scale = "" if result.scale == 1 else f" at scale {result.scale}"
    lines = [
        f"{verb} the demo warehouse as of {result.as_of}{scale}: {len(result.counts)} tables, {rows} rows",
        f"  database: {result.database}",
        f"  schema: {result.schema_name}",
        f"  checksum: {result.checksum[:16]}",
    ]
    if result.data_api is not None:
        lines.append(f"  Data API: {result.data_api.summary}")
    reader = result.reader
    if reader.fallback_warning is None:
        state = "created" if reader.created else "ready"
        lines.append(f"  read-only role for Metabase: {reader.role} ({state})")
    else:
        lines.append(f"  read-only role for Metabase: not available ({reader.role})")
    if reader.dba_sql:
        lines += ["", "SQL a DBA can run to create the read-only role:", reader.dba_sql.rstrip()]
    return "\n".join(lines)


def _status_text(status: DbStatus) -> str:
    if not status.running:
        return f"embedded PostgreSQL: stopped (data in {status.data_dir})"
    lines = [
        f"embedded PostgreSQL: running (pid {status.pid}) on 127.0.0.1:{status.port}",
        f"  data: {status.data_dir}",
    ]
    if status.dsn_redacted:
        lines.append(f"  url: {status.dsn_redacted}   (`provision db url` prints it with the password)")
    if status.seeded:
        lines.append(f"  demo data: {status.seeded.summary}")
        if status.seeded.damage:
            lines.append("  (`provision seed` puts it back)")
    elif status.detail:
        lines.append(f"  demo data: unknown ({status.detail})")
    else:
        lines.append("  demo data: not seeded (run `provision seed`)")
    return "\n".join(lines)
