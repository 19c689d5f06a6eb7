"""Setup, sessions, the current user, API keys, permission groups, session properties."""

from __future__ import annotations

import base64
import re
import secrets
import uuid
from typing import Any

from tests.fake_metabase.handlers import (
    ApiError,
    Ctx,
    Response,
    Validator,
    bad_request,
    not_found,
    now_iso,
    positive_id,
    received,
)
from tests.fake_metabase.state import FakeState

LOGIN_THROTTLE_ATTEMPTS = 10
SETUP_DONE = (
    "The /api/setup route can only be used to create the first user, however a user currently exists."
)
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# A sample of the common-password list Metabase ships (resources/common_passwords.txt).
COMMON_PASSWORDS = frozenset(
    {
        "password",
        "password1",
        "password123",
        "passw0rd",
        "123456",
        "1234567",
        "12345678",
        "123456789",
        "1234567890",
        "qwerty",
        "qwerty1",
        "qwerty123",
        "abc123",
        "111111",
        "iloveyou",
        "letmein",
        "welcome1",
        "admin123",
        "monkey1",
        "dragon1",
        "football1",
        "baseball1",
        "trustno1",
        "sunshine1",
        "metabase1",
    }
)


def password_is_valid(password: Any) -> bool:
    """Return whether Metabase's default ("normal") complexity accepts the password."""
    if not isinstance(password, str) or len(password) < 6:
        return False
    if not re.search(r"\d", password) or not re.search(r"[^\d\W]", password):
        return False
    return password.lower() not in COMMON_PASSWORDS


def common_name(user: dict) -> str:
    names = [n for n in (user.get("first_name"), user.get("last_name")) if n]
    return " ".join(names) if names else user["email"]


def user_json(user: dict, *, current: bool = False) -> dict:
    """Return a user as GET /api/user/:id shows it (fixture user/1.json), plus /current's extras."""
    body = {
        "email": user["email"],
        "first_name": user.get("first_name"),
        "locale": None,
        "structured_attributes": {},
        "last_login": user.get("last_login"),
        "is_active": True,
        "user_group_memberships": [{"id": g} for g in user["group_ids"]],
        "is_qbnewb": False,
        "jwt_attributes": None,
        "updated_at": user["updated_at"],
        "is_superuser": user["is_superuser"],
        "login_attributes": None,
        "id": user["id"],
        "last_name": user.get("last_name"),
        "tenant_id": None,
        "date_joined": user["date_joined"],
        "sso_source": None,
        "common_name": common_name(user),
    }
    if current:
        body.update(
            {
                "personal_collection_id": user.get("personal_collection_id"),
                "has_invited_second_user": False,
                "has_question_and_native_permissions": True,
                "first_login": user["date_joined"],
                "is_installer": user["id"] == 1,
                "custom_homepage": None,
                "group_ids": list(user["group_ids"]),
            }
        )
    return body


def creator_json(user: dict) -> dict:
    """Return the compact user Metabase hydrates as `creator` on cards."""
    return {
        "email": user["email"],
        "first_name": user.get("first_name"),
        "last_login": user.get("last_login"),
        "is_qbnewb": False,
        "is_superuser": user["is_superuser"],
        "id": user["id"],
        "last_name": user.get("last_name"),
        "tenant_id": None,
        "date_joined": user["date_joined"],
        "common_name": common_name(user),
    }


def edit_info(user: dict, timestamp: str) -> dict:
    """Return the `last-edit-info` map for an edit by `user`."""
    return {
        "id": user["id"],
        "email": user["email"],
        "first_name": user.get("first_name"),
        "last_name": user.get("last_name"),
        "timestamp": timestamp,
    }


def _new_session(ctx: Ctx, user: dict) -> Response:
    session_id = str(uuid.uuid4())
    ctx.state.sessions[session_id] = user["id"]
    user["last_login"] = now_iso()
    ctx.set_cookies.append(f"metabase.SESSION={session_id}; HttpOnly; Path=/; SameSite=Lax")
    return Response(200, {"id": session_id})


def get_properties(ctx: Ctx) -> Response:
    """GET /api/session/properties: public settings, readable without auth."""
    state = ctx.state
    major = ctx.version.split(".")[1] if ctx.version.count(".") >= 2 else "0"
    return Response(
        200,
        {
            "has-user-setup": state.has_user_setup(),
            "setup-token": state.setup_token,
            "version": {
                "date": "2026-11-13",
                "tag": ctx.version,
                "hash": "fa4e0c1",
                "branch": f"release-x.{major}.x",
            },
            "site-name": state.site_name or "Metabase",
            "site-locale": "en",
            "site-url": None,
            "available-locales": [["en", "English"], ["de", "German"], ["fr", "French"]],
            "engines": {
                "postgres": {
                    "driver-name": "PostgreSQL",
                    "superseded-by": None,
                    "source": {"type": "official"},
                },
                "h2": {"driver-name": "H2", "superseded-by": None, "source": {"type": "official"}},
            },
            "token-features": {},
            "password-complexity": {"total": 6, "digit": 1},
            "anon-tracking-enabled": False,
            "enable-password-login": True,
            "startup-time-millis": 1234.5,
        },
    )


def post_setup(ctx: Ctx) -> Response:
    """POST /api/setup: create the first admin and log them in.

    The newest endpoint declares `[:map [:token …] [:user [:map …]] [:prefs [:map …]]]`, and api/macros.clj
    `invalid-params-errors` nests each error under its path: `{"errors": {"user": {"password": …}}}`.
    """
    body = ctx.body if isinstance(ctx.body, dict) else {}
    errors: dict[str, Any] = {}
    specific: dict[str, Any] = {}
    token = body.get("token")
    if not (isinstance(token, str) and token == ctx.state.setup_token):
        errors["token"] = "Token does not match the setup token."
        specific["token"] = [f"setup token, received: {received(token)}"]
    user, user_check = _nested_map(body, "user", errors, specific)
    if user_check is not None:
        email = user.get("email")
        if not (isinstance(email, str) and _EMAIL_RE.match(email)):
            user_check.fail("email", "value must be a valid email address.", "valid email address")
        if not password_is_valid(user.get("password")):
            user_check.fail("password", "password is too common.", "password is too common.")
        user_check.non_blank("first_name")
        user_check.non_blank("last_name")
    prefs, prefs_check = _nested_map(body, "prefs", errors, specific)
    if prefs_check is not None:
        prefs_check.non_blank("site_name", required=True, nullable=False)
    for key, check in (("user", user_check), ("prefs", prefs_check)):
        if check is not None and check.errors:
            errors[key], specific[key] = check.errors, check.specific
    if errors:
        raise ApiError(400, {"errors": errors, "specific-errors": specific})
    if ctx.state.has_user_setup():
        raise ApiError(403, SETUP_DONE)
    new_user = create_user(
        ctx.state,
        email=user["email"],
        first_name=user.get("first_name"),
        last_name=user.get("last_name"),
        password=user["password"],
        superuser=True,
    )
    ctx.state.site_name = prefs["site_name"]
    return _new_session(ctx, new_user)


def _nested_map(
    body: dict, key: str, errors: dict[str, Any], specific: dict[str, Any]
) -> tuple[dict, Validator | None]:
    """Return `body[key]` and a Validator for it, or record the 400 for a missing or non-map value."""
    value = body.get(key)
    if isinstance(value, dict):
        return value, Validator(value)
    errors[key] = "value must be a map."
    specific[key] = [
        "missing required key, received: nil"
        if value is None
        else f"invalid type, received: {received(value)}"
    ]
    return {}, None


def create_user(
    state: FakeState,
    *,
    email: str,
    first_name: str | None,
    last_name: str | None,
    password: str | None,
    superuser: bool,
    kind: str = "personal",
) -> dict:
    """Create a user (and, for people, their personal collection); return it."""
    timestamp = now_iso()
    user_id = state.next_id("user")
    user = {
        "id": user_id,
        "email": email,
        "first_name": first_name,
        "last_name": last_name,
        "password": password,
        "is_superuser": superuser,
        "group_ids": [1, 2] if superuser else [1],
        "type": kind,
        "date_joined": timestamp,
        "updated_at": timestamp,
        "last_login": None,
        "personal_collection_id": None,
    }
    state.users[user_id] = user
    if kind == "personal":
        # Imported here: handlers_collection imports this module for user names.
        from tests.fake_metabase.handlers_collection import create_personal_collection

        user["personal_collection_id"] = create_personal_collection(state, user)["id"]
    return user


def post_session(ctx: Ctx) -> Response:
    """POST /api/session: log in with email and password."""
    check = Validator(ctx.body)
    username = check.non_blank("username", required=True, nullable=False)
    password = check.non_blank("password", required=True, nullable=False)
    check.raise_if_failed()
    key = username.lower()
    failures = ctx.login_failures.get(key, 0)
    if failures >= LOGIN_THROTTLE_ATTEMPTS:
        raise ApiError(
            401, {"errors": {"username": "Too many attempts! You must wait 15 seconds before trying again."}}
        )
    user = next(
        (u for u in ctx.state.users.values() if u["type"] == "personal" and u["email"].lower() == key), None
    )
    if user is None or user.get("password") != password:
        ctx.login_failures[key] = failures + 1
        raise ApiError(401, {"errors": {"password": "did not match stored password"}})
    return _new_session(ctx, user)


def delete_session(ctx: Ctx) -> Response:
    """DELETE /api/session: log out the calling session."""
    session_id = ctx.headers.get("x-metabase-session") or _cookie(ctx.headers, "metabase.SESSION")
    if not session_id or session_id not in ctx.state.sessions:
        raise not_found()
    del ctx.state.sessions[session_id]
    return Response(204, empty=True)


def _cookie(headers: dict[str, str], name: str) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def authenticate(state: FakeState, headers: dict[str, str]) -> dict | None:
    """Return the user a request acts as (session header, session cookie or API key), or None."""
    session_id = headers.get("x-metabase-session") or _cookie(headers, "metabase.SESSION")
    if session_id and session_id in state.sessions:
        return state.users.get(state.sessions[session_id])
    api_key = headers.get("x-api-key")
    if api_key:
        for key in state.api_keys.values():
            if secrets.compare_digest(key["key"], api_key):
                return state.users.get(key["user_id"])
    return None


def get_current_user(ctx: Ctx) -> Response:
    assert ctx.user is not None
    return Response(200, user_json(ctx.user, current=True))


def get_user(ctx: Ctx, id: str) -> Response:
    user = ctx.state.users.get(positive_id(id))
    if user is None:
        raise not_found()
    if user["id"] != ctx.user["id"]:
        ctx.require_superuser()
    return Response(200, user_json(user))


def get_groups(ctx: Ctx) -> Response:
    """GET /api/permissions/group: every group with its member count."""
    ctx.require_superuser()
    groups = []
    for group in sorted(ctx.state.groups.values(), key=lambda g: g["id"]):
        members = sum(1 for u in ctx.state.users.values() if group["id"] in u["group_ids"])
        groups.append({**group, "member_count": members})
    return Response(200, groups)


# ----------------------------------------------------------------- API keys


API_KEY_PREFIX_CHARS = 7  # "mb_" and 4 characters: shown unmasked, unique per key (api_keys/schema.clj)


def new_api_key() -> str:
    """Return a key as `generate-key` (api_keys/models/api_key.clj) makes it: `mb_` + base64 of 32 bytes."""
    return "mb_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _mask(key: str) -> str:
    # `mask`: the prefix, then one `*` for every other character of a generated key (47 in all).
    return key[:API_KEY_PREFIX_CHARS] + "*" * (len(new_api_key()) - API_KEY_PREFIX_CHARS)


def api_key_json(state: FakeState, key: dict, *, unmasked: bool = False) -> dict:
    group = state.groups[key["group_id"]]
    updater = state.users.get(key["updated_by_id"])
    body = {
        "id": key["id"],
        "name": key["name"],
        "group": {"id": group["id"], "name": group["name"]},
        "masked_key": _mask(key["key"]),
        "created_at": key["created_at"],
        "updated_at": key["updated_at"],
        "updated_by": {"id": updater["id"], "common_name": common_name(updater)} if updater else None,
    }
    if unmasked:
        body["unmasked_key"] = key["key"]
    return body


def _check_api_key_body(
    ctx: Ctx, *, creating: bool, current: dict | None = None
) -> tuple[str | None, int | None]:
    check = Validator(ctx.body)
    name = check.non_blank("name", required=creating, nullable=not creating)
    group_id = check.positive_int("group_id", required=creating, nullable=not creating)
    check.raise_if_failed()
    if name is not None:
        clash = any(
            k["name"] == name and (current is None or k["id"] != current["id"])
            for k in ctx.state.api_keys.values()
        )
        if clash:
            raise bad_request("name", "An API key with this name already exists.")
    if group_id is not None and group_id not in ctx.state.groups:
        raise not_found()
    return name, group_id


def post_api_key(ctx: Ctx) -> Response:
    creator = ctx.require_superuser()
    name, group_id = _check_api_key_body(ctx, creating=True)
    assert name is not None and group_id is not None
    key_user = create_user(
        ctx.state,
        email=f"api-key-user-{uuid.uuid4()}@api-key.invalid",
        first_name=name,
        last_name=None,
        password=None,
        superuser=group_id == 2,
        kind="api-key",
    )
    key_user["group_ids"] = sorted({1, group_id})
    timestamp = now_iso()
    key_id = ctx.state.next_id("api_key")
    key = {
        "id": key_id,
        "name": name,
        "group_id": group_id,
        "key": new_api_key(),
        "user_id": key_user["id"],
        "created_at": timestamp,
        "updated_at": timestamp,
        "updated_by_id": creator["id"],
    }
    ctx.state.api_keys[key_id] = key
    return Response(200, api_key_json(ctx.state, key, unmasked=True))


def _api_key(ctx: Ctx, id: str) -> dict:
    ctx.require_superuser()
    key = ctx.state.api_keys.get(positive_id(id))
    if key is None:
        raise not_found()
    return key


def list_api_keys(ctx: Ctx) -> Response:
    ctx.require_superuser()
    keys = sorted(ctx.state.api_keys.values(), key=lambda k: k["name"].lower())
    return Response(200, [api_key_json(ctx.state, k) for k in keys])


def count_api_keys(ctx: Ctx) -> Response:
    ctx.require_superuser()
    return Response(200, len(ctx.state.api_keys))


def put_api_key(ctx: Ctx, id: str) -> Response:
    key = _api_key(ctx, id)
    name, group_id = _check_api_key_body(ctx, creating=False, current=key)
    if name is not None:
        key["name"] = name
        ctx.state.users[key["user_id"]]["first_name"] = name
    if group_id is not None:
        key["group_id"] = group_id
        key_user = ctx.state.users[key["user_id"]]
        key_user["group_ids"] = sorted({1, group_id})
        key_user["is_superuser"] = group_id == 2
    key["updated_at"] = now_iso()
    key["updated_by_id"] = ctx.user["id"]
    return Response(200, api_key_json(ctx.state, key))


def regenerate_api_key(ctx: Ctx, id: str) -> Response:
    """PUT /api/api-key/:id/regenerate: a new secret; the answer is only id and key, no name or group.

    Newest api_keys/api.clj declares the response `[:map id unmasked_key masked_key prefix]` (older releases
    answered the whole key, as POST does).
    """
    key = _api_key(ctx, id)
    key["key"] = new_api_key()
    key["updated_at"] = now_iso()
    key["updated_by_id"] = ctx.user["id"]
    return Response(
        200,
        {
            "id": key["id"],
            "unmasked_key": key["key"],
            "masked_key": _mask(key["key"]),
            "prefix": key["key"][:API_KEY_PREFIX_CHARS],
        },
    )


def delete_api_key(ctx: Ctx, id: str) -> Response:
    key = _api_key(ctx, id)
    del ctx.state.api_keys[key["id"]]
    ctx.state.users.pop(key["user_id"], None)
    return Response(204, empty=True)


ROUTES = [
    ("GET", r"/api/session/properties", get_properties, False),
    ("POST", r"/api/setup", post_setup, False),
    ("POST", r"/api/session", post_session, False),
    ("DELETE", r"/api/session", delete_session, False),
    ("GET", r"/api/user/current", get_current_user, True),
    ("GET", r"/api/user/(?P<id>\d+)", get_user, True),
    ("GET", r"/api/permissions/group", get_groups, True),
    ("POST", r"/api/api-key", post_api_key, True),
    ("GET", r"/api/api-key", list_api_keys, True),
    ("GET", r"/api/api-key/count", count_api_keys, True),
    ("PUT", r"/api/api-key/(?P<id>\d+)", put_api_key, True),
    ("PUT", r"/api/api-key/(?P<id>\d+)/regenerate", regenerate_api_key, True),
    ("DELETE", r"/api/api-key/(?P<id>\d+)", delete_api_key, True),
]
