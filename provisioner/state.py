"""The local state directory (`.provision/` or PROVISION_HOME): its layout and the credentials file.

Credentials are one JSON file, mode 0600, written atomically (temp file + rename) so a crash never
leaves it half-written; each part of the tool owns one section (`admin`, `api_key`, `reader`,
`postgres`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.errors import ConfigError, EnvironmentProblem

_DAMAGED_HINT = "restore it from a backup, or move it away and run `provision demo --fresh` to start over"


@dataclass(frozen=True)
class StateDir:
    """Paths of everything the tool keeps locally."""

    root: Path

    @property
    def postgres_dir(self) -> Path:
        return self.root / "postgres"

    @property
    def credentials_file(self) -> Path:
        return self.root / "credentials.json"

    @property
    def id_cache_file(self) -> Path:
        return self.root / "metabase-ids.json"

    @property
    def env_file(self) -> Path:
        return self.root / ".env"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    def ensure(self) -> Path:
        """Create the state directory (mode 0700) and return it.

        It ignores itself for git (a `.gitignore` of `*`, as pytest and ruff do for their caches):
        it sits in the working directory, often a dashboards repository, and holds credentials.
        """
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        ignore = self.root / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# metabase-provisioner's local state: credentials, never committed\n*\n")
        return self.root

    @contextmanager
    def exclusive(self, what: str) -> Iterator[None]:
        """Hold this directory's lock while `what` runs (demo, up, down).

        Two such commands on one demo at once would race to start the same processes and write the
        same files. Raises EnvironmentProblem naming the holder; the lock dies with its process.
        """
        try:
            import fcntl
        except ImportError:  # not POSIX: no advisory locks, run unguarded
            yield
            return
        self.ensure()
        with open(self.root / "lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another provision command"
                raise EnvironmentProblem(
                    f"{holder} is already running on the demo in {self.root}",
                    hint="wait for it to finish (or stop it with Ctrl-C), then run the command again",
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"`provision {what}` (pid {os.getpid()})\n")
            handle.flush()
            try:
                yield
            finally:
                handle.truncate(0)
                fcntl.flock(handle, fcntl.LOCK_UN)

    def read_credentials(self) -> dict[str, Any]:
        """All stored credentials; empty when none were stored yet. Raises ConfigError if unreadable."""
        try:
            data = json.loads(self.credentials_file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{self.credentials_file} cannot be read: {type(exc).__name__}",
                hint=_DAMAGED_HINT,
            ) from exc
        if not isinstance(data, dict):
            raise ConfigError(
                f"{self.credentials_file} is not a JSON object",
                hint=_DAMAGED_HINT,
            )
        return data

    def credential(self, section: str) -> dict[str, Any] | None:
        """One section of the credentials file, or None."""
        value = self.read_credentials().get(section)
        return value if isinstance(value, dict) else None

    def save_credential(self, section: str, value: dict[str, Any] | None) -> Path:
        """Replace one section (None removes it); the file stays mode 0600."""
        data = self.read_credentials()
        self.ensure()
        if value is None:
            data.pop(section, None)
        else:
            data[section] = value
        write_private(self.credentials_file, json.dumps(data, indent=2, sort_keys=True) + "\n")
        return self.credentials_file


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically with mode 0600 (never world-readable, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
