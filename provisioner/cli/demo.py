"""`provision demo [--fresh]` and `provision reset`: parse, call `demo.run_demo`, print the summary."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from provisioner.cli.context import JsonOption, output_for
from provisioner.cli.options import (
    AsOfOption,
    ConcurrencyOption,
    DatabaseUrlOption,
    MetabaseAddressOption,
    MetabaseCommandOption,
    MetabaseJarOption,
    NameOption,
    RuntimeOption,
    ScaleOption,
    SchemaOption,
    parse_as_of,
    runtime_settings,
)

if TYPE_CHECKING:
    from provisioner.demo import DemoResult

FreshOption = Annotated[
    bool,
    typer.Option(
        "--fresh",
        help="Rebuild from nothing: containers and volumes (docker), data directories (local), "
        "or what the tool owns (external).",
    ),
]


def register_top_level(app: typer.Typer) -> None:
    """Add `demo` and `reset` to the root app."""
    app.command("demo")(demo_command)
    app.command("reset")(reset_command)


def demo_command(
    ctx: typer.Context,
    fresh: FreshOption = False,
    runtime: RuntimeOption = None,
    name: NameOption = None,
    as_of: AsOfOption = None,
    schema: SchemaOption = None,
    scale: ScaleOption = None,
    metabase_url: MetabaseAddressOption = None,
    database_url: DatabaseUrlOption = None,
    metabase_jar: MetabaseJarOption = None,
    metabase_command: MetabaseCommandOption = None,
    concurrency: ConcurrencyOption = None,
    json_output: JsonOption = False,
) -> None:
    """One command, a working demo: start, seed, set up Metabase, connect, apply the dashboards."""
    from provisioner.db.seed import check_scale
    from provisioner.demo import run_demo
    from provisioner.stack import select_runtime

    output = output_for(ctx, json_output)
    as_of_date = parse_as_of(as_of)
    copies = None if scale is None else check_scale(scale)
    settings = runtime_settings(
        runtime=runtime,
        name=name,
        metabase_url=metabase_url,
        database_url=database_url,
        metabase_jar=metabase_jar,
        metabase_command=metabase_command,
        concurrency=concurrency,
    )
    result = run_demo(
        settings,
        runtime=select_runtime(settings),
        fresh=fresh,
        as_of=as_of_date,
        schema=schema,
        scale=copies,
        progress=output.progress,
    )
    ok = not result.failed_cards
    output.result(result.model_dump(mode="json"), lambda: describe(result), ok=ok, exit_code=0 if ok else 1)
    if not ok:
        raise typer.Exit(1)


def reset_command(
    ctx: typer.Context,
    runtime: RuntimeOption = None,
    name: NameOption = None,
    as_of: AsOfOption = None,
    schema: SchemaOption = None,
    scale: ScaleOption = None,
    metabase_url: MetabaseAddressOption = None,
    database_url: DatabaseUrlOption = None,
    metabase_jar: MetabaseJarOption = None,
    metabase_command: MetabaseCommandOption = None,
    json_output: JsonOption = False,
) -> None:
    """Rebuild the demo from nothing (same as `demo --fresh`); never deletes what the tool did not create."""
    demo_command(
        ctx,
        fresh=True,
        runtime=runtime,
        name=name,
        as_of=as_of,
        schema=schema,
        scale=scale,
        metabase_url=metabase_url,
        database_url=database_url,
        metabase_jar=metabase_jar,
        metabase_command=metabase_command,
        json_output=json_output,
    )


def describe(result: DemoResult) -> str:
    """The demo summary for people: where to go, what changed, how long each step took."""
    lines = [
        "The demo is ready." if result.changed else "The demo was already up to date: nothing changed.",
        "",
        f"  Metabase     {result.metabase_url}",
        f"  Admin        {result.admin_email or '(API key from METABASE_API_KEY)'}",
        f"  Credentials  {result.credentials_file}  (password inside, mode 0600)",
        f"  Runtime      {result.runtime}",
        "",
        "  Dashboards:",
    ]
    lines += [f"    {d.name:<30} {d.url}" for d in result.dashboards]
    lines += ["", "  Steps:"]
    lines += [
        f"    {s.name:<11} {s.seconds:7.1f} s  {'changed' if s.changed else 'unchanged'}"
        for s in result.steps
    ]
    lines.append(f"    {'total':<11} {result.total_seconds:7.1f} s")
    if result.failed_cards:
        lines += ["", "  Cards whose query failed in Metabase:"]
        lines += [f"    {c}" for c in result.failed_cards]
    for warning in result.warnings:
        lines += ["", f"  warning: {warning}"]
    return "\n".join(lines)
