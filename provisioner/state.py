"""The local state directory (`.provision/` or PROVISION_HOME): its layout and the credentials file.

Credentials are one JSON file, mode 0600, written atomically (temp file + rename) so a crash never
leaves it half-written. Its model, `Credentials`, has one typed section per part of the tool that
keeps a secret; a file that does not match it is reported, never half-read.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, field_serializer

from provisioner.errors import ConfigError, EnvironmentProblem

_DAMAGED_HINT = "restore it from a backup, or move it away and run `provision demo --fresh` to start over"
_HOME_HINT = "set PROVISION_HOME to a directory you can write, or unset it to use ./.provision"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_serializer("*", when_used="json")
    def _reveal(self, value: object) -> object:
        # The file is where the secrets live: written in clear (mode 0600), shown nowhere else.
        return value.get_secret_value() if isinstance(value, SecretStr) else value


class AdminLogin(_Section):
    """The Metabase admin this tool created or was given (`provision metabase setup`)."""

    metabase_url: str
    email: str
    password: SecretStr


class ApiKeyCredential(_Section):
    """The tool's own Metabase API key."""

    metabase_url: str
    key: SecretStr
    id: int
    name: str


class DatabasePasswordFingerprint(_Section):
    """A salted hash of the password Metabase was given for the demo database (Metabase masks it on read)."""

    metabase_url: str
    database_id: int
    salt: str
    fingerprint: str


class ReaderLogin(_Section):
    """The read-only role Metabase connects as, and the warehouse it belongs to (None: not recorded)."""

    user: str
    password: SecretStr
    host: str | None = None
    port: int | None = None
    dbname: str | None = None

    def belongs_to(self, host: str, port: int, dbname: str) -> bool:
        """Whether this login was stored for that warehouse (one stored by older state, without one, is)."""
        wanted = {"host": host, "port": port, "dbname": dbname}
        return all(getattr(self, key) in (None, value) for key, value in wanted.items())


class PostgresLogin(_Section):
    """The embedded PostgreSQL's superuser, generated before its first start."""

    user: str
    password: SecretStr


class LocalMetabaseSecrets(_Section):
    """The local runtime's Metabase encryption key: a new one would make its stored passwords unreadable."""

    encryption_secret_key: SecretStr


class RememberedDatabase(_Section):
    """The warehouse a demo was given (--database-url), remembered for the commands run after it."""

    url: SecretStr


class Credentials(BaseModel):
    """Everything in credentials.json; a section is None until its part of the tool stores it."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    admin: AdminLogin | None = None
    api_key: ApiKeyCredential | None = None
    metabase_database: DatabasePasswordFingerprint | None = None
    reader: ReaderLogin | None = None
    postgres: PostgresLogin | None = None
    metabase_local: LocalMetabaseSecrets | None = None
    demo_database: RememberedDatabase | None = None


DemoRuntime = Literal["docker", "local", "external"]


class RememberedDemo(BaseModel):
    """How the last `demo` or `up` in this state directory ran (demo.json; never a secret).

    The commands run after it (status, doctor, down, db url, dashboards ...) read it, so they need
    no flags; a flag or an environment variable still wins. The database's URL, which holds a
    password, is in credentials.json (`demo_database`).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    runtime: DemoRuntime
    metabase_url: str
    metabase_jar: Path | None = None
    metabase_command: str | None = None
    # None: the demo dashboards the tool ships; else the paths the demo applied.
    dashboards: list[Path] | None = None


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

    @property
    def apply_locks_dir(self) -> Path:
        return self.run_dir / "apply-locks"

    @property
    def backups_dir(self) -> Path:
        return self.root / "backups"

    @property
    def demo_file(self) -> Path:
        return self.root / "demo.json"

    def check_usable(self) -> None:
        """Raise EnvironmentProblem when the state directory could not be used: it, or a folder above
        it, is a file, or the nearest existing folder is not writable. Leaves nothing behind."""
        existing = next(p for p in (self.root, *self.root.parents) if p.exists() or p == p.parent)
        if not existing.is_dir():
            where = "is a file" if existing == self.root else f"is under a file ({existing})"
            raise EnvironmentProblem(f"the state directory {self.root} {where}", hint=_HOME_HINT)
        if not os.access(existing, os.W_OK | os.X_OK):
            what = "is" if existing == self.root else f"would be created in {existing}, which is"
            raise EnvironmentProblem(f"the state directory {self.root} {what} not writable", hint=_HOME_HINT)
        if existing != self.root:
            # Permissions do not tell all: /proc or /sys refuse a new folder even to root. Try one.
            try:
                os.rmdir(tempfile.mkdtemp(prefix=".provision-probe-", dir=existing))
            except OSError as exc:
                raise EnvironmentProblem(
                    f"the state directory {self.root} cannot be created in {existing}: "
                    f"{exc.strerror or type(exc).__name__}",
                    hint=_HOME_HINT,
                ) from exc

    def ensure(self) -> Path:
        """Create the state directory (mode 0700) and return it; EnvironmentProblem when it cannot be.

        It ignores itself for git (a `.gitignore` of `*`, as pytest and ruff do for their caches):
        it sits in the working directory, often a dashboards repository, and holds credentials.
        """
        self.check_usable()
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            ignore = self.root / ".gitignore"
            if not ignore.exists():
                ignore.write_text("# metabase-provisioner's local state: credentials, never committed\n*\n")
        except OSError as exc:
            raise EnvironmentProblem(
                f"the state directory {self.root} cannot be created: {exc.strerror or type(exc).__name__}",
                hint=_HOME_HINT,
            ) from exc
        return self.root

    def remembered_demo(self) -> RememberedDemo | None:
        """What the last demo here recorded; None when none did (or the record is unreadable)."""
        try:
            return RememberedDemo.model_validate_json(self.demo_file.read_text())
        except (OSError, ValidationError):
            return None  # a record is a convenience: without one, flags and environment decide

    def remember_demo(self, demo: RememberedDemo, database_url: SecretStr | None) -> None:
        """Record how the demo runs (demo.json, and its database URL in credentials.json)."""
        self.ensure()
        if self.remembered_demo() != demo:  # a re-run of the same demo writes nothing
            write_private(self.demo_file, demo.model_dump_json(indent=2) + "\n")
        with self.edit_credentials() as credentials:
            credentials.demo_database = None if database_url is None else RememberedDatabase(url=database_url)

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

    def credentials(self) -> Credentials:
        """The stored credentials; empty when none were stored yet.

        Raises ConfigError naming the file and the first problem when it is unreadable, not JSON, or
        not what this tool writes (the message never holds a value from it).
        """
        try:
            text = self.credentials_file.read_text()
        except (FileNotFoundError, NotADirectoryError):
            return Credentials()  # none stored: a state directory under a file is named when written
        except OSError as exc:
            self.check_usable()  # when the directory is the cause, name it rather than the file
            raise ConfigError(
                f"{self.credentials_file} cannot be read: {exc.strerror or type(exc).__name__}",
                hint=_DAMAGED_HINT,
            ) from exc
        try:
            return Credentials.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "the file"
            problem = "not JSON" if first["type"] == "json_invalid" else f"{where}: {first['msg']}"
            raise ConfigError(
                f"{self.credentials_file} is damaged ({problem})", hint=_DAMAGED_HINT
            ) from None  # pydantic's own text quotes the input, secrets included

    @contextmanager
    def edit_credentials(self) -> Iterator[Credentials]:
        """The stored credentials to change in place; written back (mode 0600, atomically) on leaving.

        Read afresh on entry, so a section another step stored meanwhile is kept. Nothing is written
        when the block raises, or when it changed nothing. Raises ConfigError as `credentials()` does.
        """
        credentials = self.credentials()
        before = credentials.model_dump(mode="json", exclude_none=True)
        yield credentials
        after = credentials.model_dump(mode="json", exclude_none=True)
        if after == before:
            return
        self.ensure()
        write_private(self.credentials_file, json.dumps(after, indent=2, sort_keys=True) + "\n")


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
