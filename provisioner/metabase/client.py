"""HTTP only: one method per Metabase endpoint, typed in and out, every failure a MetabaseError.

One `requests.Session` per client, a timeout on every call, retries with backoff only where a
repeat is harmless: GET/PUT/DELETE on a dropped connection or a 429/502/503/504 answer, and any method
on a 429 (see `_may_retry`). A `Retry-After` header sets the wait. The client may be shared by
threads (observe.py and apply.py read and write in parallel): it never has more than `concurrency`
requests in flight, its connection pool holds that many connections, its request counters are kept
under a lock.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC
from email.utils import parsedate_to_datetime
from http.cookiejar import DefaultCookiePolicy
from types import TracebackType
from typing import Any, TypeVar

import requests
from pydantic import BaseModel, SecretStr, ValidationError
from requests.adapters import HTTPAdapter

from provisioner.config import DEFAULT_CONCURRENCY
from provisioner.errors import (
    MetabaseAuthError,
    MetabaseError,
    MetabaseNotFound,
    MetabaseRefused,
    MetabaseUnreachable,
)
from provisioner.metabase.models import (
    ApiKey,
    ApiKeyCreate,
    ApiKeyCreated,
    Card,
    CardCreate,
    CardQuery,
    CardUpdate,
    Collection,
    CollectionCreate,
    CollectionId,
    CollectionItem,
    CollectionUpdate,
    Dashboard,
    DashboardCreate,
    DashboardUpdate,
    Database,
    DatabaseCreate,
    DatabaseMetadata,
    DatabaseUpdate,
    HealthStatus,
    LoginRequest,
    NativeDatasetQuery,
    NativeQuery,
    PermissionGroup,
    QueryParameter,
    QueryResult,
    SessionCreated,
    SessionProperties,
    SettingValue,
    SetupPrefs,
    SetupRequest,
    SetupUser,
    User,
    unwrap_list,
)
from provisioner.redact import redact

M = TypeVar("M", bound=BaseModel)


IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})
# "Not now" answers: Metabase still starting (503), a proxy in front of it (502, 504), rate limiting (429).
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# A 429 is given by a rate limiter before the request reaches any handler (Metabase's own, or a proxy's):
# nothing was applied, so a POST answered 429 is retried too. A 502/503/504 to a POST is not: a proxy may
# give up on Metabase (504) or lose its answer (502) after the change was made, and a 503 cannot be told
# from those; re-running converges instead (plan finds what was made).
NOT_APPLIED_STATUSES = frozenset({429})
# The longest wait a `Retry-After` may ask for: a run should fail with a clear error, not hang for an hour.
MAX_RETRY_AFTER_S = 30.0
# Keys whose values in a request body are secrets: collected so no error message can echo them.
_SECRET_KEYS = frozenset({"password", "token", "unmasked_key", "api_key", "key"})
_MAX_MESSAGE_CHARS = 400


class MetabaseClient:
    """A typed client for one Metabase; authenticate with `use_session` or `use_api_key`."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 30,
        retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        backoff_s: float = 0.5,
        concurrency: int = DEFAULT_CONCURRENCY,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        # How many requests the core may have in flight at once through this client (parallel.py).
        self.concurrency = concurrency
        self._sleep = sleep
        self._wall_clock = wall_clock  # reads a `Retry-After` given as an HTTP date
        self._session = requests.Session()
        # requests keeps 10 connections per host by default; more threads would open and drop extra ones.
        adapter = HTTPAdapter(pool_maxsize=max(10, concurrency))
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update({"Accept": "application/json"})
        # Setup and login also set a `metabase.SESSION` cookie; keeping it would authenticate
        # requests meant to use only the API key. Auth is by header alone.
        self._session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        self._secrets: set[str] = set()
        # HTTP requests actually sent (retries included), for tests and benchmarks.
        self.request_count = 0
        self.request_counts: Counter[str] = Counter()
        self._counting = threading.Lock()
        # However many threads share the client, at most `concurrency` requests are in flight at once.
        self._slots = _Slots(concurrency)

    # --- lifecycle and auth ---

    def use_session(self, session_id: str) -> None:
        """Authenticate every later call with a session id (`X-Metabase-Session`)."""
        self._session.headers.pop("X-API-Key", None)
        self._session.headers["X-Metabase-Session"] = session_id
        self._secrets.add(session_id)

    def use_api_key(self, key: str) -> None:
        """Authenticate every later call with an API key (`X-API-Key`)."""
        self._session.headers.pop("X-Metabase-Session", None)
        self._session.headers["X-API-Key"] = key
        self._secrets.add(key)

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._session.close()

    def __enter__(self) -> MetabaseClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- transport ---

    def _count(self, method: str) -> None:
        with self._counting:
            self.request_count += 1
            self.request_counts[method] += 1

    def _wait_s(self, response: requests.Response | None, attempt: int) -> float:
        """How long to wait before the next attempt: the answer's `Retry-After` (capped), else backoff."""
        asked = None if response is None else retry_after_s(response, self._wall_clock())
        if asked is None:
            return float(self.backoff_s * 2**attempt)
        return min(asked, MAX_RETRY_AFTER_S)

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: BaseModel | None = None,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
    ) -> Any:
        """The decoded JSON answer (None for an empty body); raises a MetabaseError subclass."""
        # Bodies are models, never hand-built dicts: exact on write.
        payload = None if body is None else body.model_dump(mode="json", exclude_none=True)
        secrets = self._secrets | set(_secret_values(payload))
        url = f"{self.base_url}{path}"
        attempts = 1 + self.retries
        for attempt in range(attempts):
            last = attempt == attempts - 1
            self._count(method)
            try:
                with self._slots:
                    response = self._session.request(
                        method,
                        url,
                        json=payload,
                        params=params,
                        timeout=self.timeout_s,
                        allow_redirects=False,  # see error_for_response: a redirect is a wrong address
                    )
            except requests.RequestException as exc:
                # A POST whose connection broke may have been applied: never sent twice.
                if not last and method in IDEMPOTENT_METHODS:
                    self._sleep(self._wait_s(None, attempt))
                    continue
                raise _unreachable(self.base_url, method, path, exc, secrets) from exc
            if not last and _may_retry(method, response.status_code):
                self._sleep(self._wait_s(response, attempt))
                continue
            if response.status_code >= 300:
                raise error_for_response(response, method, path, secrets)
            return _decode(response, method, path, secrets)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _get_model(self, path: str, model: type[M], **params: Any) -> M:
        return _parse(model, self._request("GET", path, params=params or None), "GET", path)

    def _get_list(self, path: str, model: type[M], params: Any = None) -> list[M]:
        raw = self._request("GET", path, params=params)
        try:
            items = unwrap_list(raw)
        except ValueError as exc:
            raise _unexpected("GET", path, str(exc)) from exc
        return [_parse(model, item, "GET", path) for item in items]

    def _send(self, method: str, path: str, model: type[M], body: BaseModel | None) -> M:
        return _parse(model, self._request(method, path, body=body), method, path)

    # --- health, setup, auth ---

    def health(self) -> HealthStatus:
        """Health of the server: "ok" or "initializing"; raises MetabaseUnreachable if nothing answers."""
        path = "/api/health"
        # 503 with a JSON status is an answer here, not an error: read it without retrying.
        self._count("GET")
        try:
            with self._slots:
                response = self._session.get(
                    f"{self.base_url}{path}", timeout=self.timeout_s, allow_redirects=False
                )
        except requests.RequestException as exc:
            raise _unreachable(self.base_url, "GET", path, exc, self._secrets) from exc
        if response.status_code == 503:
            try:
                return HealthStatus.model_validate(response.json())
            except (ValueError, ValidationError):
                return HealthStatus(status="initializing")
        if response.status_code >= 300:
            raise error_for_response(response, "GET", path, self._secrets)
        return _parse(HealthStatus, _decode(response, "GET", path, self._secrets), "GET", path)

    def session_properties(self) -> SessionProperties:
        """Public settings: has-user-setup, setup-token, version, anon-tracking-enabled (effective values)."""
        return self._get_model("/api/session/properties", SessionProperties)

    def setup(self, token: str, user: SetupUser, site_name: str) -> str:
        """Create the first admin; returns a session id. Raises MetabaseError (wrong token, user exists)."""
        self._secrets.add(token)
        body = SetupRequest(token=token, user=user, prefs=SetupPrefs(site_name=site_name))
        answer = self._request("POST", "/api/setup", body=body)
        return _parse(SessionCreated, answer, "POST", "/api/setup").id

    def set_setting(self, key: str, value: bool | int | str) -> None:
        """Change a site-wide setting (`PUT /api/setting/:key`, superusers only; 204)."""
        self._request("PUT", f"/api/setting/{key}", body=SettingValue(value=value))

    def login(self, email: str, password: str) -> str:
        """A new session id for `email`; raises MetabaseAuthError on wrong credentials or throttling."""
        self._secrets.add(password)
        body = LoginRequest(username=email, password=SecretStr(password))
        return self._send("POST", "/api/session", SessionCreated, body).id

    def current_user(self) -> User:
        """Who the session or API key acts as."""
        return self._get_model("/api/user/current", User)

    def list_permission_groups(self) -> list[PermissionGroup]:
        """Permission groups (1 All Users, 2 Administrators on a fresh instance)."""
        return self._get_list("/api/permissions/group", PermissionGroup)

    def list_api_keys(self) -> list[ApiKey]:
        """API keys, masked."""
        return self._get_list("/api/api-key", ApiKey)

    def create_api_key(self, name: str, group_id: int) -> ApiKeyCreated:
        """A new API key (the only answer holding the key); raises MetabaseError on a duplicate name."""
        created = self._send(
            "POST", "/api/api-key", ApiKeyCreated, ApiKeyCreate(name=name, group_id=group_id)
        )
        self._secrets.add(created.unmasked_key.get_secret_value())
        return created

    def regenerate_api_key(self, key_id: int) -> ApiKeyCreated:
        """A fresh secret for an existing key; the old one stops working."""
        created = self._send("PUT", f"/api/api-key/{key_id}/regenerate", ApiKeyCreated, None)
        self._secrets.add(created.unmasked_key.get_secret_value())
        return created

    # --- databases ---

    def list_databases(self) -> list[Database]:
        """Registered databases (the Sample Database included)."""
        return self._get_list("/api/database", Database)

    def get_database(self, database_id: int) -> Database:
        """One database; raises MetabaseNotFound."""
        return self._get_model(f"/api/database/{database_id}", Database)

    def create_database(self, database: DatabaseCreate) -> Database:
        """Register a database; Metabase tests the connection first (400 with its reason on failure)."""
        return self._send("POST", "/api/database", Database, database)

    def update_database(self, database_id: int, update: DatabaseUpdate) -> Database:
        """Change a database's name or details; raises MetabaseError if the new details do not connect."""
        return self._send("PUT", f"/api/database/{database_id}", Database, update)

    def sync_schema(self, database_id: int) -> None:
        """Ask Metabase to re-read the schema (asynchronous: poll the metadata afterwards)."""
        self._request("POST", f"/api/database/{database_id}/sync_schema")

    def database_metadata(self, database_id: int) -> DatabaseMetadata:
        """Tables and fields with their ids, as synced so far."""
        return self._get_model(f"/api/database/{database_id}/metadata", DatabaseMetadata)

    # --- collections ---

    def list_collections(self, archived: bool = False) -> list[Collection]:
        """Collections, the root stub ("root") first."""
        params = {"archived": "true"} if archived else None
        return self._get_list("/api/collection", Collection, params)

    def get_collection(self, collection_id: CollectionId) -> Collection:
        """One collection (or "root"); raises MetabaseNotFound."""
        return self._get_model(f"/api/collection/{collection_id}", Collection)

    def create_collection(self, collection: CollectionCreate) -> Collection:
        """A new collection."""
        return self._send("POST", "/api/collection", Collection, collection)

    def update_collection(self, collection_id: int, update: CollectionUpdate) -> Collection:
        """The updated collection (note: Metabase unarchives when `archived` is omitted)."""
        return self._send("PUT", f"/api/collection/{collection_id}", Collection, update)

    def collection_items(
        self,
        collection_id: CollectionId,
        models: Sequence[str] = (),
        archived: bool = False,
    ) -> list[CollectionItem]:
        """Items of a collection, optionally only some models ("card", "dashboard", "collection")."""
        params: list[tuple[str, str]] = [("models", m) for m in models]
        if archived:
            params.append(("archived", "true"))
        return self._get_list(f"/api/collection/{collection_id}/items", CollectionItem, params or None)

    # --- cards ---

    def get_card(self, card_id: int) -> Card:
        """One card; raises MetabaseNotFound."""
        return self._get_model(f"/api/card/{card_id}", Card)

    def create_card(self, card: CardCreate) -> Card:
        """A new card (native SQL in the legacy form)."""
        return self._send("POST", "/api/card", Card, card)

    def update_card(self, card_id: int, update: CardUpdate) -> Card:
        """The updated card."""
        return self._send("PUT", f"/api/card/{card_id}", Card, update)

    def run_card(
        self, card_id: int, parameters: Iterable[QueryParameter | Mapping[str, Any]] = ()
    ) -> QueryResult:
        """The card's query result; `status` says whether the SQL failed (HTTP is 202 either way)."""
        body = CardQuery(
            parameters=[
                p if isinstance(p, QueryParameter) else QueryParameter.model_validate(p) for p in parameters
            ]
        )
        return self._send("POST", f"/api/card/{card_id}/query", QueryResult, body)

    def run_native(self, database_id: int, sql: str) -> QueryResult:
        """The result of ad-hoc SQL (`POST /api/dataset`); check `status`."""
        query = NativeDatasetQuery(database=database_id, native=NativeQuery(query=sql))
        return self._send("POST", "/api/dataset", QueryResult, query)

    # --- dashboards ---

    def get_dashboard(self, dashboard_id: int) -> Dashboard:
        """One dashboard with dashcards and tabs; raises MetabaseNotFound."""
        return self._get_model(f"/api/dashboard/{dashboard_id}", Dashboard)

    def create_dashboard(self, dashboard: DashboardCreate) -> Dashboard:
        """A new, empty dashboard (dashcards are added with `update_dashboard`)."""
        return self._send("POST", "/api/dashboard", Dashboard, dashboard)

    def update_dashboard(self, dashboard_id: int, update: DashboardUpdate) -> Dashboard:
        """The updated dashboard; a given `dashcards` list replaces them all (absent ones are deleted)."""
        return self._send("PUT", f"/api/dashboard/{dashboard_id}", Dashboard, update)

    def delete_dashboard(self, dashboard_id: int) -> None:
        """Delete a dashboard for good (only the apply lock's own, see apply_lock.py); 404 if gone."""
        self._request("DELETE", f"/api/dashboard/{dashboard_id}")


class _Slots:
    """At most `size` holders at once, each slot granted in the order it was asked for.

    `threading.Semaphore` lets a thread that has just released take the slot back ahead of those waiting:
    a thread of a busy pool would get every slot in turn, and a read made beside the pool (the metadata
    planning needs first) would wait until the pool has nothing left to do. Here a slot released goes
    straight to the longest waiter.
    """

    def __init__(self, size: int) -> None:
        self._lock = threading.Lock()
        self._free = size
        self._waiting: deque[threading.Lock] = deque()

    def __enter__(self) -> None:
        with self._lock:
            if self._free and not self._waiting:
                self._free -= 1
                return
            gate = threading.Lock()
            gate.acquire()
            self._waiting.append(gate)
        try:
            gate.acquire()  # released by the holder that hands its slot over
        except BaseException:  # interrupted while waiting: leave the queue, or give back the slot handed
            with self._lock:
                if gate in self._waiting:
                    self._waiting.remove(gate)
                    raise
            self.__exit__()
            raise

    def __exit__(self, *_exc: object) -> None:
        with self._lock:
            if self._waiting:
                self._waiting.popleft().release()
            else:
                self._free += 1


# --- retries and error mapping (module level: tests and other adapters use them) ---------------


def _may_retry(method: str, status: int) -> bool:
    """Whether an answer of `status` may be retried: any "not now" answer to a repeatable method, and a
    rate limit's 429 to any method (nothing was applied)."""
    if status not in RETRY_STATUSES:
        return False
    return method in IDEMPOTENT_METHODS or status in NOT_APPLIED_STATUSES


def retry_after_s(response: requests.Response, now_s: float) -> float | None:
    """The seconds an answer's `Retry-After` asks to wait (a number of seconds, or an HTTP date, RFC 9110
    10.2.3) from `now_s` (Unix time); None when it has none or it cannot be read."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now_s)


def _secret_values(payload: Any) -> Iterable[str]:
    if isinstance(payload, Mapping):
        for key, value in payload.items():
            if key in _SECRET_KEYS and isinstance(value, str):
                yield value
            else:
                yield from _secret_values(value)
    elif isinstance(payload, list):
        for item in payload:
            yield from _secret_values(item)


def _clip(text: str) -> str:
    """`text` on one line, shortened; only ever applied after `redact` (a cut secret escapes it)."""
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[: _MAX_MESSAGE_CHARS - 1] + "…"


def _looks_like_html(response: requests.Response) -> bool:
    content_type = response.headers.get("Content-Type", "")
    head = response.text.lstrip()[:15].lower()
    return "html" in content_type or head.startswith(("<!doctype", "<html", "<"))


def _body_of(response: requests.Response) -> tuple[Any, str]:
    """(decoded JSON or None, raw text) of an answer."""
    text = response.text or ""
    try:
        return response.json(), text
    except ValueError:
        return None, text


def _errors_text(errors: Mapping[str, Any]) -> str:
    return "; ".join(f"{key}: {value}" for key, value in errors.items())


def _flat_errors(errors: Mapping[str, Any], prefix: str = "") -> dict[str, object]:
    """Metabase's field error map with dotted keys: `{"user.password": …}`."""
    # Endpoints whose body schema nests maps (POST /api/setup: `user`, `prefs`) nest their errors the same
    # way (api/macros.clj `invalid-params-errors` does `assoc-in` by the value's path).
    flat: dict[str, object] = {}
    for key, value in errors.items():
        if isinstance(value, Mapping):
            flat.update(_flat_errors(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _metabase_message(data: Any, text: str) -> tuple[str, dict[str, object]]:
    """Metabase's own words from an error body (unclipped: redact first), and its field error map."""
    if isinstance(data, Mapping):
        errors = _flat_errors(data["errors"]) if isinstance(data.get("errors"), Mapping) else {}
        message = data.get("message") if isinstance(data.get("message"), str) else None
        status = data.get("status") if isinstance(data.get("status"), str) else None
        said: str | None
        if message and errors:
            said = f"{message.rstrip('.')} ({_errors_text(errors)})"
        else:
            said = message or (_errors_text(errors) if errors else None)
        said = said or status
        return (said or json.dumps(data)), errors
    if isinstance(data, str):
        return data, {}
    return text or "(empty answer)", {}


def error_for_response(
    response: requests.Response, method: str, path: str, secrets: Iterable[str] = ()
) -> MetabaseError:
    """The typed error for a non-2xx answer, with Metabase's message and a hint; no secret in it."""
    status = response.status_code
    where = f"{method} {path}"
    secret_list = list(secrets)

    def clean(text: str) -> str:
        return redact(text, secret_list)

    if 300 <= status < 400:
        # Never followed: requests turns a redirected POST into a GET, and would carry the
        # X-API-Key / X-Metabase-Session header to whatever host the redirect names.
        location = clean(response.headers.get("Location", "")) or "an address it did not give"
        return MetabaseUnreachable(
            f"{where} was redirected (HTTP {status}) to {location}",
            hint="set --metabase-url (or METABASE_URL) to Metabase's own address, e.g. the https:// "
            "one it redirects to; requests are not followed to another address",
            status=status,
            method=method,
            path=path,
        )
    if _looks_like_html(response) and status != 503:
        return MetabaseUnreachable(
            f"{where} answered HTTP {status} with an HTML page, not Metabase's API",
            hint="check --metabase-url (or METABASE_URL): it must point at Metabase itself, "
            "e.g. http://localhost:3000, not a proxy login page or another web server",
            status=status,
            method=method,
            path=path,
        )
    data, text = _body_of(response)
    said, errors = _metabase_message(data, text)
    said = _clip(clean(said))
    errors = {k: clean(str(v)) for k, v in errors.items()}
    common: dict[str, Any] = {"status": status, "method": method, "path": path, "errors": errors}
    message = f"Metabase rejected {where} (HTTP {status}): {said}"

    if status == 400:
        if path == "/api/setup" and "token" in errors:
            return MetabaseError(
                message,
                hint="wrong setup token: it changes when Metabase is reinstalled; run "
                "`provision metabase setup` again, it reads the current one from /api/session/properties",
                **common,
            )
        if path == "/api/setup" and {"email", "password"} & {k.rpartition(".")[2] for k in errors}:
            return MetabaseError(
                message,
                hint="Metabase refused the admin's email or password: fix METABASE_ADMIN_EMAIL / "
                "METABASE_ADMIN_PASSWORD (a password needs letters and digits and must not be a common "
                "one), or unset the password to have a strong one generated",
                **common,
            )
        if path.startswith("/api/database") and method in {"POST", "PUT"}:
            return MetabaseError(
                f"Metabase could not connect to the database ({where}): {said}",
                hint="Metabase tests the connection from where IT runs: check host, port, user and "
                "password as seen from Metabase (inside Docker `localhost` is the Metabase container; "
                "use --metabase-database-url)",
                **common,
            )
        if path == "/api/api-key" and "name" in errors:
            return MetabaseError(
                message, hint="an API key with this name exists already: regenerate it instead", **common
            )
        return MetabaseError(message, hint="Metabase named the invalid fields above", **common)
    if status == 401:
        if path == "/api/session":
            if "too many attempts" in said.lower():
                return MetabaseAuthError(
                    message,
                    hint="Metabase throttles logins after repeated failures: wait, then retry; set "
                    "METABASE_API_KEY to avoid logging in at all",
                    **common,
                )
            return MetabaseAuthError(
                f"Metabase rejected the admin login (HTTP 401): {said}",
                hint="wrong admin email or password: check METABASE_ADMIN_EMAIL / METABASE_ADMIN_PASSWORD "
                "or the `admin` section of .provision/credentials.json",
                **common,
            )
        return MetabaseAuthError(
            message,
            hint="the session or API key is invalid, expired or revoked: unset METABASE_API_KEY or run "
            "`provision metabase setup` to log in again and create a new key",
            **common,
        )
    if status == 403:
        if path == "/api/setup":
            return MetabaseError(
                message,
                hint="Metabase is set up already: give its admin credentials (METABASE_ADMIN_EMAIL / "
                "METABASE_ADMIN_PASSWORD) or an API key (METABASE_API_KEY)",
                **common,
            )
        return MetabaseAuthError(
            message,
            hint="the user or API key lacks the rights for this: use an admin account or a key in the "
            "Administrators group",
            **common,
        )
    if status == 404:
        if path == "/api/session/properties":
            return MetabaseUnreachable(
                f"{where} answered 404: this URL is not a Metabase",
                hint="check --metabase-url (or METABASE_URL), e.g. http://localhost:3000",
                **common,
            )
        if "endpoint does not exist" in said.lower():
            return MetabaseNotFound(
                message,
                hint="this Metabase lacks the endpoint: check the version is supported, and that the URL "
                "points at Metabase",
                **common,
            )
        return MetabaseNotFound(
            message, hint="the object does not exist (deleted in Metabase?); re-run to recreate it", **common
        )
    if status == 429:
        return MetabaseUnreachable(
            message,
            hint="Metabase (or a proxy in front of it) is limiting how many requests it takes: wait a "
            "minute and re-run, or send fewer at once with --concurrency (or PROVISION_CONCURRENCY)",
            **common,
        )
    if status == 402:
        return MetabaseError(message, hint="this is an Enterprise-only feature of Metabase", **common)
    if status in RETRY_STATUSES:
        return MetabaseUnreachable(
            message,
            hint="Metabase is still starting or overloaded: wait until /api/health says ok, then retry",
            **common,
        )
    if status == 422 and path.endswith("/sync_schema"):
        return MetabaseError(
            f"Metabase cannot reach the database to sync it: {said}",
            hint="check the database is running and reachable from Metabase",
            **common,
        )
    return MetabaseError(
        message, hint="see Metabase's log for details; re-running is safe (the tool is idempotent)", **common
    )


def _decode(response: requests.Response, method: str, path: str, secrets: Iterable[str]) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError as exc:
        if _looks_like_html(response):
            raise MetabaseUnreachable(
                f"{method} {path} answered an HTML page, not Metabase's JSON API",
                hint="check --metabase-url (or METABASE_URL): it must point at Metabase itself",
                status=response.status_code,
                method=method,
                path=path,
            ) from exc
        raise _unexpected(
            method, path, "the answer is not JSON: " + _clip(redact(response.text, secrets))
        ) from exc


def _parse(model: type[M], data: Any, method: str, path: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "answer"
        raise _unexpected(method, path, f"{loc}: {first['msg']}") from exc


def _unexpected(method: str, path: str, problem: str) -> MetabaseError:
    return MetabaseError(
        f"unexpected answer from Metabase to {method} {path}: {problem}",
        hint="this Metabase version may be unsupported, or the URL is not a Metabase",
        method=method,
        path=path,
    )


_ADDRESS_HINT = (
    "or point at it with --metabase-url, METABASE_URL or --target; `provision status` shows what runs"
)


def _unreachable(
    base_url: str, method: str, path: str, exc: requests.RequestException, secrets: Iterable[str]
) -> MetabaseUnreachable:
    """The error for a request that got no answer, in words: what was tried and what to check.

    Raises nothing; requests' own text (urllib3's pool and retry wording) is replaced by the cause.
    """
    cause = _root_cause(exc)
    if isinstance(cause, ConnectionRefusedError):
        return MetabaseRefused(
            f"nothing answers at {base_url}: the connection was refused ({method} {path})",
            hint=f"is Metabase running there? Start it (`provision up` or `provision demo`), {_ADDRESS_HINT}",
            method=method,
            path=path,
        )
    if isinstance(cause, socket.gaierror):
        return MetabaseRefused(
            f"the host of {base_url} is not known: its name does not resolve ({method} {path})",
            hint=f"check the address for typos, {_ADDRESS_HINT}",
            method=method,
            path=path,
        )
    if isinstance(exc, requests.Timeout):
        problem = "did not answer in time"
    elif isinstance(cause, OSError) and cause.strerror:
        problem = f"broke the connection ({cause.strerror.lower()})"
    else:
        problem = f"could not connect ({_clip(redact(str(cause), list(secrets)))})"
    hint = f"is Metabase running and reachable? Check it with `provision status`, {_ADDRESS_HINT}"
    if method not in IDEMPOTENT_METHODS:
        # A POST is never retried blindly: it may have been applied before the connection broke.
        hint += "; the change may or may not have been applied: re-running converges either way"
    return MetabaseUnreachable(
        f"{method} {path}: Metabase at {base_url} {problem}", hint=hint, method=method, path=path
    )


def _root_cause(exc: BaseException) -> BaseException:
    """The socket error under requests' and urllib3's wrappers, or the innermost exception found."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    innermost = exc
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (ConnectionRefusedError, socket.gaierror)):
            return current
        innermost = current
        # urllib3 keeps the cause in `reason` (MaxRetryError) or in args (ProtocolError), and chains it.
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        pending += [item for item in linked if isinstance(item, BaseException)]
    return innermost
