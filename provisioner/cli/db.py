"""`provision seed` and `provision db start|stop|status|url`."""

from __future__ import annotations

import typer

db_app = typer.Typer(no_args_is_help=True, help="Manage the embedded PostgreSQL server.")


def register_top_level(app: typer.Typer) -> None:
    """Add `provision seed` to the root app."""
