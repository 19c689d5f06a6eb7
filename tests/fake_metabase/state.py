"""The fake Metabase's application database: plain dicts, JSON round-trippable for `--state-file`."""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Tables keyed by integer id; JSON object keys are strings, so these are converted on load.
_ID_TABLES = ("users", "api_keys", "groups", "databases", "collections", "cards", "dashboards")


@dataclass
class FakeState:
    """Everything a real Metabase keeps in its application DB, as inspectable dicts."""

    setup_token: str = field(default_factory=lambda: str(uuid.uuid4()))
    site_name: str | None = None
    users: dict[int, dict] = field(default_factory=dict)
    sessions: dict[str, int] = field(default_factory=dict)
    api_keys: dict[int, dict] = field(default_factory=dict)
    groups: dict[int, dict] = field(default_factory=dict)
    databases: dict[int, dict] = field(default_factory=dict)
    collections: dict[int, dict] = field(default_factory=dict)
    cards: dict[int, dict] = field(default_factory=dict)
    dashboards: dict[int, dict] = field(default_factory=dict)
    # Stable metadata ids, keyed "<db id>:<schema>.<table>" and "<db id>:<schema>.<table>.<column>".
    table_ids: dict[str, int] = field(default_factory=dict)
    field_ids: dict[str, int] = field(default_factory=dict)
    next_ids: dict[str, int] = field(default_factory=dict)

    def next_id(self, kind: str) -> int:
        """Return the next auto-increment id for `kind` (ids are never reused, as in a SQL sequence)."""
        value = self.next_ids.get(kind, 1)
        self.next_ids[kind] = value + 1
        return value

    def reserve_ids(self, kind: str, last_used: int) -> None:
        """Make the next id of `kind` greater than `last_used`."""
        self.next_ids[kind] = max(self.next_ids.get(kind, 1), last_used + 1)

    def has_user_setup(self) -> bool:
        return any(u.get("type") == "personal" for u in self.users.values())

    def trash_collection(self) -> dict:
        return next(c for c in self.collections.values() if c.get("type") == "trash")

    def to_json(self) -> str:
        data: dict[str, Any] = dict(self.__dict__)
        for name in _ID_TABLES:
            data[name] = {str(k): v for k, v in data[name].items()}
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FakeState:
        data = json.loads(text)
        for name in _ID_TABLES:
            data[name] = {int(k): v for k, v in data.get(name, {}).items()}
        return cls(**data)

    def save(self, path: Path) -> None:
        """Write the state atomically (temp file + rename), so a killed fake never leaves half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".fake-metabase-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(self.to_json())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> FakeState:
        return cls.from_json(path.read_text())
