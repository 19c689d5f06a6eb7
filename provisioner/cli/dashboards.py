"""`provision dashboards validate|plan|apply|export|schema`."""

from __future__ import annotations

import typer

dashboards_app = typer.Typer(no_args_is_help=True, help="Dashboards as YAML: validate, plan, apply, export.")
