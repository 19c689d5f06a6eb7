"""Backups of what apply changes, and `dashboards restore` to put them back.

Before its first write, an apply that changes anything writes the JSON Metabase returned for every card
and dashboard it will update or archive to `<state>/backups/<timestamp>/` (or under `--backup-dir`),
with a `manifest.json`; as it creates objects it adds them to the manifest. A backup that cannot be
written stops the apply before any write.

Restore puts each saved object back as it was (its content, place and archived state) and archives the
cards and dashboards that apply created; collections it created are left, and named. A restore first
backs up what it is about to overwrite, so a restore can be undone the same way.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from provisioner.errors import ConfigError, MetabaseError, MetabaseNotFound
from provisioner.metabase.client import MetabaseClient
from provisioner.metabase.models import (
    Card,
    CardUpdate,
    Dashboard,
    DashboardUpdate,
    ResultColumn,
    StoredDatasetQuery,
    Tab,
)
from provisioner.progress import NullProgress, Progress
from provisioner.state import write_private

FORMAT: Literal["metabase-provisioner-backup"] = "metabase-provisioner-backup"
MANIFEST = "manifest.json"

Kind = Literal["collection", "card", "dashboard"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SavedObject(_Strict):
    """A card or dashboard as it was before a write, kept in `file` next to the manifest."""

    kind: Literal["card", "dashboard"]
    id: int
    key: str
    name: str
    action: str = Field(description="what the write that followed did: update, archive or restore")
    file: str


class CreatedObject(_Strict):
    """An object the apply created (restore archives cards and dashboards among them)."""

    kind: Kind
    id: int
    key: str
    name: str


class Manifest(_Strict):
    """`manifest.json`: what a backup holds, for which Metabase, and whether the run finished."""

    format: Literal["metabase-provisioner-backup"] = FORMAT
    version: Literal[1] = 1
    created_at: str
    metabase_url: str
    command: Literal["apply", "restore"]
    objects: list[SavedObject] = Field(default_factory=list)
    created: list[CreatedObject] = Field(default_factory=list)
    complete: bool = False


@dataclass
class Backup:
    """A backup being written: the objects are on disk; created objects are added as they are made."""

    directory: Path
    manifest: Manifest

    def _write_manifest(self) -> None:
        write_private(self.directory / MANIFEST, self.manifest.model_dump_json(indent=2) + "\n")

    def created(self, kind: Kind, object_id: int, key: str, name: str) -> None:
        """Note one object the run created (best effort: the write itself already happened)."""
        self.manifest.created.append(CreatedObject(kind=kind, id=object_id, key=key, name=name))
        # Best effort: finish() tries again, and restoring the saved objects does not depend on it.
        with contextlib.suppress(OSError):
            self._write_manifest()

    def finish(self) -> None:
        self.manifest.complete = True
        with contextlib.suppress(OSError):
            self._write_manifest()


def new_backup_dir(parent: Path) -> Path:
    """Make and return a new directory `<parent>/<UTC timestamp>`; raises ConfigError if it cannot be
    made (called before anything in Metabase changes)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for n in range(1, 1000):
        candidate = parent / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            candidate.mkdir(mode=0o700)
        except FileExistsError:
            continue
        except OSError as exc:
            raise ConfigError(
                f"cannot write the backup to {parent}: {exc.strerror or exc}; nothing was changed",
                hint="free disk space or choose a writable --backup-dir",
            ) from exc
        return candidate
    raise ConfigError(f"too many backups in {parent} this second", hint="run again")


def start_backup(
    directory: Path,
    saved: Sequence[tuple[str, str, Card | Dashboard]],
    *,
    metabase_url: str,
    command: Literal["apply", "restore"],
) -> Backup:
    """Write each object's JSON (`(key, action, object)`) and the manifest; raises ConfigError if the
    directory cannot be written (before anything in Metabase changed)."""
    manifest = Manifest(
        created_at=datetime.now(UTC).isoformat(timespec="seconds"), metabase_url=metabase_url, command=command
    )
    try:
        for key, action, obj in saved:
            kind: Literal["card", "dashboard"] = "card" if isinstance(obj, Card) else "dashboard"
            name = f"{kind}-{obj.id}.json"
            write_private(directory / name, json.dumps(obj.raw, indent=2, sort_keys=True) + "\n")
            manifest.objects.append(
                SavedObject(kind=kind, id=obj.id, key=key, name=obj.name, action=action, file=name)
            )
        backup = Backup(directory, manifest)
        backup._write_manifest()
    except OSError as exc:
        raise ConfigError(
            f"cannot write the backup to {directory}: {exc.strerror or exc}; nothing was changed",
            hint="free disk space or choose a writable --backup-dir",
        ) from exc
    return backup


def read_backup(directory: Path) -> tuple[Manifest, dict[int, dict[str, Any]]]:
    """The manifest and each saved object's JSON by position; raises ConfigError naming what is wrong."""
    path = directory / MANIFEST
    try:
        manifest = Manifest.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{directory} is not a backup (no {MANIFEST})",
            hint="backups are under .provision/backups/<timestamp>/, or the --backup-dir of the apply",
        ) from exc
    except (OSError, UnicodeDecodeError, ValidationError) as exc:
        raise ConfigError(
            f"{path} cannot be read: {_first_error(exc)}", hint="is this a backup directory?"
        ) from exc
    objects: dict[int, dict[str, Any]] = {}
    for index, saved in enumerate(manifest.objects):
        file = directory / saved.file
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{file} cannot be read: {_first_error(exc)}", hint="the backup is damaged"
            ) from exc
        if not isinstance(data, dict) or data.get("id") != saved.id:
            raise ConfigError(
                f"{file} is not the {saved.kind} {saved.id} the manifest names", hint="the backup is damaged"
            )
        objects[index] = data
    return manifest, objects


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    if isinstance(exc, OSError):
        return str(exc.strerror or exc)
    return str(exc)


def card_restore_body(was: Card, now: Card) -> CardUpdate:
    """The PUT that makes `now` what `was` was: content, place, archived state."""
    raw = was.raw
    query: Any = raw.get("dataset_query")
    legacy = raw.get("legacy_query")
    if isinstance(legacy, str):  # newest versions: the form we write, beside MBQL 5
        with contextlib.suppress(ValueError):
            query = json.loads(legacy)
    fields: dict[str, Any] = {
        "name": was.name,
        "description": was.description,
        "display": was.display,
        "type": was.type,
        "visualization_settings": was.visualization_settings,
        "dataset_query": StoredDatasetQuery.model_validate(query),
        "archived": was.archived,
    }
    if was.dashboard_id is not None:
        fields["dashboard_id"] = was.dashboard_id
    else:
        fields["collection_id"] = was.collection_id
        if now.dashboard_id is not None:
            fields["dashboard_id"] = None  # out of the dashboard it was saved in since
    if was.type == "model" and was.result_metadata:
        fields["result_metadata"] = [
            ResultColumn(
                name=str(c.get("name")),
                display_name=str(c.get("display_name") or c.get("name")),
                base_type=str(c.get("base_type") or "type/*"),
                semantic_type=c.get("semantic_type"),
                description=c.get("description"),
                fk_target_field_id=c.get("fk_target_field_id"),
            )
            for c in was.result_metadata
        ]
    return CardUpdate.model_validate(fields)


def dashboard_restore_body(was: Dashboard, now: Dashboard) -> DashboardUpdate:
    """The one PUT that puts a dashboard back: tabs and dashcards kept where they still exist, made again
    (negative ids) where the apply deleted them."""
    live_tabs = {t.id for t in now.tabs}
    live_cards = {d.id for d in now.dashcards}
    tab_ids: dict[int, int] = {}
    for n, old_tab in enumerate(was.tabs, start=1):
        tab_ids[old_tab.id] = old_tab.id if old_tab.id in live_tabs else -n
    tabs = [Tab(id=tab_ids[t.id], name=t.name, position=t.position) for t in was.tabs]
    dashcards = []
    next_new = -1
    for d in was.dashcards:
        new_id = d.id
        if d.id not in live_cards:
            new_id, next_new = next_new, next_new - 1
        tab = tab_ids.get(d.dashboard_tab_id) if d.dashboard_tab_id is not None else None
        dashcards.append(d.model_copy(update={"id": new_id, "dashboard_tab_id": tab}))
    width = was.width if was.width in ("fixed", "full") else None
    return DashboardUpdate.model_validate(
        {
            "name": was.name,
            "description": was.description,
            "collection_id": was.collection_id,
            "parameters": was.parameters,
            "width": width,
            "auto_apply_filters": was.auto_apply_filters,
            "archived": was.archived,
            "tabs": tabs,
            "dashcards": dashcards,
        }
    )


@dataclass
class RestoreResult:
    """What restore did to each object, and where it saved what it overwrote."""

    restored: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    backup: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "objects": self.restored,
            "problems": self.problems,
            "backup": str(self.backup) if self.backup else None,
        }

    def describe(self) -> str:
        lines = [f"{o['action']:<9} {o['kind']:<10} {o['name']} (id {o['id']})" for o in self.restored]
        lines += [f"problem: {p}" for p in self.problems]
        if self.backup:
            lines.append(f"what was overwritten is saved in {self.backup} (restore it to undo)")
        return "\n".join(lines)


def restore(
    client: MetabaseClient,
    directory: Path,
    *,
    metabase_url: str,
    backup_dir: Path,
    progress: Progress | None = None,
) -> RestoreResult:
    """Put the backup's objects back and archive what its apply created; raises ConfigError, MetabaseError."""
    progress = progress or NullProgress()
    manifest, raws = read_backup(directory)
    if manifest.metabase_url.rstrip("/") != metabase_url.rstrip("/"):
        raise ConfigError(
            f"{directory} is a backup of {manifest.metabase_url}, not {metabase_url}",
            hint="restore it with --metabase-url set to that Metabase",
        )
    result = RestoreResult()
    work: list[tuple[str, Card | Dashboard, Card | Dashboard]] = []  # key, as saved, as now
    for index, saved in enumerate(manifest.objects):
        was: Card | Dashboard = (
            Card.model_validate(raws[index])
            if saved.kind == "card"
            else Dashboard.model_validate(raws[index])
        )
        try:
            now = client.get_card(saved.id) if saved.kind == "card" else client.get_dashboard(saved.id)
        except MetabaseNotFound:
            result.problems.append(
                f"{saved.kind} {saved.name!r} (id {saved.id}) no longer exists in Metabase"
            )
            continue
        work.append((saved.key, was, now))
    undo: list[tuple[CreatedObject, Card | Dashboard]] = []
    for created in manifest.created:
        if created.kind == "collection":
            result.problems.append(
                f"collection {created.name!r} (id {created.id}) was created by that apply; it is left as is"
            )
            continue
        try:
            current = (
                client.get_card(created.id) if created.kind == "card" else client.get_dashboard(created.id)
            )
        except MetabaseNotFound:
            continue
        if not current.archived:
            undo.append((created, current))
    progress.step(f"Saving what restore overwrites to {backup_dir}")
    backup = start_backup(
        backup_dir,
        [(key, "restore", now) for key, _, now in work] + [(c.key, "restore", now) for c, now in undo],
        metabase_url=metabase_url,
        command="restore",
    )
    result.backup = backup.directory
    progress.step(f"Restoring {len(work)} object(s) from {directory}")
    # Cards first: a dashboard put back may show a card the apply archived.
    for key, was, now in sorted(work, key=lambda w: isinstance(w[1], Dashboard)):
        del key
        try:
            if isinstance(was, Card) and isinstance(now, Card):
                client.update_card(was.id, card_restore_body(was, now))
            elif isinstance(was, Dashboard) and isinstance(now, Dashboard):
                client.update_dashboard(was.id, dashboard_restore_body(was, now))
        except MetabaseError as exc:
            result.problems.append(
                f"{_kind(was)} {was.name!r} (id {was.id}): Metabase refused: {exc.message}"
            )
            continue
        result.restored.append({"kind": _kind(was), "id": was.id, "name": was.name, "action": "restored"})
    for created, current in undo:
        try:
            if isinstance(current, Dashboard):
                client.update_dashboard(current.id, DashboardUpdate(archived=True))
            else:
                client.update_card(current.id, CardUpdate(archived=True))
        except MetabaseError as exc:
            result.problems.append(
                f"{created.kind} {created.name!r} (id {created.id}): cannot archive: {exc.message}"
            )
            continue
        result.restored.append(
            {"kind": created.kind, "id": created.id, "name": created.name, "action": "archived"}
        )
    backup.finish()
    return result


def _kind(obj: Card | Dashboard) -> str:
    return "card" if isinstance(obj, Card) else "dashboard"
