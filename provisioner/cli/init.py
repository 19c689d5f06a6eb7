"""`provision init`: write a commented starter provision.toml here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from provisioner.cli.context import JsonOption, output_for


def init_command(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="Replace a project file already here.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Write a commented provision.toml here: the dashboard paths and the targets (dev, prod)."""
    from provisioner.workspace import init_project

    output = output_for(ctx, json_output)
    path = init_project(Path.cwd(), force=force)
    text = (
        f"Wrote {path}.\n"
        "Next: name your Metabases under [targets], then "
        "`provision dashboards plan --target dev`."
    )
    output.result({"project_file": str(path)}, text)


def register_top_level(app: typer.Typer) -> None:
    """Add `provision init` to the root app."""
    app.command("init")(init_command)
