"""The dashboard ids the last apply left in each Metabase: a shortcut for the next read, never identity.

Identity lives in Metabase (the cards' `provisioner.key` mark and the derived filter ids, see
observe.py), so a fresh clone with no cache finds everything. With a cache, observe GETs those
dashboards directly instead of listing every managed collection, and checks each one is still
ours and in its place; anything off, and it reads everything as if there were no cache.

`.provision/metabase-ids.json`, keyed by Metabase URL. Written after every apply that finished; a
missing or damaged file is simply no cache. It holds no secret and is safe to delete.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from provisioner.state import StateDir, write_private

_VERSION = 1


@dataclass(frozen=True)
class IdCache:
    """Dashboard ids by key, per Metabase URL."""

    state: StateDir

    @classmethod
    def of(cls, home: Path) -> IdCache:
        return cls(StateDir(home))

    @property
    def path(self) -> Path:
        return self.state.id_cache_file

    def dashboards(self, metabase_url: str) -> dict[str, int]:
        """The remembered dashboard id per key for this Metabase; empty if none or unreadable."""
        return _ids_in(self._read(), _normal(metabase_url), "dashboards")

    def cards(self, metabase_url: str) -> dict[str, int]:
        """The remembered id of each card kept on no dashboard (a model...), by identity."""
        return _ids_in(self._read(), _normal(metabase_url), "cards")

    def remember(
        self,
        metabase_url: str,
        found: Mapping[str, int],
        forgotten: set[str],
        cards: Mapping[str, int] | None = None,
        forgotten_cards: set[str] | None = None,
    ) -> None:
        """Record `found` (key -> id) for this Metabase and drop the `forgotten` keys; keeps other keys.

        `cards` and `forgotten_cards` do the same for the cards kept on no dashboard.
        """
        data = self._read()
        url = _normal(metabase_url)
        entry: dict[str, dict[str, int]] = {}
        for kind, new, gone in (
            ("dashboards", found, forgotten),
            ("cards", cards or {}, forgotten_cards or set()),
        ):
            current = _ids_in(data, url, kind)
            merged = {k: v for k, v in current.items() if k not in gone} | dict(new)
            if merged:
                entry[kind] = dict(sorted(merged.items()))
        if entry == {k: _ids_in(data, url, k) for k in ("dashboards", "cards") if _ids_in(data, url, k)}:
            return  # a no-op run writes nothing, here as in Metabase
        data[url] = entry
        self.state.ensure()
        write_private(self.path, json.dumps({"version": _VERSION, "metabases": data}, indent=2) + "\n")

    def _read(self) -> dict[str, object]:
        try:
            raw = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(raw, dict) or raw.get("version") != _VERSION:
            return {}
        metabases = raw.get("metabases")
        return dict(metabases) if isinstance(metabases, dict) else {}


def _ids_in(data: dict[str, object], url: str, kind: str) -> dict[str, int]:
    entry = data.get(url, {})
    ids = entry.get(kind) if isinstance(entry, dict) else None
    if not isinstance(ids, dict):
        return {}
    return {k: v for k, v in ids.items() if isinstance(k, str) and type(v) is int}


def _normal(url: str) -> str:
    return url.rstrip("/")
