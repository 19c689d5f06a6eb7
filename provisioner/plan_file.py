"""Saved plans: `dashboards plan --out FILE` writes one, `dashboards apply FILE` applies it and nothing else.

A saved plan holds everything the plan was computed from (the text of every YAML and SQL file read, the
command's paths and `--prune`, a hash of each environment variable the YAML referenced) and, per object,
the action planned with a fingerprint of what Metabase held for each object it changes or archives.

Applying it recomputes the plan from that snapshot, never from the working tree, and refuses before any
write when the result is not the plan that was reviewed: an object changed in Metabase since (named with
the fields that changed), a planned action that would now differ, an environment variable with another
value, another Metabase. `--force` applies the snapshot's plan as it is now.

The fingerprint is taken over the fields apply writes (a query in its normal form, so MBQL 5's random
`lib/uuid`s never count); `updated_at` alone is not trusted, since Metabase may touch it without a change
a person made.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from provisioner import __version__
from provisioner.errors import ConfigError, StalePlan
from provisioner.mbql.normal import NormalizeError, from_wire
from provisioner.metabase.models import Card, Dashboard
from provisioner.plan import Action, Plan
from provisioner.spec import LoadedFile
from provisioner.state import write_private

FORMAT: Literal["metabase-provisioner-plan"] = "metabase-provisioner-plan"
VERSION: Literal[1] = 1

_CARD_FIELDS = (
    "name",
    "description",
    "display",
    "type",
    "collection_id",
    "dashboard_id",
    "archived",
    "visualization_settings",
    "parameters",
)
_DASHBOARD_FIELDS = (
    "name",
    "description",
    "collection_id",
    "archived",
    "parameters",
    "width",
    "auto_apply_filters",
)
_DASHCARD_FIELDS = (
    "id",
    "card_id",
    "dashboard_tab_id",
    "row",
    "col",
    "size_x",
    "size_y",
    "parameter_mappings",
    "visualization_settings",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GivenPath(_Strict):
    """A path the plan command was given, relative to the snapshot's root."""

    path: str
    directory: bool


class PlannedAction(_Strict):
    """One object's planned action, and the fingerprint of what it was when planned."""

    kind: Literal["collection", "card", "dashboard"]
    action: Literal["create", "update", "unchanged", "archive"]
    key: str
    name: str
    id: int | None = None
    changes: list[str] = Field(default_factory=list)
    updated_at: str | None = None
    fingerprint: dict[str, str] = Field(default_factory=dict)


class SavedPlan(_Strict):
    """The file `plan --out` writes (JSON)."""

    format: Literal["metabase-provisioner-plan"] = FORMAT
    version: Literal[1] = VERSION
    created_at: str
    tool_version: str
    metabase_url: str
    prune: bool
    paths: list[GivenPath]
    files: dict[str, str] = Field(description="text of every file read, by path relative to the root")
    environment: dict[str, str] = Field(description="sha256 of each environment variable the YAML used")
    summary: dict[str, int]
    actions: list[PlannedAction]


class RecordingEnviron(Mapping[str, str]):
    """The environment as the YAML loader sees it, noting every variable the files refer to."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self.used: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.used.add(name)
        return self._environ[name]

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self.used.add(name)
        return name in self._environ

    def __iter__(self) -> Iterator[str]:
        return iter(self._environ)

    def __len__(self) -> int:
        return len(self._environ)


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _env_digest(value: str | None) -> str:
    return "unset" if value is None else _digest(value)


def _query_form(card: Card) -> Any:
    """A card's query as apply compares it: the normal form, or the SQL and its variables."""
    if card.native_sql is not None:
        tags = {
            name: [t.type, t.dimension_field_id, t.widget_type, t.required, t.default, t.display_name]
            for name, t in card.template_tags.items()
        }
        return [card.native_sql, tags]
    try:
        return from_wire(card.dataset_query)
    except NormalizeError:
        return card.dataset_query


def fingerprint(obj: Card | Dashboard) -> dict[str, str]:
    """A hash per field apply writes, so a later change is named by its field."""
    raw = obj.raw
    if isinstance(obj, Card):
        out = {name: _digest(raw.get(name)) for name in _CARD_FIELDS}
        out["query"] = _digest(_query_form(obj))
        if obj.type == "model":
            out["result_metadata"] = _digest(raw.get("result_metadata"))
        return out
    out = {name: _digest(raw.get(name)) for name in _DASHBOARD_FIELDS}
    dashcards = raw.get("dashcards", raw.get("ordered_cards")) or []
    out["dashcards"] = _digest(
        sorted(
            ({f: d.get(f) for f in _DASHCARD_FIELDS} for d in dashcards if isinstance(d, dict)),
            key=lambda d: str(d.get("id")),
        )
    )
    out["tabs"] = _digest(
        sorted(([t.get("id"), t.get("name"), t.get("position")] for t in raw.get("tabs") or []), key=str)
    )
    return out


def _planned(action: Action) -> PlannedAction:
    touched = action.action in ("update", "archive") and isinstance(action.actual, Card | Dashboard)
    return PlannedAction(
        kind=action.kind,
        action=action.action,
        key=action.key,
        name=action.name,
        id=action.id,
        changes=list(action.changes),
        updated_at=getattr(action.actual, "updated_at", None) if touched else None,
        fingerprint=fingerprint(action.actual) if touched else {},
    )


def _read_files(loaded: Sequence[LoadedFile]) -> dict[Path, str]:
    """Every file the plan was computed from: the YAML files and the SQL files they name."""
    out: dict[Path, str] = {}
    for item in loaded:
        out[item.path.resolve()] = item.path.read_text(encoding="utf-8")
        for _, question in item.spec.located_questions():
            if question.sql_file is not None:
                target = (item.path.parent / question.sql_file).resolve()
                out[target] = item.sql[question.key]
    return out


def snapshot(
    plan: Plan,
    *,
    paths: Sequence[Path],
    loaded: Sequence[LoadedFile],
    environ: RecordingEnviron,
    metabase_url: str,
    prune: bool,
) -> SavedPlan:
    """The plan and all it was computed from, ready to be saved."""
    files = _read_files(loaded)
    given = [p.resolve() for p in paths]
    root = Path(
        os.path.commonpath([*(p.parent for p in files), *(p if p.is_dir() else p.parent for p in given)])
    )
    return SavedPlan(
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        tool_version=__version__,
        metabase_url=metabase_url,
        prune=prune,
        paths=[GivenPath(path=str(p.relative_to(root)), directory=p.is_dir()) for p in given],
        files={str(p.relative_to(root)): text for p, text in sorted(files.items())},
        environment={name: _env_digest(environ.get(name)) for name in sorted(environ.used)},
        summary=plan.summary(),
        actions=[_planned(a) for a in plan.actions],
    )


def save(saved: SavedPlan, path: Path) -> None:
    """Write the plan file atomically (a failed write leaves no half file)."""
    try:
        write_private(path, saved.model_dump_json(indent=2) + "\n")
    except OSError as exc:
        raise ConfigError(
            f"cannot write the plan to {path}: {exc.strerror or exc}",
            hint="choose another --out path",
        ) from exc


def saved_plan_in(paths: Sequence[Path]) -> SavedPlan | None:
    """The saved plan when `paths` is one plan file (what `apply FILE` is given); None for YAML paths.

    Raises ConfigError for a plan file that cannot be read or is damaged.
    """
    if len(paths) != 1 or paths[0].suffix != ".json" or not paths[0].is_file():
        return None
    path = paths[0]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(
            f"{path} is not a readable plan file: {exc}",
            hint="make one with `provision dashboards plan --out FILE`",
        ) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(
            f"{path} is not a plan file (no `format: {FORMAT}`)",
            hint="give dashboard YAML files or directories, or a plan made by `dashboards plan --out`",
        )
    try:
        return SavedPlan.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"{path}: {where}: {first['msg']}",
            hint="it was edited or made by another version; make it again with `dashboards plan --out`",
        ) from exc


@contextmanager
def materialized(saved: SavedPlan) -> Iterator[list[Path]]:
    """The snapshot's files written to a private temporary directory; yields the paths to load."""
    with TemporaryDirectory(prefix="provision-plan-") as tmp:
        root = Path(tmp)
        for relative, text in saved.files.items():
            target = (root / relative).resolve()
            if root.resolve() not in target.parents:
                raise ConfigError(
                    f"the plan file names a file outside its snapshot: {relative}",
                    hint="make the plan again with `dashboards plan --out`",
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        yield [root / given.path for given in saved.paths]


def _describe(action: str, changes: Sequence[str]) -> str:
    return action + (f" ({', '.join(changes)})" if changes else "")


def check_target(saved: SavedPlan, metabase_url: str) -> None:
    """Raise ConfigError when the plan was made for another Metabase (never overridden by --force)."""
    if saved.metabase_url.rstrip("/") != metabase_url.rstrip("/"):
        raise ConfigError(
            f"the plan was made for {saved.metabase_url}, not {metabase_url}",
            hint="apply it with --metabase-url set to the Metabase it was made for, or plan again",
        )


def plan_drift(saved: SavedPlan, now: Plan, environ: Mapping[str, str]) -> list[str]:
    """How the plan computed now differs from the saved one; empty when it is the plan reviewed."""
    problems: list[str] = []
    for name, digest in saved.environment.items():
        if _env_digest(environ.get(name)) != digest:
            problems.append(f"environment variable {name} has another value than when the plan was made")
    current = {(a.kind, a.key): a for a in now.actions}
    for was in saved.actions:
        label = f"{was.kind} {was.name!r}"
        found = current.pop((was.kind, was.key), None)
        if found is None:
            problems.append(f"{label}: planned to {_describe(was.action, was.changes)}, now not in the plan")
            continue
        if was.fingerprint and isinstance(found.actual, Card | Dashboard):
            changed = [f for f, h in fingerprint(found.actual).items() if was.fingerprint.get(f) != h]
            if changed:
                since = (
                    f" (updated_at {was.updated_at} -> {found.actual.updated_at})" if was.updated_at else ""
                )
                problems.append(
                    f"{label} (id {found.id}) changed in Metabase since the plan: {', '.join(changed)}{since}"
                )
                continue
        if (found.action, sorted(found.changes), found.id) != (was.action, sorted(was.changes), was.id):
            problems.append(
                f"{label}: planned {_describe(was.action, was.changes)}"
                + (f" of id {was.id}" if was.id is not None and found.id != was.id else "")
                + f", now {_describe(found.action, found.changes)}"
                + (f" of id {found.id}" if found.id is not None and found.id != was.id else "")
            )
    for extra in current.values():
        problems.append(
            f"{extra.kind} {extra.name!r}: not in the plan, now {_describe(extra.action, extra.changes)}"
        )
    return problems


def refuse_if_drifted(saved: SavedPlan, now: Plan, environ: Mapping[str, str]) -> None:
    """Raise StalePlan, naming every difference, unless the plan computed now is the one saved."""
    problems = plan_drift(saved, now, environ)
    if problems:
        raise StalePlan(
            "the saved plan no longer holds; nothing was written:\n" + "\n".join(f"  {p}" for p in problems),
            hint="review a new plan (`provision dashboards plan --out FILE`), or apply this one with --force",
        )
