"""`provision demo|up|down|status|reset|doctor`."""

from __future__ import annotations

import typer


def register_top_level(app: typer.Typer) -> None:
    """Add the demo lifecycle commands to the root app."""
