"""`provision up|down|status|doctor`: parse, call one core function, print."""

from __future__ import annotations

from typing import Annotated

import typer

from provisioner.cli.context import JsonOption, output_for
from provisioner.cli.options import (
    DatabaseUrlOption,
    MetabaseAddressOption,
    MetabaseCommandOption,
    MetabaseJarOption,
    NameOption,
    RuntimeOption,
    TargetOption,
    runtime_settings,
)


def up_command(
    ctx: typer.Context,
    runtime: RuntimeOption = None,
    name: NameOption = None,
    metabase_url: MetabaseAddressOption = None,
    database_url: DatabaseUrlOption = None,
    metabase_jar: MetabaseJarOption = None,
    metabase_command: MetabaseCommandOption = None,
    json_output: JsonOption = False,
) -> None:
    """Start Metabase and the warehouse and wait until they are healthy (no setup, no data)."""
    from provisioner.redact import redact_dsn
    from provisioner.stack import bring_up

    output = output_for(ctx, json_output)
    settings = runtime_settings(
        runtime=runtime,
        name=name,
        metabase_url=metabase_url,
        database_url=database_url,
        metabase_jar=metabase_jar,
        metabase_command=metabase_command,
    )
    endpoints = bring_up(settings, progress=output.progress)
    warehouse = redact_dsn(endpoints.warehouse_dsn.get_secret_value()) if endpoints.warehouse_dsn else None
    data = {"metabase_url": endpoints.metabase_url, "warehouse": warehouse}

    def text() -> str:
        lines = [f"Metabase: {endpoints.metabase_url}"]
        if warehouse:
            lines.append(f"Warehouse: {warehouse}")
        lines.append("Next: `provision demo` sets up Metabase, the data and the dashboards.")
        return "\n".join(lines)

    output.result(data, text)


def down_command(
    ctx: typer.Context,
    volumes: Annotated[
        bool, typer.Option("--volumes", help="Also delete the data (volumes, embedded database).")
    ] = False,
    runtime: RuntimeOption = None,
    name: NameOption = None,
    metabase_url: MetabaseAddressOption = None,
    database_url: DatabaseUrlOption = None,
    metabase_jar: MetabaseJarOption = None,
    metabase_command: MetabaseCommandOption = None,
    json_output: JsonOption = False,
) -> None:
    """Stop the demo; its data is kept unless --volumes is given."""
    from provisioner.stack import bring_down

    output = output_for(ctx, json_output)
    settings = runtime_settings(
        runtime=runtime,
        name=name,
        metabase_url=metabase_url,
        database_url=database_url,
        metabase_jar=metabase_jar,
        metabase_command=metabase_command,
    )
    stopped = bring_down(settings, volumes=volumes, progress=output.progress)
    deleted = volumes and stopped != "external"  # an external Metabase and database are never touched
    if stopped == "external":
        text = "Nothing was stopped or deleted: the external Metabase and database are yours."
    else:
        text = f"The {stopped} demo is " + (
            "stopped and its data deleted." if deleted else "stopped (data kept)."
        )
    output.result({"runtime": stopped, "data_deleted": deleted}, text)


def status_command(
    ctx: typer.Context,
    runtime: RuntimeOption = None,
    name: NameOption = None,
    metabase_url: MetabaseAddressOption = None,
    database_url: DatabaseUrlOption = None,
    metabase_jar: MetabaseJarOption = None,
    metabase_command: MetabaseCommandOption = None,
    target: TargetOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show what runs, its health, Metabase version, sync state, dashboard drift; exit 1 unless all well."""
    from provisioner.status import status_of

    output = output_for(ctx, json_output)
    settings = runtime_settings(
        runtime=runtime,
        name=name,
        metabase_url=metabase_url,
        database_url=database_url,
        metabase_jar=metabase_jar,
        metabase_command=metabase_command,
        target=target,
        use_target=True,
    )
    report = status_of(settings, progress=output.progress)

    def text() -> str:
        lines = [
            f"Runtime: {report.runtime.runtime}"
            + (f" ({report.runtime.detail})" if report.runtime.detail else "")
        ]
        for service in report.runtime.services:
            health = f", {service.health}" if service.health else ""
            detail = f" — {service.detail}" if service.detail else ""
            lines.append(f"  {service.name}: {service.state}{health}{detail}")
        mb = report.metabase
        version = f" {mb.version}" if mb.version else ""
        lines.append(f"Metabase{version}: {'healthy' if mb.healthy else 'not healthy'} at {mb.url or '-'}")
        if mb.detail:
            lines.append(f"  {mb.detail}")
        db = report.database
        seeded = "seeded" if db.seeded else (db.detail or "not seeded") if db.reachable else "unreachable"
        lines.append(f"Database: {seeded}; Metabase sync: {db.sync_status or 'unknown'}")
        lines.append(f"Dashboards: {_in_sync_text(report.dashboards.in_sync)}")
        hints = [h for h in (mb.hint, db.hint, report.dashboards.hint) if h]
        lines += [f"hint: {h}" for h in dict.fromkeys(hints)]
        return "\n".join(lines)

    output.result(report.model_dump(mode="json"), text, ok=report.ok, exit_code=0 if report.ok else 1)
    if not report.ok:
        raise typer.Exit(1)


def _in_sync_text(in_sync: bool | None) -> str:
    return {True: "match the YAML", False: "differ from the YAML", None: "unknown"}[in_sync]


def doctor_command(
    ctx: typer.Context,
    runtime: RuntimeOption = None,
    name: NameOption = None,
    metabase_url: MetabaseAddressOption = None,
    database_url: DatabaseUrlOption = None,
    metabase_jar: MetabaseJarOption = None,
    metabase_command: MetabaseCommandOption = None,
    target: TargetOption = None,
    no_probe: Annotated[
        bool,
        typer.Option(
            "--no-probe",
            help="Skip `metabase check` (its scratch question, archived at once): doctor then only reads.",
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Check Docker/Java, ports, disk, Metabase, credentials, database and dashboards; exit 1 on a failure."""
    from provisioner.doctor import run_doctor

    output = output_for(ctx, json_output)
    settings = runtime_settings(
        runtime=runtime,
        name=name,
        metabase_url=metabase_url,
        database_url=database_url,
        metabase_jar=metabase_jar,
        metabase_command=metabase_command,
        target=target,
        use_target=True,
    )
    checks = run_doctor(settings, progress=output.progress, probe=not no_probe)
    ok = all(check.ok for check in checks)

    def text() -> str:
        lines = []
        for check in checks:
            lines.append(f"{'PASS' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
            if not check.ok and check.hint:
                lines.append(f"      fix: {check.hint}")
        failed = sum(not check.ok for check in checks)
        lines.append("All checks passed." if ok else f"{failed} check(s) failed.")
        return "\n".join(lines)

    output.result(
        {"checks": [check.model_dump(mode="json") for check in checks]}, text, ok=ok, exit_code=0 if ok else 1
    )
    if not ok:
        raise typer.Exit(1)


def register_top_level(app: typer.Typer) -> None:
    """Add the demo lifecycle commands to the root app."""
    app.command("up")(up_command)
    app.command("down")(down_command)
    app.command("status")(status_command)
    app.command("doctor")(doctor_command)
