"""`provision metabase setup|connect`."""

from __future__ import annotations

import typer

metabase_app = typer.Typer(no_args_is_help=True, help="Set up Metabase and register the database.")
