"""First-run setup, the admin and the tool's API key, registering the demo database, waiting for sync.

Every step reads first and writes only what differs, so a second run on a provisioned Metabase
makes no POST or PUT, and a run interrupted at any request converges on the next one.
Secrets live in `.provision/credentials.json` (mode 0600): section `admin` (email, password,
metabase_url), `api_key` (key, id, name, metabase_url), `metabase_database` (a salted hash of the
database password Metabase was given, to know whether it changed: Metabase masks it on read).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import socket
import string
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, SecretStr

from provisioner.dsn import parse_dsn
from provisioner.errors import (
    ConfigError,
    MetabaseAuthError,
    MetabaseError,
    MetabaseNotFound,
    MetabaseRefused,
    MetabaseUnreachable,
)
from provisioner.metabase.client import MetabaseClient
from provisioner.metabase.models import (
    Database,
    DatabaseCreate,
    DatabaseMetadata,
    DatabaseUpdate,
    PostgresDetails,
    SessionProperties,
    SetupUser,
)
from provisioner.metabase.versions import check_version
from provisioner.progress import Progress
from provisioner.redact import redact, redact_dsn
from provisioner.state import (
    AdminLogin,
    ApiKeyCredential,
    DatabasePasswordFingerprint,
    StateDir,
)
from provisioner.wait import Clock, Sleep, wait_until

if TYPE_CHECKING:
    from provisioner.config import Settings

SITE_NAME = "Asset Finance Demo"
DATABASE_NAME = "Asset Finance Demo"
API_KEY_NAME = "metabase-provisioner"
ADMINISTRATORS_GROUP = "Administrators"
ADMINISTRATORS_GROUP_ID = 2  # on every fresh Metabase; looked up by name first
DEFAULT_ADMIN_EMAIL = "admin@demo.local"
HEALTH_POLL_S = 2.0
# Commands that use an already running Metabase (dashboards, status, doctor) wait at most this long for
# it to answer; setup and the demo, which may have just started it, wait settings.health_timeout_s.
RUNNING_HEALTH_TIMEOUT_S = 60.0
SYNC_POLL_S = 2.0
# Anonymous usage tracking: public, on by default, and turned on again by POST /api/setup.
TRACKING_SETTING = "anon-tracking-enabled"
# Keys of `details` we set and compare; Metabase may add others (and flips `ssl` on by itself
# when SSL happens to work: api `test-connection-details` tries SSL first), which must not count as a
# difference. `ssl` and `ssl-mode` are compared only when SSL is wanted.
_COMPARED_DETAILS = (
    "host",
    "port",
    "dbname",
    "user",
    "schema-filters-type",
    "schema-filters-patterns",
    "additional-options",
)
_SSL_DETAILS = ("ssl", "ssl-mode", "ssl-root-cert-options")
# PUT merges the details sent over the stored ones: an option no longer wanted is sent as null.
_CLEARED_WHEN_UNWANTED = ("schema-filters-patterns", "additional-options")
# Behind a transaction-mode pooler pgjdbc must not switch to server-side prepared statements, which it does
# after 5 runs of one statement; 0 turns that off. Metabase's own placeholder for the field.
POOLER_JDBC_OPTIONS = "prepareThreshold=0"


@dataclass
class AuthenticatedClient:
    """A client ready to use, who it acts as, and the Metabase version it talks to."""

    client: MetabaseClient
    who: str
    auth: Literal["api_key", "session"]
    version: str
    user_email: str | None = None
    created_admin: bool = False
    created_api_key: bool = False
    turned_off_tracking: bool = False
    key_from_env: bool = False  # METABASE_API_KEY: not necessarily the tool's key


class SetupResult(BaseModel):
    """What `provision metabase setup` did and where the credentials are (never the secrets)."""

    metabase_url: str
    version: str
    user_email: str | None
    who: str
    auth: Literal["api_key", "session"]
    credentials_file: Path
    credentials_stored: bool  # False when only METABASE_API_KEY was used and nothing was saved
    created_admin: bool
    created_api_key: bool
    turned_off_tracking: bool = False  # anonymous usage tracking was on and is now off


# --- health ------------------------------------------------------------------------------------


def wait_for_health(
    client: MetabaseClient,
    *,
    timeout_s: float,
    progress: Progress,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
    poll_s: float = HEALTH_POLL_S,
    refused_is_final: bool = False,
) -> None:
    """Return once /api/health says ok; raises MetabaseUnreachable at the deadline or if it is no Metabase.

    `refused_is_final`: for a command that did not start Metabase, nothing listening (MetabaseRefused)
    fails at once instead of being waited for.
    """
    seen: list[str] = []  # what each poll saw; progress reports each change

    def healthy() -> bool | None:
        try:
            status = client.health()
            if status.ok:
                if seen:
                    progress.info("Metabase is ready")
                return True
            if status.status == "initializing":
                now = "starting" + (f" ({status.progress:.0%})" if status.progress is not None else "")
            else:
                # e.g. "Unable to get app-db connection": started, but its application database is down.
                now = f"unhealthy ({status.status})"
        except MetabaseUnreachable as exc:
            # Nothing listening yet, or a proxy's 502/503/504: keep waiting. Any other answer
            # (an HTML page, a 404) means this URL is not a Metabase: waiting will not help.
            if exc.status not in (None, 502, 503, 504) or (
                refused_is_final and isinstance(exc, MetabaseRefused)
            ):
                raise
            now = "not answering yet"
        if not seen or seen[-1] != now:
            limit = "" if seen else f" (up to {timeout_s:.0f} s)"
            progress.info(f"Waiting for Metabase at {client.base_url}{limit}: {now}")
        seen.append(now)
        return None

    if wait_until(healthy, timeout_s=timeout_s, poll_s=poll_s, clock=clock, sleep=sleep) is None:
        raise MetabaseUnreachable(
            f"Metabase at {client.base_url} did not become healthy within {timeout_s:.0f} s "
            f"(last: {seen[-1]})",
            hint="a first start takes 1-3 minutes (database migrations); check Metabase's log, "
            "that it has 2 GB of memory, and --metabase-url / METABASE_URL",
            method="GET",
            path="/api/health",
        )


# --- authentication ----------------------------------------------------------------------------


def open_client(
    settings: Settings,
    *,
    progress: Progress,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
    read_only: bool = False,
) -> AuthenticatedClient:
    """An authenticated client: METABASE_API_KEY > stored key > admin login (then a new key).

    Raises MetabaseUnreachable, MetabaseVersionError, MetabaseAuthError (no usable credentials),
    MetabaseError if Metabase is not set up yet (run `provision metabase setup`).
    """
    timeout_s = min(settings.health_timeout_s, RUNNING_HEALTH_TIMEOUT_S)
    # read_only (plan, status, doctor): after a login, do not create or regenerate the tool's API key.
    return _open(
        settings,
        progress=progress,
        clock=clock,
        sleep=sleep,
        allow_setup=False,
        timeout_s=timeout_s,
        create_key=not read_only,
        refused_is_final=True,  # no command that opens a client this way has just started Metabase
    )


def setup_metabase(
    settings: Settings,
    *,
    progress: Progress,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
) -> SetupResult:
    """Wait for Metabase, complete first-run setup if needed, log in, ensure the tool's API key.

    Raises MetabaseUnreachable, MetabaseVersionError, MetabaseAuthError, MetabaseError.
    """
    authed = prepare_metabase(settings, progress=progress, clock=clock, sleep=sleep)
    authed.client.close()
    return setup_result(settings, authed)


def prepare_metabase(
    settings: Settings,
    *,
    progress: Progress,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
    just_started: bool = False,
) -> AuthenticatedClient:
    """What `setup_metabase` does, returning the authenticated client still open for the next steps.

    The demo reuses it for connect and dashboards: one health check and one login per run. With
    `just_started`, a refused connection is waited for; otherwise it fails at once.
    """
    return _open(
        settings,
        progress=progress,
        clock=clock,
        sleep=sleep,
        allow_setup=True,
        timeout_s=settings.health_timeout_s,
        refused_is_final=not just_started,
    )


def setup_result(settings: Settings, authed: AuthenticatedClient) -> SetupResult:
    """The report of a setup done through `authed` (no secrets)."""
    credentials_file = StateDir(settings.home).credentials_file
    return SetupResult(
        metabase_url=settings.metabase_url,
        version=authed.version,
        user_email=authed.user_email,
        who=authed.who,
        auth=authed.auth,
        credentials_file=credentials_file,
        credentials_stored=credentials_file.exists(),
        created_admin=authed.created_admin,
        created_api_key=authed.created_api_key,
        turned_off_tracking=authed.turned_off_tracking,
    )


def _open(
    settings: Settings,
    *,
    progress: Progress,
    clock: Clock,
    sleep: Sleep,
    allow_setup: bool,
    timeout_s: float,
    create_key: bool = True,
    refused_is_final: bool = False,
) -> AuthenticatedClient:
    client = MetabaseClient(
        settings.metabase_url,
        timeout_s=settings.http_timeout_s,
        sleep=sleep,
        concurrency=settings.concurrency,
    )
    try:
        wait_for_health(
            client,
            timeout_s=timeout_s,
            progress=progress,
            clock=clock,
            sleep=sleep,
            refused_is_final=refused_is_final,
        )
        return _authenticate(client, settings, progress, allow_setup, create_key)
    except BaseException:
        client.close()
        raise


def _authenticate(
    client: MetabaseClient, settings: Settings, progress: Progress, allow_setup: bool, create_key: bool
) -> AuthenticatedClient:
    state = StateDir(settings.home)
    props = client.session_properties()
    checked = check_version(props.version_tag)  # raises below the supported range, before any write
    if checked.warning:
        progress.warn(checked.warning)
    authed = AuthenticatedClient(client, who="", auth="session", version=checked.tag)
    _log_in(client, settings, state, props, progress, authed, allow_setup=allow_setup, create_key=create_key)
    # Only on a Metabase this tool set up (its admin is stored): someone else's keeps their choice. Checked
    # on every setup, so a run whose answer to POST /api/setup was lost still converges.
    ours = _for_url(state.credentials().admin, settings.metabase_url) is not None
    if allow_setup and ours and not authed.key_from_env:
        authed.turned_off_tracking = _turn_off_tracking(client, props, progress)
    return _identify(client, authed, state)


def _turn_off_tracking(client: MetabaseClient, props: SessionProperties, progress: Progress) -> bool:
    """Whether anonymous usage tracking was on and is now off; raises MetabaseError if it stays on.

    POST /api/setup turns it on whatever it is sent, and the setting's effective value (an
    MB_ANON_TRACKING_ENABLED environment variable wins over the stored one) is public: read back there.
    """
    if props.anon_tracking_enabled is False:
        return False
    progress.info(f"Turning off Metabase's anonymous usage tracking ({TRACKING_SETTING})")
    client.set_setting(TRACKING_SETTING, False)
    if client.session_properties().anon_tracking_enabled is not False:
        raise MetabaseError(
            f"Metabase still reports {TRACKING_SETTING} as on after it was set to false",
            hint="an environment variable MB_ANON_TRACKING_ENABLED=true where Metabase runs overrides the "
            "setting: remove it, or turn tracking off in Admin settings → General",
            method="PUT",
            path=f"/api/setting/{TRACKING_SETTING}",
        )
    return True


def _log_in(
    client: MetabaseClient,
    settings: Settings,
    state: StateDir,
    props: SessionProperties,
    progress: Progress,
    authed: AuthenticatedClient,
    *,
    allow_setup: bool,
    create_key: bool,
) -> None:
    """Authenticate `client` (first-run setup, METABASE_API_KEY, the stored key, or the admin's login)."""
    url = settings.metabase_url
    if not props.has_user_setup:
        if not allow_setup:
            raise MetabaseError(
                f"Metabase at {url} is not set up yet (no admin user)",
                hint="run `provision metabase setup` first (or `provision demo`)",
            )
        _first_run_setup(client, settings, state, props, progress, authed)
        _ensure_api_key(client, state, url, progress, authed)
        return

    if settings.metabase_api_key is not None:
        client.use_api_key(settings.metabase_api_key.get_secret_value())
        try:
            client.current_user()
        except MetabaseAuthError as exc:
            raise MetabaseAuthError(
                "Metabase rejected the API key from METABASE_API_KEY (expired, revoked or for another "
                "Metabase)",
                hint="create a new key in Metabase (Admin settings → Authentication → API keys) or unset "
                "METABASE_API_KEY to log in with the admin credentials",
                status=exc.status,
                method=exc.method,
                path=exc.path,
            ) from exc
        authed.auth = "api_key"
        authed.key_from_env = True
        return

    stored_key = _for_url(state.credentials().api_key, url)
    if stored_key is not None:
        client.use_api_key(stored_key.key.get_secret_value())
        try:
            client.current_user()
        except MetabaseAuthError:
            progress.warn(
                f"the stored API key for {url} was rejected (expired or revoked): logging in as the admin"
                + (" to create a new one" if create_key else "")
            )
        else:
            authed.auth = "api_key"
            return

    email, password = _admin_credentials(settings, state)
    if email is None or password is None:
        raise MetabaseAuthError(
            f"Metabase at {url} is set up already and no credentials for it are known",
            hint="set METABASE_API_KEY, or METABASE_ADMIN_EMAIL and METABASE_ADMIN_PASSWORD of its admin",
        )
    progress.info(f"Logging in to Metabase as {email}")
    client.use_session(client.login(email, password))
    authed.user_email = email
    if create_key:
        _ensure_api_key(client, state, url, progress, authed)


def _first_run_setup(
    client: MetabaseClient,
    settings: Settings,
    state: StateDir,
    props: SessionProperties,
    progress: Progress,
    authed: AuthenticatedClient,
) -> None:
    url = settings.metabase_url
    email, password = _admin_credentials(settings, state)
    generated = password is None
    email = email or DEFAULT_ADMIN_EMAIL
    password = password or generate_password()
    if not props.setup_token:
        raise MetabaseError(
            f"Metabase at {url} is not set up but publishes no setup token",
            hint="finish the setup in the browser, then give its admin credentials "
            "(METABASE_ADMIN_EMAIL / METABASE_ADMIN_PASSWORD)",
        )
    # Stored BEFORE the setup call: if its answer is lost, the next run logs in with them.
    with state.edit_credentials() as credentials:
        previous = credentials.admin
        credentials.admin = AdminLogin(metabase_url=url, email=email, password=SecretStr(password))
    progress.step(f"Creating the Metabase admin {email}" + (" (generated password)" if generated else ""))
    try:
        session_id = client.setup(
            props.setup_token,
            SetupUser(first_name="Demo", last_name="Admin", email=email, password=SecretStr(password)),
            SITE_NAME,
        )
    except MetabaseError as exc:
        if exc.status == 400:
            # Refused outright (weak password, stale token): nothing was created, forget them.
            _store_admin(state, previous)
        if exc.status != 403:
            raise
        # Someone finished setup between our read and our call: log in instead.
        progress.warn("Metabase was set up meanwhile; logging in instead")
        try:
            session_id = client.login(email, password)
        except MetabaseAuthError:
            # Another admin was created, not ours: what we stored was never valid, keep what we knew.
            _store_admin(state, previous)
            raise
    else:
        authed.created_admin = True
    client.use_session(session_id)
    authed.user_email = email


def _store_admin(state: StateDir, admin: AdminLogin | None) -> None:
    with state.edit_credentials() as credentials:
        credentials.admin = admin


def api_key_name(state: StateDir) -> str:
    """The tool's API key name for this machine and state directory: `metabase-provisioner (HOST 1a2b3c4d)`.

    One key per checkout: regenerating a lost key never revokes the key a teammate or CI uses.
    """
    digest = hashlib.sha256(str(state.root.resolve()).encode()).hexdigest()[:8]
    return f"{API_KEY_NAME} ({socket.gethostname()[:40]} {digest})"


def _ensure_api_key(
    client: MetabaseClient, state: StateDir, url: str, progress: Progress, authed: AuthenticatedClient
) -> None:
    """Create (or regenerate, if one with our name exists) the tool's API key and switch to it."""
    name = api_key_name(state)
    existing = next((k for k in client.list_api_keys() if k.name == name), None)
    if existing is not None:
        # This checkout's stored key was lost or revoked; a duplicate name would be rejected: regenerate.
        progress.info(f"Regenerating the Metabase API key {name!r}")
        created = client.regenerate_api_key(existing.id)
    else:
        progress.info(f"Creating the Metabase API key {name!r}")
        created = client.create_api_key(name, _administrators_group_id(client))
    with state.edit_credentials() as credentials:
        credentials.api_key = ApiKeyCredential(
            metabase_url=url, key=created.unmasked_key, id=created.id, name=name
        )
    client.use_api_key(created.unmasked_key.get_secret_value())
    authed.auth = "api_key"
    authed.created_api_key = True


def _administrators_group_id(client: MetabaseClient) -> int:
    groups = client.list_permission_groups()
    return next((g.id for g in groups if g.name == ADMINISTRATORS_GROUP), ADMINISTRATORS_GROUP_ID)


def _identify(client: MetabaseClient, authed: AuthenticatedClient, state: StateDir) -> AuthenticatedClient:
    if authed.user_email is None:
        admin = _for_url(state.credentials().admin, client.base_url)
        authed.user_email = admin.email if admin is not None else None
    if authed.key_from_env:
        authed.who = "the API key from METABASE_API_KEY"
    elif authed.auth == "api_key":
        owner = f" (admin {authed.user_email})" if authed.user_email else ""
        stored = state.credentials().api_key
        authed.who = f"API key {stored.name if stored is not None else API_KEY_NAME!r}{owner}"
    else:
        authed.who = authed.user_email or "session"
    return authed


_ForOneMetabase = TypeVar("_ForOneMetabase", AdminLogin, ApiKeyCredential, DatabasePasswordFingerprint)


def _for_url(section: _ForOneMetabase | None, url: str) -> _ForOneMetabase | None:
    """A stored credentials section, only if it belongs to this Metabase URL."""
    if section is None or section.metabase_url.rstrip("/") != url.rstrip("/"):
        return None
    return section


def _admin_credentials(settings: Settings, state: StateDir) -> tuple[str | None, str | None]:
    """(email, password): the environment's, else those stored for this URL."""
    if settings.admin_password is not None:
        email = settings.admin_email or DEFAULT_ADMIN_EMAIL
        return email, settings.admin_password.get_secret_value()
    stored = _for_url(state.credentials().admin, settings.metabase_url)
    if stored is not None:
        return settings.admin_email or stored.email, stored.password.get_secret_value()
    return settings.admin_email, None


def generate_password(length: int = 24) -> str:
    """A strong random password with letters and digits (Metabase's "normal" complexity rule)."""
    alphabet = string.ascii_letters + string.digits
    while True:
        password = "".join(secrets.choice(alphabet) for _ in range(length))
        if (
            any(c.islower() for c in password)
            and any(c.isupper() for c in password)
            and any(c.isdigit() for c in password)
        ):
            return password


# --- database registration ---------------------------------------------------------------------


def postgres_details(
    dsn: str, *, schema: str | None = None, transaction_pooler: bool = False
) -> PostgresDetails:
    """Metabase's connection details for a postgresql:// DSN.

    The DSN's sslmode carries over (`require`, `verify-ca`, `verify-full`; for the verify modes its
    `sslrootcert` file is uploaded to Metabase, which may run elsewhere); `schema` limits Metabase's sync
    to that schema; behind a `transaction_pooler` pgjdbc gets `prepareThreshold=0`. Raises ConfigError if
    the DSN is not one Metabase can use or its root certificate cannot be read.
    """
    parts = parse_dsn(dsn, what="the database URL given for Metabase")
    password = parts.password.get_secret_value() if parts.password else None
    missing = [name for name, value in (("dbname", parts.dbname), ("user", parts.user)) if not value]
    if missing or parts.dbname is None or parts.user is None:
        raise ConfigError(
            f"the database URL {redact(redact_dsn(dsn), [password])!r} lacks {', '.join(missing)}",
            hint="use postgresql://user:password@host:5432/dbname",
        )
    # Metabase's postgres connection takes exactly one host (no libpq host lists).
    if not parts.single_host:
        raise ConfigError(
            f"the database URL given for Metabase needs one host and one port (got host {parts.host!r})",
            hint="use postgresql://user:password@host:5432/dbname",
        )
    ssl = parts.encrypted
    root_certificate = _root_certificate(parts.sslrootcert) if parts.verifies_server else None
    return PostgresDetails.model_validate(
        {
            "host": parts.host,
            "port": parts.port,
            "dbname": parts.dbname,
            "user": parts.user,
            "password": parts.password,
            "ssl": ssl,
            "ssl-mode": parts.sslmode if ssl else None,
            "ssl-root-cert-options": "uploaded" if root_certificate is not None else None,
            "ssl-root-cert-value": root_certificate,
            "schema-filters-type": "inclusion" if schema else "all",
            "schema-filters-patterns": schema or None,
            "advanced-options": transaction_pooler,
            "additional-options": POOLER_JDBC_OPTIONS if transaction_pooler else None,
        }
    )


def _root_certificate(path: str | None) -> str:
    """The PEM text of the CA file a verifying sslmode checks the server against (libpq's default file
    when the DSN names none); raises ConfigError when there is none Metabase could be given."""
    if path == "system":
        raise ConfigError(
            "sslrootcert=system (the operating system's CAs) cannot be handed to Metabase",
            hint="download the provider's CA certificate and pass its file: "
            "?sslmode=verify-full&sslrootcert=ca.pem",
        )
    file = Path(path).expanduser() if path else Path.home() / ".postgresql" / "root.crt"
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read the root certificate {file} that sslmode=verify-ca/verify-full checks against",
            hint="pass the provider's CA file in the database URL: "
            "?sslmode=verify-full&sslrootcert=/path/ca.pem",
        ) from exc
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ConfigError(
            f"{file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            hint="download the provider's CA certificate in PEM form and name it with sslrootcert=",
        )
    return text


def _fingerprint(password: str, salt: str) -> str:
    return hmac.new(salt.encode(), password.encode(), hashlib.sha256).hexdigest()


def register_database(
    client: MetabaseClient, settings: Settings, details: PostgresDetails, progress: Progress
) -> tuple[Database, Literal["created", "updated", "unchanged"]]:
    """The demo database in Metabase, created or its connection updated where it differs; what was done.

    Raises MetabaseError when Metabase cannot connect with `details`.
    """
    state = StateDir(settings.home)
    password = details.password.get_secret_value() if details.password else ""
    # The fingerprint covers what Metabase masks on read: the password, and an uploaded root certificate.
    secret = password if details.ssl_root_cert_value is None else f"{password}\0{details.ssl_root_cert_value}"
    stored = _for_url(state.credentials().metabase_database, settings.metabase_url)
    database: Database | None = _remembered_database(client, stored)
    if database is None:
        same_name = sorted(
            (d for d in client.list_databases() if d.name == DATABASE_NAME and not d.is_sample),
            key=lambda d: d.id,
        )
        if len(same_name) > 1:
            progress.warn(
                f"{len(same_name)} Metabase databases are named {DATABASE_NAME!r}; using the oldest "
                f"(id {same_name[0].id})"
            )
        if not same_name:
            database = client.create_database(
                DatabaseCreate(
                    name=DATABASE_NAME, engine="postgres", details=details.as_details(), is_full_sync=True
                )
            )
            _remember_password(state, settings.metabase_url, database.id, secret)
            return database, "created"
        database = same_name[0]

    wanted = details.as_details()
    compared = (*_COMPARED_DETAILS, *(_SSL_DETAILS if details.ssl else ()))
    differs = [k for k in compared if _detail(database.details, k) != _detail(wanted, k)]
    if database.engine not in (None, "postgres"):
        differs.append("engine")
    secrets_known = (
        stored is not None
        and stored.database_id == database.id
        and hmac.compare_digest(stored.fingerprint, _fingerprint(secret, stored.salt))
    )
    if not secrets_known:
        # Metabase masks both on read: only our fingerprint of what was sent tells.
        differs.append("password" if details.ssl_root_cert_value is None else "password or root certificate")
    if not differs:
        return database, "unchanged"
    progress.info(f"Updating the connection of {DATABASE_NAME!r}: {', '.join(differs)} changed")
    for key in _CLEARED_WHEN_UNWANTED:
        if key not in wanted and _detail(database.details, key) is not None:
            wanted[key] = None
    database = client.update_database(database.id, DatabaseUpdate(engine="postgres", details=wanted))
    _remember_password(state, settings.metabase_url, database.id, secret)
    return database, "updated"


def _detail(details: dict[str, Any], key: str) -> Any:
    """A details value, with "" and null the same (both mean "not set" to Metabase)."""
    value = details.get(key)
    return None if value == "" else value


def _remembered_database(
    client: MetabaseClient, stored: DatabasePasswordFingerprint | None
) -> DatabaseMetadata | None:
    """The database the last connect registered, with its tables, in one request; None if gone or renamed.

    The stored id only saves the list of databases: what it points to must still be the demo database.
    """
    if stored is None:
        return None
    try:
        found = client.database_metadata(stored.database_id)
    except MetabaseNotFound:
        return None
    # Without details (a version that leaves them out of the metadata) the connection could not be
    # compared, and would be rewritten on every run: the list of databases carries them.
    return found if found.name == DATABASE_NAME and not found.is_sample and found.details else None


def _remember_password(state: StateDir, url: str, database_id: int, password: str) -> None:
    salt = secrets.token_hex(16)
    with state.edit_credentials() as credentials:
        credentials.metabase_database = DatabasePasswordFingerprint(
            metabase_url=url, database_id=database_id, salt=salt, fingerprint=_fingerprint(password, salt)
        )


def wait_for_tables(
    client: MetabaseClient,
    database: Database,
    expected: Sequence[str],
    timeout_s: float,
    progress: Progress,
    clock: Clock,
    sleep: Sleep,
    schema: str | None = None,
) -> tuple[DatabaseMetadata, bool]:
    """(the metadata, whether a schema sync was triggered) once every expected table is in it.

    With `schema`, the tables must be in that schema (after the demo moved, Metabase still lists the old
    ones until it syncs again). A `database` read through its metadata (see `_remembered_database`)
    counts as the first read. Raises MetabaseError if the initial sync fails or the tables do not appear
    before the deadline.
    """
    deadline = clock() + timeout_s
    wanted = set(expected)

    def present(metadata: DatabaseMetadata) -> set[str]:
        return {t.name for t in metadata.tables if schema is None or t.schema_name == schema}

    database_id = database.id
    # The registration step's answer already tells the sync state: read again only to wait.
    unread: Database | None = database
    waiting = False

    def first_sync_done() -> Database | None:
        nonlocal unread, waiting
        current = unread if unread is not None else client.get_database(database_id)
        unread = None
        if current.initial_sync_status == "complete":
            return current
        if current.initial_sync_status == "aborted":
            raise MetabaseError(
                f"Metabase's first sync of {current.name!r} failed (initial_sync_status: aborted)",
                hint="check that Metabase can reach the database and that the role may read its tables; "
                "see Metabase's log",
            )
        if not waiting:
            progress.info("Waiting for Metabase's first sync of the database")
            waiting = True
        return None

    synced = wait_until(first_sync_done, timeout_s=timeout_s, poll_s=SYNC_POLL_S, clock=clock, sleep=sleep)
    if synced is None:
        raise _gave_up(timeout_s, f"the first sync of {database.name!r} to finish")

    triggered = False
    missing: list[str] = []
    # A database read through its metadata (see `_remembered_database`) already holds the tables.
    unread_metadata = synced if isinstance(synced, DatabaseMetadata) else None

    def all_visible() -> DatabaseMetadata | None:
        nonlocal unread_metadata, triggered
        metadata = unread_metadata if unread_metadata is not None else client.database_metadata(database_id)
        unread_metadata = None
        missing[:] = sorted(wanted - present(metadata))
        if not missing:
            return metadata
        if not triggered:
            # The first sync may have run before the seed created everything: ask for another.
            progress.info(
                f"{len(missing)} tables or views not synced yet; asking Metabase to re-read the schema"
            )
            client.sync_schema(database_id)
            triggered = True
        return None

    remaining_s = max(0.0, deadline - clock())
    metadata = wait_until(all_visible, timeout_s=remaining_s, poll_s=SYNC_POLL_S, clock=clock, sleep=sleep)
    if metadata is None:
        raise _gave_up(timeout_s, "these tables to appear: " + ", ".join(missing))
    progress.info(f"All {len(wanted)} tables and views are visible in Metabase")
    return metadata, triggered


def _gave_up(timeout_s: float, what: str) -> MetabaseError:
    return MetabaseError(
        f"gave up after {timeout_s:.0f} s waiting for {what}",
        hint="check that the read-only role can SELECT every demo table and view (re-run "
        "`provision seed`), then run `provision metabase connect` again",
    )
