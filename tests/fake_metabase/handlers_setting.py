"""Settings: `GET`/`PUT /api/setting/:key`, and the public ones in `GET /api/session/properties`.

As src/metabase/settings/api.clj and settings/models/setting.clj answer them:
- PUT `{"value": v}` answers 204 with no body; `null` (or no `value`) deletes the stored value, which
  reverts the setting to its default. A boolean setting takes true, false or "true"/"false" in any case.
- GET answers the value as JSON, but `null` while the setting has its default value
  (`user-facing-value`: a default is never displayed).
- Only superusers may read or write these site-wide settings: anyone else gets the generic 403, even for a
  setting that does not exist (`with-setting-access-control`). A superuser naming an unknown setting
  gets a 500 (`resolve-setting` throws an ex-info without a status code).
- Public settings are listed with their effective value, default included, in `/api/session/properties`:
  this module answers that route before handlers_auth and puts in the values it keeps.

FakeState has no `setting` table yet (the fake's owner adds one): values live in `state.next_ids` under a
`setting:` prefix, 1 for true and 0 for false, which keeps them in `--state-file` and in the rollback of a
failed request. Only `_stored` and `_store` know that.
"""

from __future__ import annotations

from typing import Any

from tests.fake_metabase import handlers_auth
from tests.fake_metabase.handlers import ApiError, Ctx, Response
from tests.fake_metabase.state import FakeState

# Setting name -> its default. Every one here is a boolean with `:visibility :public`.
PUBLIC_BOOLEAN_SETTINGS: dict[str, bool] = {"anon-tracking-enabled": True}
_PREFIX = "setting:"


def _stored(state: FakeState, key: str) -> bool | None:
    value = state.next_ids.get(_PREFIX + key)
    return None if value is None else bool(value)


def _store(state: FakeState, key: str, value: bool | None) -> None:
    if value is None:
        state.next_ids.pop(_PREFIX + key, None)
    else:
        state.next_ids[_PREFIX + key] = int(value)


def effective_value(state: FakeState, key: str) -> bool:
    """What Metabase itself uses: the stored value, else the default."""
    stored = _stored(state, key)
    return PUBLIC_BOOLEAN_SETTINGS[key] if stored is None else stored


def _known(ctx: Ctx, key: str) -> str:
    ctx.require_superuser()
    # The route takes the key as a kebab-cased keyword: anon_tracking_enabled names the same setting.
    name = key.replace("_", "-")
    if name not in PUBLIC_BOOLEAN_SETTINGS:
        message = f"Unknown setting: :{name}"
        raise ApiError(
            500, {"message": message, "via": [{"type": "clojure.lang.ExceptionInfo", "message": message}]}
        )
    return name


def _as_boolean(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    # set-value-of-type! :boolean has no clause for anything else: an exception without a status code.
    message = f"No matching clause: {value}"
    raise ApiError(500, {"message": message, "via": [{"type": "java.lang.IllegalArgumentException"}]})


def get_setting(ctx: Ctx, key: str) -> Response:
    """GET /api/setting/:key: the value, or null while it is the default."""
    name = _known(ctx, key)
    value = effective_value(ctx.state, name)
    return Response(200, None if value == PUBLIC_BOOLEAN_SETTINGS[name] else value)


def put_setting(ctx: Ctx, key: str) -> Response:
    """PUT /api/setting/:key: store `value` (null deletes it); 204 with no body."""
    name = _known(ctx, key)
    body = ctx.body if isinstance(ctx.body, dict) else {}
    _store(ctx.state, name, _as_boolean(body.get("value")))
    return Response(204, empty=True)


def get_properties(ctx: Ctx) -> Response:
    """GET /api/session/properties: handlers_auth's answer with the public settings kept here."""
    response = handlers_auth.get_properties(ctx)
    for name in PUBLIC_BOOLEAN_SETTINGS:
        response.body[name] = effective_value(ctx.state, name)
    return response


ROUTES = [
    ("GET", r"/api/session/properties", get_properties, False),
    ("GET", r"/api/setting/(?P<key>[A-Za-z0-9_-]+)", get_setting, True),
    ("PUT", r"/api/setting/(?P<key>[A-Za-z0-9_-]+)", put_setting, True),
]
