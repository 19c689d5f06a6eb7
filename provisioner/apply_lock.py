"""One apply at a time per Metabase, so that two applies started together never create an object twice.

Duplicates can only come from creating: two applies that both read "missing" and both create. So an
apply whose plan creates anything first takes this lock, then plans again (what the other apply made is
now there to be found) and only then writes. A plan with nothing to create takes no lock: a re-run that
changes nothing costs no request.

Metabase has no lock, but it gives every new object a larger id than the one before. Each apply creates
an empty dashboard named `LOCK_PREFIX <token>` in the root collection (a dashboard is the lightest object
Metabase can both create and delete for good), then lists the root's dashboards: the live lock with the
lowest id holds the lock; the others wait for it to go.

A lock that could not be removed (Metabase went away, or the answer to its POST was lost) must not block
the re-run that follows. Each apply notes its lock in the state directory (`run/apply-locks/`) until it
is gone; the next apply from that directory deletes the locks its predecessors abandoned, or whose
process is no longer running. A lock left elsewhere expires: one created more than `stale_after` before
one's own (both timestamps Metabase's) is deleted by the next apply.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from provisioner.errors import ApplyBusy, MetabaseError, MetabaseNotFound
from provisioner.metabase.client import MetabaseClient
from provisioner.metabase.models import CollectionItem, Dashboard, DashboardCreate
from provisioner.processes import pid_alive
from provisioner.progress import NullProgress, Progress
from provisioner.state import write_private

LOCK_PREFIX = "provisioner apply lock"
_DESCRIPTION = (
    "metabase-provisioner is applying dashboards and deletes this when done. "
    "If no apply is running, it is safe to delete."
)


@dataclass
class ApplyLock:
    """The lock's timing: how long to wait for another apply, how often to look, when a lock is stale."""

    wait_s: float = 600.0
    poll_s: float = 2.0
    stale_after: timedelta = timedelta(minutes=15)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    @contextmanager
    def held(
        self,
        client: MetabaseClient,
        progress: Progress | None = None,
        *,
        records: Path | None = None,
        metabase_url: str = "",
    ) -> Iterator[bool]:
        """Hold the lock for the block; yields whether another apply had to be waited for.

        `records` is the state directory's `run/apply-locks` (None: no local notes). Raises ApplyBusy when
        another apply holds it longer than `wait_s`, MetabaseError.
        """
        progress = progress or NullProgress()
        notes = _Notes(records, metabase_url)
        name = f"{LOCK_PREFIX} {secrets.token_hex(4)}"
        notes.add(name)
        try:
            mine = client.create_dashboard(DashboardCreate(name=name, description=_DESCRIPTION))
        except MetabaseError:
            if _remove_named(client, name):  # the POST may have been committed with its answer lost
                notes.drop(name)
            else:
                notes.abandon(name)
            raise
        try:
            yield self._wait_turn(client, mine, progress)
        finally:
            try:
                client.delete_dashboard(mine.id)
                notes.drop(name)
            except MetabaseNotFound:
                notes.drop(name)
            except MetabaseError as exc:
                notes.abandon(name)
                progress.warn(
                    f"could not remove the apply lock (dashboard {mine.id} in Our analytics): {exc.message}; "
                    "the next apply from here removes it"
                )

    def _wait_turn(self, client: MetabaseClient, mine: Dashboard, progress: Progress) -> bool:
        deadline = self.clock() + self.wait_s
        waited = False
        while True:
            ahead = [d for d in _locks(client) if d.id < mine.id]
            found = [d for d in (_get(client, item.id) for item in ahead) if d is not None]
            live = [d for d in found if not self._stale(client, d, mine, progress)]
            if not live:
                return waited
            holder = live[0]
            if self.clock() >= deadline:
                raise ApplyBusy(
                    f"another apply has held this Metabase's apply lock since {holder.created_at} "
                    f"(dashboard {holder.id}, {holder.name!r})",
                    hint="run again when it is done; if no apply is running, delete that dashboard in Our "
                    "analytics",
                )
            if not waited:
                progress.info(
                    f"another apply is running on this Metabase (since {holder.created_at}); "
                    f"waiting up to {int(self.wait_s)} s for it to finish"
                )
            waited = True
            self.sleep(self.poll_s)

    def _stale(self, client: MetabaseClient, other: Dashboard, mine: Dashboard, progress: Progress) -> bool:
        """A lock much older than one's own was left by an apply that died: delete it, and say so."""
        created, now = _when(other.created_at), _when(mine.created_at)
        if created is None or now is None or now - created < self.stale_after:
            return False
        progress.warn(
            f"removing a stale apply lock from {other.created_at} (dashboard {other.id}): an apply died"
        )
        with suppress(MetabaseNotFound):
            client.delete_dashboard(other.id)
        return True


def remove_abandoned(
    client: MetabaseClient, records: Path, metabase_url: str, progress: Progress | None = None
) -> None:
    """Delete the locks earlier applies from this state directory left behind (no request if none)."""
    _Notes(records, metabase_url).remove_abandoned(client, progress or NullProgress())


def _when(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp)
    except ValueError:
        return None


def _locks(client: MetabaseClient) -> list[CollectionItem]:
    items = client.collection_items("root", models=("dashboard",))
    return sorted(
        (i for i in items if i.model == "dashboard" and i.name.startswith(LOCK_PREFIX) and not i.archived),
        key=lambda i: i.id,
    )


def _get(client: MetabaseClient, dashboard_id: int) -> Dashboard | None:
    try:
        return client.get_dashboard(dashboard_id)
    except MetabaseNotFound:
        return None  # released while we looked


def _remove_named(client: MetabaseClient, name: str) -> bool:
    """Delete the locks of this name (one's own, its POST's answer lost); whether that could be done."""
    try:
        for item in _locks(client):
            if item.name == name:
                client.delete_dashboard(item.id)
    except MetabaseError:
        return False
    return True


@dataclass
class _Notes:
    """This state directory's notes of the locks its applies hold: `<name>.json` with the pid and whether
    the apply gave it up without removing it."""

    directory: Path | None
    metabase_url: str

    def _file(self, name: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{name.replace(' ', '-')}.json"

    def _write(self, name: str, abandoned: bool) -> None:
        file = self._file(name)
        if file is None:
            return
        note = {"name": name, "pid": os.getpid(), "metabase_url": self.metabase_url, "abandoned": abandoned}
        with suppress(OSError):  # a read-only state directory: the lock simply expires instead
            write_private(file, json.dumps(note) + "\n")

    def add(self, name: str) -> None:
        self._write(name, abandoned=False)

    def abandon(self, name: str) -> None:
        self._write(name, abandoned=True)

    def drop(self, name: str) -> None:
        file = self._file(name)
        if file is not None:
            with suppress(OSError):
                file.unlink(missing_ok=True)

    def remove_abandoned(self, client: MetabaseClient, progress: Progress) -> None:
        """Delete the locks earlier applies from here left behind (given up, or their process is gone)."""
        if self.directory is None or not self.directory.is_dir():
            return
        for file in sorted(self.directory.glob("*.json")):
            try:
                note = json.loads(file.read_text())
                name, pid = str(note["name"]), int(note["pid"])
                url, abandoned = str(note.get("metabase_url", "")), bool(note.get("abandoned"))
            except (OSError, ValueError, KeyError, TypeError):
                with suppress(OSError):
                    file.unlink()
                continue
            if url.rstrip("/") != self.metabase_url.rstrip("/") or not (abandoned or not pid_alive(pid)):
                continue
            if _remove_named(client, name):
                progress.info(f"removed the apply lock {name!r} an earlier apply from here left behind")
                self.drop(name)
