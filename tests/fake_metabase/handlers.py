"""Shared pieces of the fake's request handlers: responses, Metabase-shaped errors, validation helpers."""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.fake_metabase.state import FakeState

NANO_ID_ALPHABET = string.ascii_letters + string.digits + "_-"
NANO_ID_RE = re.compile(r"^[A-Za-z0-9_-]{21}$")

NOT_FOUND = "Not found."
NO_ENDPOINT = "API endpoint does not exist."
UNAUTHENTICATED = "Unauthenticated"
FORBIDDEN = "You don't have permissions to do that."

# Parameter types Metabase accepts (lib/schema/parameter.cljc `types`), plus widget-only `none`.
PARAMETER_TYPES = frozenset(
    {
        "number",
        "text",
        "date",
        "boolean",
        "date/single",
        "id",
        "category",
        "location/city",
        "location/state",
        "location/zip_code",
        "location/country",
        "date/range",
        "date/month-year",
        "date/quarter-year",
        "date/relative",
        "date/all-options",
        "temporal-unit",
        "number/!=",
        "number/<=",
        "number/=",
        "number/>=",
        "number/between",
        "string/!=",
        "string/=",
        "string/contains",
        "string/does-not-contain",
        "string/ends-with",
        "string/starts-with",
        "boolean/=",
    }
)
WIDGET_TYPES = PARAMETER_TYPES | {"none"}


@dataclass
class Response:
    """One HTTP answer: a JSON value, a plain-text string, or an empty body."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    empty: bool = False

    def encode(self) -> tuple[bytes, str | None]:
        """Return the body bytes and content type, as Metabase's content-type middleware picks them."""
        if self.empty:
            # generic-204-no-content has a nil body: add-content-type* calls anything not a string JSON.
            return b"", "application/json; charset=utf-8"
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain"
        return json.dumps(self.body).encode(), "application/json; charset=utf-8"


class ApiError(Exception):
    """A Metabase error answer; raising it aborts the request without changing state."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.response = Response(status, body)


def not_found() -> ApiError:
    return ApiError(404, NOT_FOUND)


def forbidden() -> ApiError:
    return ApiError(403, FORBIDDEN)


def bad_request(key: str, message: str) -> ApiError:
    """An `api/checkp`-style 400: `errors` only, no `specific-errors`."""
    return ApiError(400, {"errors": {key: message}})


def now_iso() -> str:
    """Return the current time as Metabase prints it: ISO-8601, microseconds, `Z`."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def nano_id() -> str:
    """Return a fresh 21-character NanoID like Metabase's `entity_id`."""
    return "".join(secrets.choice(NANO_ID_ALPHABET) for _ in range(21))


def received(value: Any) -> str:
    """Return malli's `received: …` rendering of a value."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


class Validator:
    """Collects malli-style schema errors for one request body, raised together as a 400."""

    def __init__(self, body: Any) -> None:
        self.body = body if isinstance(body, dict) else {}
        self.errors: dict[str, str] = {}
        self.specific: dict[str, list[str]] = {}

    def fail(self, key: str, message: str, detail: str) -> None:
        self.errors.setdefault(key, message)
        self.specific.setdefault(key, []).append(detail)

    def _check(
        self,
        key: str,
        *,
        required: bool,
        nullable: bool,
        ok: Callable[[Any], bool],
        what: str,
        detail: str,
    ) -> Any:
        prefix = "nullable " if nullable and not required else ""
        message = f"{prefix}value must be {what}."
        if key not in self.body:
            if required:
                self.fail(key, message, "missing required key, received: nil")
            return None
        value = self.body[key]
        if value is None and (nullable or not required):
            if not nullable:
                self.fail(key, message, f"{detail}, received: nil")
            return None
        if not ok(value):
            self.fail(key, message, f"{detail}, received: {received(value)}")
            return None
        return value

    def non_blank(self, key: str, *, required: bool = False, nullable: bool = True) -> str | None:
        return self._check(
            key,
            required=required,
            nullable=nullable,
            ok=lambda v: isinstance(v, str) and v.strip() != "",
            what="a non-blank string",
            detail="non-blank string",
        )

    def string(self, key: str, *, required: bool = False, nullable: bool = True) -> str | None:
        return self._check(
            key,
            required=required,
            nullable=nullable,
            ok=lambda v: isinstance(v, str),
            what="a string",
            detail="should be a string",
        )

    def positive_int(self, key: str, *, required: bool = False, nullable: bool = True) -> int | None:
        return self._check(
            key,
            required=required,
            nullable=nullable,
            ok=lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
            what="an integer greater than zero",
            detail="should be a positive int",
        )

    def boolean(self, key: str, *, required: bool = False, nullable: bool = True) -> bool | None:
        return self._check(
            key,
            required=required,
            nullable=nullable,
            ok=lambda v: isinstance(v, bool),
            what="a boolean",
            detail="should be a boolean",
        )

    def mapping(self, key: str, *, required: bool = False, nullable: bool = True) -> dict | None:
        return self._check(
            key,
            required=required,
            nullable=nullable,
            ok=lambda v: isinstance(v, dict),
            what="a map",
            detail="should be a map",
        )

    def sequence(self, key: str, *, required: bool = False, nullable: bool = True) -> list | None:
        return self._check(
            key,
            required=required,
            nullable=nullable,
            ok=lambda v: isinstance(v, list),
            what="a sequence",
            detail="should be a sequence",
        )

    def one_of(self, key: str, options: set[str], *, nullable: bool = True) -> str | None:
        return self._check(
            key,
            required=False,
            nullable=nullable,
            ok=lambda v: v in options,
            what=f"one of {', '.join(sorted(options))}",
            detail="should be either " + " or ".join(sorted(options)),
        )

    def raise_if_failed(self) -> None:
        if self.errors:
            raise ApiError(400, {"errors": self.errors, "specific-errors": self.specific})


def _non_blank(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _optional_problem(parameter: dict) -> bool:
    """Return whether an optional key breaks `::parameters.schema/parameter` (parameters/schema.cljc)."""
    for key in ("name", "slug"):  # `:string`, not `[:maybe …]`: null is invalid too
        if key in parameter and not isinstance(parameter[key], str):
            return True
    if "sectionId" in parameter and not _non_blank(parameter["sectionId"]):
        return True
    nullable_checks = {
        "filteringParameters": lambda v: isinstance(v, list) and all(_non_blank(i) for i in v),
        "temporal_units": lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
        "values_query_type": lambda v: v in ("none", "list", "search"),
        "values_source_type": lambda v: v in ("static-list", "card"),
        "values_source_config": lambda v: isinstance(v, dict),
    }
    return any(
        parameter.get(key) is not None and not ok(parameter[key]) for key, ok in nullable_checks.items()
    )


def parameter_problems(parameters: Any) -> str | None:
    """Return why a dashboard/card `parameters` value is invalid (malli message), or None."""
    if parameters is None:
        return None
    message = "nullable sequence of parameter must be a map with :id and :type keys"
    if not isinstance(parameters, list):
        return message
    for parameter in parameters:
        if not isinstance(parameter, dict) or not _non_blank(parameter.get("id")):
            return message
        if parameter.get("type") not in PARAMETER_TYPES:
            return f"{message}, valid parameter type"
        if _optional_problem(parameter):
            return message
    return None


def check_parameters(validator: Validator, key: str = "parameters") -> None:
    """Record a 400 on `validator` when the body's parameters are malformed."""
    problem = parameter_problems(validator.body.get(key))
    if problem:
        validator.fail(key, problem, f"invalid parameters, received: {received(validator.body.get(key))}")


@dataclass
class Ctx:
    """What a handler gets: the state, the caller, the parsed request, server settings."""

    state: FakeState
    body: Any
    query: dict[str, list[str]]
    user: dict | None
    version: str
    sync_polls: int
    headers: dict[str, str]
    # Failed logins per username: in memory, outside the state a failed request rolls back.
    login_failures: dict[str, int] = field(default_factory=dict)
    set_cookies: list[str] = field(default_factory=list)

    def require_superuser(self) -> dict:
        if self.user is None or not self.user.get("is_superuser"):
            raise forbidden()
        return self.user

    def query_flag(self, name: str) -> bool:
        values = self.query.get(name) or []
        return bool(values) and values[-1].lower() == "true"


def positive_id(raw: str) -> int:
    """Return the integer of a path id segment already matched as digits; 0 is not an id (404)."""
    value = int(raw)
    if value <= 0:
        raise not_found()
    return value
