"""What every command shares: the run's Output, its `--json` flag, and Settings from flags + environment.

Kept apart from `cli/app.py` so the command modules never import the root app that imports them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from provisioner.cli.output import Output

if TYPE_CHECKING:
    # typer.Context's base class (typer vendors click): the error renderer holds only that type.
    from typer._click.core import Context as BaseContext

    from provisioner.config import Settings


@dataclass
class CliState:
    """What one invocation shares between the root callback, its command and the error renderer."""

    output: Output = field(default_factory=Output)


def state_of(ctx: BaseContext) -> CliState:
    """The invocation's shared state, created on first use."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as one JSON document on stdout.")]


def output_for(ctx: typer.Context, json_output: bool = False) -> Output:
    """The run's Output, switched to JSON when the command's own `--json` was given."""
    state = state_of(ctx)
    if json_output:
        state.output.json_mode = True
    return state.output


def settings_for(*, use_target: bool = True, target_credentials: bool = True, **overrides: Any) -> Settings:
    """Settings from this command's flags (None = not given), the environment, the project file and the
    remembered demo (see provisioner.workspace)."""
    from provisioner.workspace import load_settings

    return load_settings(
        os.environ, Path.cwd(), use_target=use_target, target_credentials=target_credentials, **overrides
    )
