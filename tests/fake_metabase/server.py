"""FakeMetabase: a threaded HTTP server on 127.0.0.1 speaking Metabase's REST API, with test hooks."""

from __future__ import annotations

import contextlib
import copy
import json
import marshal
import re
import threading
import time
import traceback
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import psycopg.conninfo

from tests.fake_metabase import (
    handlers_auth,
    handlers_card,
    handlers_collection,
    handlers_dashboard,
    handlers_database,
    handlers_setting,
    sql,
)
from tests.fake_metabase.handlers import (
    NO_ENDPOINT,
    NOT_FOUND,
    UNAUTHENTICATED,
    ApiError,
    Ctx,
    Response,
)
from tests.fake_metabase.state import FakeState

MUTATING_METHODS = frozenset({"POST", "PUT", "DELETE"})
INITIALIZING = "Metabase is still initializing. Please sit tight..."
FaultKind = Literal["500", "drop", "drop-after-commit"]

_ROUTES: list[tuple[str, re.Pattern[str], Callable[..., Response], bool]] = [
    (method, re.compile(pattern), handler, auth)
    for module in (
        handlers_setting,
        handlers_auth,
        handlers_database,
        handlers_collection,
        handlers_card,
        handlers_dashboard,
    )
    for method, pattern, handler, auth in module.ROUTES
]
# API contexts Metabase wraps in its auth middleware: an unknown sub-route there still answers 401 first.
_AUTH_CONTEXTS = frozenset(
    {
        "card",
        "dashboard",
        "collection",
        "database",
        "dataset",
        "user",
        "api-key",
        "permissions",
        "table",
        "field",
    }
)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received (query values are lists, as `parse_qs` gives them)."""

    method: str
    path: str
    query: dict[str, list[str]]
    json: Any
    headers: dict[str, str]


def new_state() -> FakeState:
    """Return the application DB of a brand-new Metabase: groups, Trash, Sample Database; no users."""
    state = FakeState()
    state.groups = {1: {"id": 1, "name": "All Users"}, 2: {"id": 2, "name": "Administrators"}}
    state.reserve_ids("group", 2)
    handlers_collection.create_trash_collection(state)
    handlers_database.create_sample_database(state)
    return state


class FakeMetabase:
    """A fake Metabase server; `start()` it, point a client at `.url`, inspect `.state` and `.requests`."""

    def __init__(
        self,
        version: str = "v0.65.4",
        init_polls: int = 0,
        sync_polls: int = 1,
        state_file: Path | str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0,
    ) -> None:
        self.version = version
        # Every request waits this long before it is answered, as over a network to a distant Metabase.
        self.latency_s = latency_ms / 1000
        self.sync_polls = sync_polls
        self.state_file = Path(state_file) if state_file else None
        self.host, self.port = host, port
        self._init_polls_left = init_polls
        self._lock = threading.RLock()
        self._mutations = 0
        self._faults: dict[int, FaultKind] = {}
        self._rewrites: list[tuple[str, re.Pattern[str], Callable[[Any], None]]] = []
        self._login_failures: dict[str, int] = {}
        self.requests: list[RecordedRequest] = []
        # Requests being answered at once now, and the most there ever were: how far a client overlaps them.
        self.in_flight = 0
        self.max_in_flight = 0
        self._in_flight_lock = threading.Lock()
        self.write_gate: WriteGate | None = None  # test hook: hold the next writes until they race
        if self.state_file and self.state_file.exists():
            self.state = FakeState.load(self.state_file)
        else:
            self.state = new_state()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------- lifecycle
    def start(self) -> FakeMetabase:
        """Start serving in a daemon thread; return self."""
        handler = type("_Handler", (_RequestHandler,), {"fake": self})
        self._server = _Server((self.host, self.port), handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-metabase",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port; the state stays inspectable."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        sql.POOL.close()

    def __enter__(self) -> FakeMetabase:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Return the base URL, e.g. http://127.0.0.1:54321 (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------- test hooks
    def mutating_requests(self) -> list[RecordedRequest]:
        """Return every recorded POST/PUT/DELETE, logins included; tests filter what they need."""
        return [r for r in self.requests if r.method in MUTATING_METHODS]

    def clear_requests(self) -> None:
        """Forget the recorded requests and the most in flight at once (injected faults stay armed)."""
        with self._lock:
            self.requests.clear()
        with self._in_flight_lock:
            self.max_in_flight = self.in_flight

    def inject_fault(self, at_mutation: int, kind: FaultKind) -> None:
        """Make the `at_mutation`-th mutating request from now (1 = the next one) fail.

        "500" answers a Metabase-shaped 500 JSON error and "drop" closes the connection with no response,
        both without applying the request; "drop-after-commit" applies it (and saves the state file) and then
        closes the connection with no response, as when a proxy or the network loses Metabase's answer.
        """
        if at_mutation < 1 or kind not in ("500", "drop", "drop-after-commit"):
            raise ValueError("at_mutation counts from 1; kind is '500', 'drop' or 'drop-after-commit'")
        with self._lock:
            self._faults[self._mutations + at_mutation] = kind

    def rewrite_answers(self, method: str, path: str, rewrite: Callable[[Any], None]) -> None:
        """From now on, pass the JSON body of each successful answer to `method` on a path matching `path`
        (a regex, whole path) through `rewrite`, which edits it in place.

        A test hook for checks that must notice a Metabase changing what it keeps (stripping a setting,
        rewriting a template tag or a clause): only the answers change, never what the fake accepts or
        stores, so the fake stays as strict as the real API.
        """
        with self._lock:
            self._rewrites.append((method, re.compile(path), rewrite))

    def _rewritten(self, method: str, path: str, response: Response) -> Response:
        if response.status >= 300 or not isinstance(response.body, dict | list):
            return response
        for rewrite_method, pattern, rewrite in self._rewrites:
            if rewrite_method == method and pattern.fullmatch(path):
                body = copy.deepcopy(response.body)
                rewrite(body)
                response = Response(response.status, body, dict(response.headers))
        return response

    def set_version(self, tag: str) -> None:
        """Report `tag` (e.g. "v0.61.9") as `version.tag` from now on; behaviour stays the newest."""
        self.version = tag

    def admin_session(
        self,
        email: str = "admin@example.com",
        password: str = "Fake-Admin-Pass-1",
        first_name: str = "Ada",
        last_name: str = "Admin",
    ) -> str:
        """Return a new session id for the admin, completing setup first if needed (skips HTTP)."""
        with self._lock:
            user = next((u for u in self.state.users.values() if u["email"] == email), None)
            if user is None:
                if self.state.has_user_setup():
                    raise ValueError(f"setup was done with another admin than {email}")
                user = handlers_auth.create_user(
                    self.state,
                    email=email,
                    first_name=first_name,
                    last_name=last_name,
                    password=password,
                    superuser=True,
                )
                self.state.site_name = self.state.site_name or "Fake Metabase"
            session_id = str(uuid.uuid4())
            self.state.sessions[session_id] = user["id"]
            self._save()
            return session_id

    def add_database(self, dsn: str, name: str = "Warehouse") -> int:
        """Register and sync a PostgreSQL database from a libpq DSN, already "complete"; return its id."""
        info = psycopg.conninfo.conninfo_to_dict(dsn)
        details = {
            "host": info.get("host", "localhost"),
            "port": int(info.get("port") or 5432),
            "dbname": info.get("dbname"),
            "user": info.get("user"),
            "password": info.get("password"),
            "ssl": False,
        }
        with self._lock:
            database = handlers_database.register(self.state, name, details, creator_id=None, sync_polls=0)
            self._save()
            return database["id"]

    def _save(self) -> None:
        if self.state_file is not None:
            self.state.save(self.state_file)

    def cards(self) -> list[dict]:
        """Return every card (archived too) as GET /api/card/:id shows it, by id."""
        with self._lock:
            return [
                handlers_card.card_json(self.state, c) for c in sorted(self.state.cards.values(), key=_by_id)
            ]

    def dashboards(self) -> list[dict]:
        """Return every dashboard as GET /api/dashboard/:id shows it, by id."""
        with self._lock:
            return [
                handlers_dashboard.dashboard_json(self.state, d)
                for d in sorted(self.state.dashboards.values(), key=_by_id)
            ]

    def collections(self) -> list[dict]:
        """Return every real collection (personal, Trash, archived too) as the API lists it, by id."""
        with self._lock:
            return [
                handlers_collection.collection_json(self.state, c)
                for c in sorted(self.state.collections.values(), key=_by_id)
            ]

    def databases(self) -> list[dict]:
        """Return every database (Sample Database included) as GET /api/database lists it, by id."""
        with self._lock:
            return [
                handlers_database.database_json(d) for d in sorted(self.state.databases.values(), key=_by_id)
            ]

    # ------------------------------------------------------------- dispatch
    def handle(
        self, method: str, raw_path: str, body_bytes: bytes, headers: dict[str, str]
    ) -> Response | None:
        """Answer one request (after the latency); None means drop the connection without a response."""
        with self._in_flight_lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency_s > 0:
                time.sleep(self.latency_s)  # outside the state lock: requests in flight overlap
            return self._handle(method, raw_path, body_bytes, headers)
        finally:
            with self._in_flight_lock:
                self.in_flight -= 1

    def _handle(
        self, method: str, raw_path: str, body_bytes: bytes, headers: dict[str, str]
    ) -> Response | None:
        parsed = urllib.parse.urlsplit(raw_path)
        path = parsed.path.rstrip("/") or "/"
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        body: Any = None
        body_error = False
        # Like Metabase's JSON middleware: a body is only read when it is declared as JSON.
        is_json = headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"
        if body_bytes and is_json:
            try:
                body = json.loads(body_bytes)
            except ValueError:
                body_error = True
        if self.write_gate is not None and method in MUTATING_METHODS and not path.startswith("/api/session"):
            self.write_gate.arrive()  # outside the lock: the writes held here then race each other
        with self._lock:
            self.requests.append(RecordedRequest(method, path, query, body, dict(headers)))
            if path == "/api/health" and method == "GET":
                return self._health()
            if self._init_polls_left > 0:
                return Response(503, INITIALIZING)
            fault = None
            if method in MUTATING_METHODS:
                self._mutations += 1
                fault = self._faults.pop(self._mutations, None)
                if fault == "drop":
                    return None
                if fault == "500":
                    return _server_error("Injected fault: the change was not applied.")
            response = (
                Response(400, "Malformed JSON in request body.")
                if body_error
                else self._rewritten(method, path, self._route(method, path, query, body, headers))
            )
            if method in MUTATING_METHODS and not body_error and not _QUERIES.fullmatch(path):
                self._save()
            return None if fault == "drop-after-commit" else response

    def _health(self) -> Response:
        if self._init_polls_left > 0:
            self._init_polls_left -= 1
            return Response(503, {"status": "initializing", "progress": 0.5})
        return Response(200, {"status": "ok"})

    def _route(self, method: str, path: str, query: dict, body: Any, headers: dict[str, str]) -> Response:
        user = handlers_auth.authenticate(self.state, headers)
        for route_method, pattern, handler, needs_auth in _ROUTES:
            match = pattern.fullmatch(path)
            if match is None or route_method != method:
                continue
            if needs_auth and user is None:
                return Response(401, UNAUTHENTICATED)
            ctx = Ctx(
                self.state, body, query, user, self.version, self.sync_polls, headers, self._login_failures
            )
            writes = method in MUTATING_METHODS and not _QUERIES.fullmatch(path)
            backup = _snapshot(self.state) if writes else None
            try:
                response = handler(ctx, **match.groupdict())
            except ApiError as error:
                self._restore(backup)
                return error.response
            except Exception as exc:  # a bug in the fake must still look like a Metabase 500
                self._restore(backup)
                return _server_error(f"{type(exc).__name__}: {exc}", traceback.format_exc().splitlines())
            for cookie in ctx.set_cookies:
                response.headers.setdefault("Set-Cookie", cookie)
            return response
        if not path.startswith("/api/"):
            return Response(404, NOT_FOUND)
        context = path.split("/")[2] if path.count("/") >= 2 else ""
        if user is None and context in _AUTH_CONTEXTS:
            return Response(401, UNAUTHENTICATED)
        return Response(404, NO_ENDPOINT)

    def _restore(self, backup: FakeState | None) -> None:
        if backup is not None:
            self.state.__dict__.update(backup.__dict__)


# POSTs that run a query and change nothing: no snapshot to restore, no state file to save.
_QUERIES = re.compile(r"/api/card/[^/]+/query|/api/dataset")


def _snapshot(state: FakeState) -> FakeState:
    """A deep copy of the state, put back if the request fails. The state is plain data (it round-trips
    through JSON), which marshal copies in C: `copy.deepcopy` made each write cost more as cards piled up."""
    try:
        return FakeState(**marshal.loads(marshal.dumps(state.__dict__)))
    except ValueError:  # something marshal cannot copy: copy it the slow way
        return copy.deepcopy(state)


def _by_id(obj: dict) -> int:
    return obj["id"]


def _server_error(message: str, trace: list[str] | None = None) -> Response:
    return Response(
        500,
        {
            "message": message,
            "via": [{"type": "java.lang.Exception", "message": message}],
            "trace": trace or [],
        },
    )


class WriteGate:
    """Holds the next `parties` writes (any client) until all of them have arrived, then lets them go
    together: two clients that would write at about the same time are made to, deterministically."""

    def __init__(self, parties: int, timeout_s: float = 10.0) -> None:
        self._barrier = threading.Barrier(parties, timeout=timeout_s)
        self._left = parties
        self._count = threading.Lock()

    def arrive(self) -> None:
        with self._count:
            if self._left == 0:
                return
            self._left -= 1
        with contextlib.suppress(threading.BrokenBarrierError):  # the other party never came: go on
            self._barrier.wait()


class _Server(ThreadingHTTPServer):
    # Jetty's accept queue is deep; socketserver's default of 5 would make a client that opens several
    # connections at once wait a second for a SYN retransmit.
    request_queue_size = 128
    daemon_threads = True


class _RequestHandler(BaseHTTPRequestHandler):
    fake: FakeMetabase
    server_version = "Jetty(11.0.24)"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        response = self.fake.handle(self.command, self.path, body, headers)
        if response is None:
            self.close_connection = True
            return
        payload, content_type = response.encode()
        self.send_response(response.status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Stay silent: request lines may carry ids, and tests read `.requests` instead."""
