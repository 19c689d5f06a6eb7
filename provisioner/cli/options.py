"""Runtime flags shared by `up`, `down`, `status`, `doctor`, `demo` and `reset`: defined once."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from provisioner.errors import ConfigError

if TYPE_CHECKING:  # imported for the type only: keeps `provision --help` fast
    from provisioner.config import Settings


class RuntimeName(StrEnum):
    """The values of --runtime."""

    auto = "auto"
    docker = "docker"
    local = "local"
    external = "external"


RuntimeOption = Annotated[
    RuntimeName | None,
    typer.Option(
        "--runtime",
        help="Where Metabase and the warehouse run: auto (docker if an engine answers, else local), "
        "docker, local (embedded PostgreSQL + the Metabase jar) or external (yours). Env PROVISION_RUNTIME.",
    ),
]
NameOption = Annotated[
    str | None,
    typer.Option(
        "--name",
        metavar="NAME",
        help="Name of the docker compose project, so several demos live side by side "
        "(default metabase-demo; env PROVISION_NAME).",
    ),
]
MetabaseAddressOption = Annotated[
    str | None,
    typer.Option(
        "--metabase-url",
        metavar="URL",
        help="Metabase's address, e.g. your own for --runtime external (env METABASE_URL; "
        "default http://localhost:3000).",
    ),
]
DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        metavar="DSN",
        help="An existing PostgreSQL for the demo data: postgresql://user:pass@host:5432/db "
        "(env DATABASE_URL).",
    ),
]
MetabaseJarOption = Annotated[
    Path | None,
    typer.Option(
        "--metabase-jar",
        metavar="PATH",
        help="metabase.jar for --runtime local (env METABASE_JAR); Java 21+.",
    ),
]
MetabaseCommandOption = Annotated[
    str | None,
    typer.Option(
        "--metabase-command",
        metavar="COMMAND",
        help="Command that starts Metabase instead of `java -jar`, for --runtime local; placeholders "
        "{port}, {host}, {state_dir} and {log_file} (env METABASE_COMMAND).",
    ),
]

ConcurrencyOption = Annotated[
    int | None,
    typer.Option(
        "--concurrency",
        metavar="N",
        help="Requests sent to Metabase at once, 1 to 64 (default 8; env PROVISION_CONCURRENCY).",
        show_default=False,
    ),
]


TargetOption = Annotated[
    str | None,
    typer.Option(
        "--target",
        metavar="NAME",
        help="A target of the project file (provision.toml): its Metabase, database and credentials "
        "(env PROVISION_TARGET).",
        show_default=False,
    ),
]


def runtime_settings(
    *,
    runtime: RuntimeName | None = None,
    name: str | None = None,
    metabase_url: str | None = None,
    database_url: str | None = None,
    metabase_jar: Path | None = None,
    metabase_command: str | None = None,
    use_target: bool = False,
    **more: Any,
) -> Settings:
    """Settings from the runtime flags (None = not given), any `more` overrides, the environment, the project
    file (its target only with `use_target`) and the remembered demo."""
    from provisioner.cli.context import settings_for

    return settings_for(
        use_target=use_target,
        runtime=runtime.value if runtime is not None else None,
        stack_name=name,
        metabase_url=metabase_url,
        database_url=database_url,
        metabase_jar=metabase_jar,
        metabase_command=metabase_command,
        **more,
    )


AS_OF_RANGE = (date(1900, 1, 1), date(2999, 12, 31))
SchemaOption = Annotated[
    str | None,
    typer.Option(
        "--schema",
        metavar="NAME",
        # The Supabase default is db.hosted.DEDICATED_SCHEMA, named here: importing it would slow --help.
        help="Schema for the demo objects, created when missing (default: where the demo already is; "
        "on Supabase `asset_finance`; else the current schema, normally public).",
    ),
]
ScaleOption = Annotated[
    str | None,
    typer.Option(
        "--scale",
        metavar="N",
        help="N copies of the demo's 15 accounts, each asset with two years of daily telemetry, for load "
        "tests (default: the scale already seeded, else 1: the curated demo).",
    ),
]
AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        metavar="DATE",
        help="YYYY-MM-DD: the date the demo data is relative to (default today).",
        show_default=False,
    ),
]


def parse_as_of(text: str | None) -> date | None:
    """The --as-of date, or None for today; ConfigError if it is not YYYY-MM-DD."""
    if text is None:
        return None
    try:
        as_of = date.fromisoformat(text.strip())
    except ValueError as exc:
        raise ConfigError(
            f"--as-of: {text!r} is not a date", hint="use YYYY-MM-DD, e.g. --as-of 2026-01-31"
        ) from exc
    # The seed data lies years around the as-of date: near date.min or date.max it would not exist.
    if not AS_OF_RANGE[0] <= as_of <= AS_OF_RANGE[1]:
        raise ConfigError(
            f"--as-of: {as_of} is outside {AS_OF_RANGE[0]} to {AS_OF_RANGE[1]}",
            hint="use a date near today, e.g. --as-of 2026-01-31",
        )
    return as_of
