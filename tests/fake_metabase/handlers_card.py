"""Cards (questions, models, metrics) and running them (`/api/card/:id/query`, `/api/dataset`)."""

from __future__ import annotations

import copy
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from tests.fake_metabase import card_metadata, dashboard_questions, mbql, mbql_sql, sql
from tests.fake_metabase.catalog import StateCatalog
from tests.fake_metabase.handlers import (
    NANO_ID_RE,
    WIDGET_TYPES,
    ApiError,
    Ctx,
    Response,
    Validator,
    check_parameters,
    nano_id,
    not_found,
    now_iso,
    received,
)
from tests.fake_metabase.handlers_auth import creator_json, edit_info
from tests.fake_metabase.handlers_collection import collection_for_write, hydrated_collection
from tests.fake_metabase.handlers_database import field_by_id
from tests.fake_metabase.state import FakeState

CARD_SCHEMA = 22
CARD_TYPES = {"question", "model", "metric"}
TAG_TYPES = {"text", "number", "date", "boolean", "dimension", "card", "snippet"}

# Which template tags a parameter type may target (lib/schema/parameter.cljc `:allowed-for`); a raw tag is
# matched by its `type`, a field filter by its `widget-type`.
ALLOWED_FOR: dict[str, set[str]] = {
    "number": {"number", "number/=", "id", "category", "location/zip_code"},
    "text": {"text", "string/=", "id", "category", "location/city", "location/state", "location/zip_code",
             "location/country"},
    "date": {"date", "date/single", "date/all-options", "id", "category"},
    "boolean": {"boolean", "id", "category", "boolean/="},
    "date/single": {"date", "date/single", "date/all-options", "id", "category"},
    "id": {"id"},
    "category": {"category", "number", "text", "date", "boolean"},
    "location/city": {"location/city"},
    "location/state": {"location/state"},
    "location/zip_code": {"location/zip_code"},
    "location/country": {"location/country"},
    "date/range": {"date/range", "date/all-options"},
    "date/month-year": {"date/month-year", "date/all-options"},
    "date/quarter-year": {"date/quarter-year", "date/all-options"},
    "date/relative": {"date/relative", "date/all-options"},
    "date/all-options": {"date/all-options"},
    "temporal-unit": {"temporal-unit"},
    "number/!=": {"number/!="},
    "number/<=": {"number/<="},
    "number/=": {"number/=", "number", "id", "category", "location/zip_code"},
    "number/>=": {"number/>="},
    "number/between": {"number/between"},
    "string/!=": {"string/!="},
    "string/=": {"string/=", "text", "id", "category", "location/city", "location/state", "location/zip_code",
                 "location/country"},
    "string/contains": {"string/contains"},
    "string/does-not-contain": {"string/does-not-contain"},
    "string/ends-with": {"string/ends-with"},
    "string/starts-with": {"string/starts-with"},
    "boolean/=": {"boolean", "boolean/="},
}  # fmt: skip


def invalid_query(message: str) -> ApiError:
    """The 400 Metabase answers when a saved query fails validation."""
    return ApiError(400, {"message": message, "errors": {"dataset_query": message}})


# ----------------------------------------------------------------- dataset_query normalisation


def _legacy_field_ref(ref: Any) -> list | None:
    """Return a legacy `["field", id, opts]` from a legacy or MBQL 5 field ref, or None when it is not one."""
    if not isinstance(ref, list) or len(ref) < 2 or ref[0] != "field":
        return None
    if isinstance(ref[1], dict) and len(ref) == 3:  # MBQL 5: ["field", {opts}, id]
        opts = {k: v for k, v in ref[1].items() if k != "lib/uuid"}
        return ["field", ref[2], opts or None]
    return ["field", ref[1], ref[2] if len(ref) > 2 else None]


class ConversionRefused(ApiError):
    """The legacy to MBQL 5 conversion threw: a plain-text 400 on card writes (card_write.clj)."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)
        self.message = message


@dataclass(frozen=True)
class SavedQuery:
    """A `dataset_query` as the fake stores it: the legacy form, and the `lib/uuid`s its MBQL 5 form shows."""

    legacy: dict
    # Native: template-tag name -> uuid of its field-filter ref. MBQL: uuids in mbql.to_mbql5 order.
    lib_uuids: dict[str, str] | list[str]


def _query_kind_problem(query: dict) -> str | None:
    """Return why `lib-be/normalize-query` refuses the query's outer shape (lib_be/models/transforms.clj)."""
    if "lib/type" in query and any(key in query for key in ("type", "query", "native")):
        return "MBQL 4 keys like :type, :query, or :native are not allowed in MBQL 5 queries with :lib/type"
    if "type" in query and "stages" in query:
        return "MBQL 5 :stages is not allowed in an MBQL 4 query with :type"
    if "lib/type" not in query and "type" not in query:
        return "Query must include :lib/type or :type"
    if "database" not in query:
        return "Query must include :database"
    return None


def field_types(state: FakeState) -> mbql.FieldTypes:
    """Return the (base-type, effective-type) lookup of synced fields `add-types-to-fields` uses."""

    def lookup(field_id: int) -> tuple[str, str] | None:
        found = field_by_id(state, field_id)
        if found is None:
            return None
        column = found[2]
        return column["base_type"], column.get("effective_type") or column["base_type"]

    return lookup


def normalize_query(state: FakeState, query: Any) -> SavedQuery:
    """Return a `dataset_query` (legacy or MBQL 5) as it is saved; raises ApiError as Metabase refuses it.

    Query-builder queries follow `mbql` (conversion, `clean`, uuids); conversion errors are 400s with the
    message as plain text (queries/card_write.clj `normalize-dataset-query-or-400`).
    """
    if not isinstance(query, dict):
        raise invalid_query("dataset_query must be a map")
    problem = _query_kind_problem(query)
    if problem:
        raise ApiError(400, problem)
    database_id = query.get("database")
    if not isinstance(database_id, int) or isinstance(database_id, bool) or database_id <= 0:
        raise invalid_query(
            f"Invalid query: database must be a positive integer, received: {received(database_id)}"
        )
    if database_id not in state.databases:
        raise invalid_query(f"Database {database_id} does not exist.")
    if query.get("lib/type") is not None:
        stages = query.get("stages")
        if not isinstance(stages, list) or not stages or not isinstance(stages[0], dict):
            raise invalid_query("Invalid query: stages must be a non-empty sequence of stages")
        stage = stages[0]
        if stage.get("lib/type") == "mbql.stage/native":
            native = {"query": stage.get("native"), "template-tags": stage.get("template-tags") or {}}
            legacy: dict = {"database": database_id, "type": "native", "native": native}
        elif stage.get("lib/type") in ("mbql.stage/mbql", None) and "native" not in stage:
            return _saved_mbql5(query, database_id)
        else:
            raise invalid_query("Invalid query: unknown stage type")
    else:
        legacy = copy.deepcopy(query)
    if legacy.get("type") == "native":
        native = legacy.get("native")
        if not isinstance(native, dict) or not isinstance(native.get("query"), str):
            raise invalid_query("Invalid query: native.query must be a string")
        legacy["native"] = {
            "query": native["query"],
            "template-tags": _check_template_tags(state, database_id, native.get("template-tags") or {}),
        }
        normalized = {"database": database_id, "type": "native", "native": legacy["native"]}
        return SavedQuery(normalized, lib_uuids(normalized))
    if legacy.get("type") == "query":
        return _saved_legacy_mbql(state, legacy, database_id)
    raise invalid_query(
        f"Invalid query: type must be native or query, received: {received(legacy.get('type'))}"
    )


def _saved_legacy_mbql(state: FakeState, legacy: dict, database_id: int) -> SavedQuery:
    """Legacy MBQL: converted to MBQL 5 (a conversion error is a 400), cleaned, and kept in legacy form."""
    inner = legacy.get("query")
    try:
        if not isinstance(inner, dict):
            raise mbql.ConversionError(f"the inner query must be a map, received: {received(inner)}")
        if "source-table" not in inner and "source-query" not in inner and "source_table" not in inner:
            raise mbql.ConversionError("Query must specify either `:source-table` or `:source-query`.")
        first = {"database": database_id, "type": "query", "query": mbql.normalize_legacy_inner(inner)}
        converted = mbql.to_mbql5(first, mbql.fresh_uuids(first), field_types(state))
    except mbql.ConversionError as exc:
        raise ConversionRefused(f"Error creating query from legacy query: {exc}") from exc
    return _saved_from_mbql5(mbql.clean_query(converted), database_id)


def _saved_mbql5(query: dict, database_id: int) -> SavedQuery:
    """MBQL 5 with MBQL stages: stored as sent, a `lib/uuid` added where an options map lacks one."""
    stages = [
        {"lib/type": "mbql.stage/mbql", **stage} if isinstance(stage, dict) else stage
        for stage in query["stages"]
    ]
    return _saved_from_mbql5(mbql.add_missing_uuids({**query, "stages": stages}), database_id)


def _saved_from_mbql5(query: dict, database_id: int) -> SavedQuery:
    legacy = mbql.to_legacy(query)
    legacy["database"] = database_id
    return SavedQuery(legacy, mbql.uuids_matching(legacy, query))


def _check_template_tags(state: FakeState, database_id: int, tags: Any) -> dict:
    if not isinstance(tags, dict):
        raise invalid_query("Invalid query: template-tags must be a map")
    normalized: dict[str, dict] = {}
    for key, tag in tags.items():
        if not isinstance(tag, dict):
            raise invalid_query(f"Invalid template tag {key!r}: must be a map")
        if tag.get("name") != key:
            raise invalid_query("keys in template tag map must match the :name of their values")
        display_name = tag.get("display-name")
        if not isinstance(display_name, str) or not display_name.strip():
            raise invalid_query(f"Invalid template tag {key!r}: display-name must be a non-blank string")
        tag_type = tag.get("type")
        if tag_type not in TAG_TYPES:
            raise invalid_query(f"Invalid template tag {key!r}: type must be one of {sorted(TAG_TYPES)}")
        tag = copy.deepcopy(tag)
        if tag_type == "dimension":
            if tag.get("widget-type") not in WIDGET_TYPES:
                raise invalid_query(f"Invalid template tag {key!r}: Valid template tag :widget-type required")
            ref = _legacy_field_ref(tag.get("dimension"))
            if ref is None or not isinstance(ref[1], int):
                raise invalid_query(f"Invalid template tag {key!r}: dimension must be a field reference")
            found = field_by_id(state, ref[1])
            if found is None or found[0]["id"] != database_id:
                raise invalid_query(
                    f"Invalid template tag {key!r}: Field {ref[1]} does not exist in this database"
                )
            tag["dimension"] = ref
        elif "dimension" in tag:
            raise invalid_query(
                f"Invalid template tag {key!r}: :dimension is only allowed for :type :dimension"
            )
        if tag_type == "card" and not isinstance(tag.get("card-id"), int):
            raise invalid_query(f"Invalid template tag {key!r}: card-id is required")
        if tag_type == "snippet" and not tag.get("snippet-name"):
            raise invalid_query(f"Invalid template tag {key!r}: snippet-name is required")
        if "required" in tag and not isinstance(tag["required"], bool):
            raise invalid_query(f"Invalid template tag {key!r}: required must be a boolean")
        normalized[key] = tag
    return normalized


def mbql5_query(state: FakeState, card: dict) -> dict:
    """Return the stored query as newest Metabase returns it on GET: MBQL 5 with stages."""
    legacy = card["dataset_query"]
    if legacy["type"] == "query":
        uuids = card["lib_uuids"] if isinstance(card["lib_uuids"], list) else []
        return mbql.to_mbql5(legacy, uuids, field_types(state))
    stage: dict[str, Any] = {"lib/type": "mbql.stage/native", "native": legacy["native"]["query"]}
    tags = {}
    for name, tag in legacy["native"]["template-tags"].items():
        tag = copy.deepcopy(tag)
        if "dimension" in tag:
            _, field_id, opts = tag["dimension"]
            uuid_key = card["lib_uuids"].get(name) or str(uuid.uuid4())
            tag["dimension"] = ["field", {"lib/uuid": uuid_key, **(opts or {})}, field_id]
        tags[name] = tag
    if tags:  # newest versions omit an empty template-tags map
        stage["template-tags"] = tags
    return {
        "lib/type": "mbql/query",
        "stages": [stage],
        "database": legacy["database"],
        "lib.convert/converted?": True,
    }


def lib_uuids(legacy: dict) -> dict[str, str]:
    """Return the `lib/uuid` each field-filter ref of a native query gets when it is shown as MBQL 5."""
    tags = legacy["native"]["template-tags"]
    return {name: str(uuid.uuid4()) for name, tag in tags.items() if tag.get("type") == "dimension"}


def legacy_query_string(card: dict) -> str:
    """Return the `legacy_query` field: the legacy form as a JSON string."""
    legacy = card["dataset_query"]
    if legacy["type"] == "native":
        body = {
            "database": legacy["database"],
            "type": "native",
            "native": {
                "template-tags": legacy["native"]["template-tags"],
                "query": legacy["native"]["query"],
            },
        }
    else:
        body = {"database": legacy["database"], "type": "query", "query": legacy["query"]}
    return json.dumps(body, separators=(",", ":"))


# ----------------------------------------------------------------- JSON shapes


def _dashboard_count(state: FakeState, card_id: int) -> int:
    return sum(1 for d in state.dashboards.values() for dc in d["dashcards"] if dc.get("card_id") == card_id)


def card_json(state: FakeState, card: dict, *, version: str | None = None) -> dict:
    """Return a card as `GET /api/card/:id` does (fixture card/29.json key set)."""
    creator = state.users.get(card["creator_id"])
    editor = state.users.get(card["last_edit"]["user_id"]) or creator
    body = _card_base(state, card)
    body.update(
        {
            "can_run_adhoc_query": True,
            "creator": creator_json(creator) if creator else None,
            "can_write": True,
            "last_query_start": None,
            "is_remote_synced": False,
            "dashboard_count": _dashboard_count(state, card["id"]),
            "dashboard": _dashboard_stub(state, card.get("dashboard_id")),
            "average_query_time": None,
            "can_restore": bool(card["archived_directly"]),
            "parameter_usage_count": 0,
            "can_manage_db": True,
            "last-edit-info": edit_info(editor, card["last_edit"]["timestamp"]) if editor else None,
            "collection": hydrated_collection(state, card["collection_id"]),
            "can_delete": bool(card["archived"]),
        }
    )
    return body


def source_card_id(card: dict) -> int | None:
    """Return the card the query's first stage reads from (`source_card_id`), or None."""
    query = card["dataset_query"]
    source = mbql.first_stage_source(query) if query["type"] == "query" else None
    return int(source[6:]) if isinstance(source, str) and source.startswith("card__") else None


def table_id(state: FakeState, card: dict, seen: frozenset[int] = frozenset()) -> int | None:
    """Return `table_id`: the first stage's table, through source cards (recorded card 28 shows card 27's)."""
    if card["dataset_query"]["type"] != "query" or card["id"] in seen:
        return None
    source = mbql.first_stage_source(card["dataset_query"])
    if isinstance(source, int) and not isinstance(source, bool):
        return source
    source_card = state.cards.get(source_card_id(card) or 0)
    return table_id(state, source_card, seen | {card["id"]}) if source_card else None


def _card_base(state: FakeState, card: dict) -> dict:
    """Return the card columns both GET /api/card/:id and a dashcard's hydrated `card` carry."""
    return {
        "cache_invalidated_at": None,
        "description": card["description"],
        "archived": card["archived"],
        "view_count": 0,
        "collection_position": card["collection_position"],
        "source_card_id": source_card_id(card),
        "table_id": table_id(state, card),
        "result_metadata": copy.deepcopy(card["result_metadata"]),
        "dependency_analysis_version": 0,
        "initially_published_at": None,
        "card_schema": CARD_SCHEMA,
        "database_id": card["database_id"],
        "enable_embedding": card["enable_embedding"],
        "collection_id": card["collection_id"],
        "query_type": card["dataset_query"]["type"],
        "name": card["name"],
        "document_id": None,
        "last_used_at": None,
        "type": card["type"],
        "creator_id": card["creator_id"],
        "updated_at": card["updated_at"],
        "made_public_by_id": None,
        "embedding_params": card["embedding_params"],
        "cache_ttl": card["cache_ttl"],
        "dataset_query": mbql5_query(state, card),
        "id": card["id"],
        "legacy_query": legacy_query_string(card),
        "parameter_mappings": copy.deepcopy(card["parameter_mappings"]),
        "display": card["display"],
        "archived_directly": card["archived_directly"],
        "entity_id": card["entity_id"],
        "collection_preview": card["collection_preview"],
        "visualization_settings": copy.deepcopy(card["visualization_settings"]),
        "metabase_version": card["metabase_version"],
        "parameters": copy.deepcopy(card["parameters"]),
        "dashboard_id": card.get("dashboard_id"),
        "created_at": card["created_at"],
        "public_uuid": None,
        "moderation_reviews": [],
    }


def dashcard_card_json(state: FakeState, card: dict) -> dict:
    """Return the card hydrated into a dashcard (fixture dashboard/2.json `dashcards[].card`)."""
    body = _card_base(state, card)
    body.update({"can_write": True, "query_average_duration": None})
    return body


def _dashboard_stub(state: FakeState, dashboard_id: int | None) -> dict | None:
    if dashboard_id is None or dashboard_id not in state.dashboards:
        return None
    dashboard = state.dashboards[dashboard_id]
    return {"name": dashboard["name"], "id": dashboard["id"], "moderation_status": None}


def card_item_json(state: FakeState, card: dict) -> dict:
    """Return a card as a collection item (fixture collection/3/items.json)."""
    editor = state.users.get(card["last_edit"]["user_id"])
    model = {"model": "dataset", "metric": "metric"}.get(card["type"], "card")
    info = edit_info(editor, card["last_edit"]["timestamp"]) if editor else None
    if info:
        info = {k: info[k] for k in ("id", "last_name", "first_name", "email", "timestamp")}
    return {
        "description": card["description"],
        "archived": card["archived"],
        "collection_position": card["collection_position"],
        "can_write": True,
        "database_id": card["database_id"],
        "collection_id": card["collection_id"],
        "name": card["name"],
        "is_remote_synced": False,
        "dashboard_count": _dashboard_count(state, card["id"]),
        "fully_parameterized": _fully_parameterized(card),
        "last_used_at": None,
        "dashboard": _dashboard_stub(state, card.get("dashboard_id")),
        "can_restore": bool(card["archived_directly"]),
        "moderated_status": None,
        "id": card["id"],
        "display": card["display"],
        "entity_id": card["entity_id"],
        "collection_preview": card["collection_preview"],
        "last-edit-info": info,
        "location": None,
        "dashboard_id": card.get("dashboard_id"),
        "can_delete": bool(card["archived"]),
        "model": model,
    }


def _fully_parameterized(card: dict) -> bool:
    # A native card is fully parameterized when every required tag outside optional clauses has a default.
    query = card["dataset_query"]
    if query["type"] != "native":
        return True
    return all(
        tag.get("default") is not None or tag.get("type") == "dimension" or not tag.get("required")
        for tag in query["native"]["template-tags"].values()
    )


# ----------------------------------------------------------------- endpoints


def _validate_card_body(ctx: Ctx, *, creating: bool) -> Validator:
    check = Validator(ctx.body)
    check.non_blank("name", required=creating, nullable=not creating)
    check.one_of("type", CARD_TYPES)
    check.mapping("dataset_query", required=creating, nullable=not creating)
    if creating:
        check.non_blank("entity_id")
        check.non_blank("description")
    else:
        check.string("description")
        check.boolean("archived")
        check.boolean("enable_embedding")
        check.boolean("collection_preview")
    check_parameters(check)
    check.sequence("parameter_mappings")
    check.non_blank("display", required=creating, nullable=not creating)
    check.mapping("visualization_settings", required=creating, nullable=not creating)
    for key in ("collection_id", "collection_position", "cache_ttl", "dashboard_id", "dashboard_tab_id"):
        check.positive_int(key)
    metadata_problems = card_metadata.problems(check.body.get("result_metadata"))
    if metadata_problems:
        check.fail("result_metadata", card_metadata.MESSAGE, metadata_problems[0])
    check.raise_if_failed()
    return check


def _card(ctx: Ctx, id: str) -> dict:
    if id.isdigit():
        card = ctx.state.cards.get(int(id))
    elif NANO_ID_RE.match(id):
        card = next((c for c in ctx.state.cards.values() if c["entity_id"] == id), None)
    else:
        raise ApiError(
            400,
            {
                "errors": {
                    "id": "value must be an integer greater than zero., or value must be a valid NanoID"
                },
                "specific-errors": {"id": [f"should be a positive int, received: {id!r}"]},
            },
        )
    if card is None:
        raise not_found()
    return card


def _result_metadata(state: FakeState, legacy: dict) -> list | None:
    # Metabase saves the columns of a native query by running it; a query that needs values gets none.
    if legacy["type"] != "native":
        return None
    database = state.databases[legacy["database"]]
    if database["engine"] != "postgres":
        return None
    try:
        text = sql.substitute(legacy["native"]["query"], legacy["native"]["template-tags"], {}, {})
        result = sql.run_native(database["details"], text, max_rows=0)
    except sql.QueryFailed:
        return None
    return [
        {
            "display_name": col["display_name"],
            "field_ref": col["field_ref"],
            "name": col["name"],
            "base_type": col["base_type"],
            "effective_type": col["effective_type"],
            "semantic_type": None,
            "fingerprint": None,
        }
        for col in result["cols"]
    ]


def fresh_metadata(state: FakeState, legacy: dict) -> list | None:
    """Return the result metadata Metabase computes for a query on save (None when it cannot)."""
    if legacy["type"] == "query":
        try:
            return mbql_sql.result_columns(legacy, StateCatalog(state))
        except mbql_sql.MbqlError:
            return None  # card/metadata.clj logs the failure and saves the card without metadata
    return _result_metadata(state, legacy)


def _check_no_cycle(state: FakeState, card_id: int | None, legacy: dict) -> None:
    """Refuse a query whose source cards lead back to the card (lib/query.cljc `check-card-overwrite`)."""
    pending = list(mbql.source_card_ids(legacy)) if legacy["type"] == "query" else []
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current == card_id:
            raise ApiError(400, "Cannot save card with cycles.")
        source = state.cards.get(current)
        if current in seen or source is None or source["dataset_query"]["type"] != "query":
            continue
        seen.add(current)
        pending.extend(mbql.source_card_ids(source["dataset_query"]))


def _dashboard_for_question(ctx: Ctx, body: dict) -> dict | None:
    dashboard_id = body.get("dashboard_id")
    if dashboard_id is None:
        return None
    dashboard = ctx.state.dashboards.get(dashboard_id)
    if dashboard is None:
        raise not_found()
    if "collection_id" in body and body["collection_id"] != dashboard["collection_id"]:
        raise ApiError(
            400,
            f"Mismatch detected between Dashboard's `collection_id` ({dashboard['collection_id']}) and "
            f"`collection_id` ({body['collection_id']})",
        )
    return dashboard


def post_card(ctx: Ctx) -> Response:
    """POST /api/card: validate like CardCreateSchema plus the query; store the legacy form.

    With `dashboard_id` the card is a dashboard question (`dashboard_questions`).
    """
    user = ctx.user
    assert user is not None
    _validate_card_body(ctx, creating=True)
    body = ctx.body
    saved = normalize_query(ctx.state, body["dataset_query"])
    collection_id = collection_for_write(ctx.state, body.get("collection_id"))
    if body.get("dashboard_tab_id") is not None and body.get("dashboard_id") is None:
        raise ApiError(400, "Invalid Request.")
    dashboard = _dashboard_for_question(ctx, body)
    card_type = body.get("type") or "question"
    if dashboard is not None:
        if card_type != "question" or body.get("collection_position") is not None:
            raise ApiError(400, "Invalid dashboard-internal card")
        collection_id = dashboard["collection_id"]
    timestamp = now_iso()
    legacy = saved.legacy
    card = {
        "id": ctx.state.next_id("card"),
        "name": body["name"],
        "description": body.get("description"),
        "display": body["display"],
        "visualization_settings": copy.deepcopy(body["visualization_settings"]),
        "dataset_query": legacy,
        "lib_uuids": saved.lib_uuids,
        "type": card_type,
        "collection_id": collection_id,
        "collection_position": body.get("collection_position"),
        "parameters": copy.deepcopy(body.get("parameters") or []),
        "parameter_mappings": copy.deepcopy(body.get("parameter_mappings") or []),
        "cache_ttl": body.get("cache_ttl"),
        "archived": False,
        "archived_directly": False,
        # A client-sent entity_id passes the schema but create-card! always generates a fresh one.
        "entity_id": nano_id(),
        "creator_id": user["id"],
        "created_at": timestamp,
        "updated_at": timestamp,
        "database_id": legacy["database"],
        # Valid metadata sent with a new card is saved as sent (card/metadata.clj).
        "result_metadata": copy.deepcopy(body.get("result_metadata")) or fresh_metadata(ctx.state, legacy),
        "enable_embedding": False,
        "embedding_params": None,
        "collection_preview": True,
        "dashboard_id": dashboard["id"] if dashboard else None,
        "metabase_version": f"{ctx.version} (fa4e0c1)",
        "last_edit": {"user_id": user["id"], "timestamp": timestamp},
    }
    ctx.state.cards[card["id"]] = card
    if dashboard is not None:
        dashboard_questions.autoplace(ctx.state, dashboard, card, body.get("dashboard_tab_id"), timestamp)
    return Response(200, card_json(ctx.state, card))


def get_card(ctx: Ctx, id: str) -> Response:
    return Response(200, card_json(ctx.state, _card(ctx, id)))


def list_cards(ctx: Ctx) -> Response:
    """GET /api/card: non-archived cards (`f=archived` for the archived ones), a bare list."""
    archived = (ctx.query.get("f") or ["all"])[-1] == "archived"
    cards = [c for c in ctx.state.cards.values() if c["archived"] == archived]
    cards.sort(key=lambda c: (c["name"].lower(), c["id"]))
    return Response(200, [card_json(ctx.state, c) for c in cards])


def _update_query(ctx: Ctx, card: dict, saved: SavedQuery | None, model_after: bool) -> None:
    """Apply a sent query and metadata as `maybe-async-result-metadata` decides (card_metadata)."""
    body = ctx.body
    sent_metadata = copy.deepcopy(body.get("result_metadata"))
    changed = saved is not None and saved.legacy != card["dataset_query"]
    if not changed:
        if sent_metadata is not None:
            card["result_metadata"] = sent_metadata
        return
    assert saved is not None
    card["dataset_query"] = saved.legacy
    card["database_id"] = saved.legacy["database"]
    card["lib_uuids"] = saved.lib_uuids
    fresh = fresh_metadata(ctx.state, saved.legacy)
    if model_after and (sent_metadata or card["result_metadata"]):
        previous = sent_metadata or card["result_metadata"]
        card["result_metadata"] = card_metadata.combine(fresh, previous) if fresh is not None else previous
    else:
        card["result_metadata"] = fresh


def _dashboard_question_problem(card: dict, body: dict) -> str | None:
    """Return why an update breaks a dashboard question (`invalid-dashboard-internal-card-update-reason?`)."""
    moves = "dashboard_id" in body and body["dashboard_id"] != card.get("dashboard_id")
    will_be_question = body.get("dashboard_id") if moves else card.get("dashboard_id")
    if not will_be_question:
        return None
    if not moves and "collection_id" in body and body["collection_id"] != card["collection_id"]:
        return "Invalid Dashboard Question: Cannot manually set `collection_id` on a Dashboard Question"
    if body.get("collection_position") not in (None, card["collection_position"]):
        return "Invalid Dashboard Question: Cannot set `collection_position` on a Dashboard Question"
    if body.get("type") not in (None, "question"):
        return "Invalid Dashboard Question: Cannot set `type` on a Dashboard Question"
    return None


def _move_dashboard_question(ctx: Ctx, card: dict, body: dict) -> None:
    """Apply `dashboard_id`/`collection_id` of an update (card_write.clj `maybe-populate-collection-id`)."""
    old_dashboard = card.get("dashboard_id")
    if "dashboard_id" in body and body["dashboard_id"] != old_dashboard:
        new_dashboard = body["dashboard_id"]
        if new_dashboard is not None:
            dashboard = _dashboard_for_question(ctx, body)
            assert dashboard is not None
            if body.get("archived"):
                raise ApiError(400, "Invalid Request.")
            keep = {old_dashboard, new_dashboard}
            if dashboard_questions.on_other_dashboards(ctx.state, card["id"], keep):
                raise ApiError(
                    400,
                    "Can't move question into dashboard. Questions saved in dashboards can't appear in other "
                    "dashboards.",
                )
            card["collection_id"] = dashboard["collection_id"]
            card["archived"] = False
        else:
            card["collection_id"] = collection_for_write(ctx.state, body.get("collection_id"))
        card["dashboard_id"] = new_dashboard
    elif "collection_id" in body:
        card["collection_id"] = collection_for_write(ctx.state, body["collection_id"])


def _place_or_remove(ctx: Ctx, card: dict, before: dict) -> None:
    """`autoplace-or-remove-dashcards-for-card!` after an update of a (possibly former) dashboard question."""
    old_dashboard, new_dashboard = before.get("dashboard_id"), card.get("dashboard_id")
    if ctx.body.get("dashboard_tab_id") is not None and new_dashboard is None:
        raise ApiError(400, "Invalid Request.")
    timestamp = now_iso()
    if new_dashboard is not None and not card["archived"]:
        dashboard = ctx.state.dashboards[new_dashboard]
        dashboard_questions.autoplace(ctx.state, dashboard, card, ctx.body.get("dashboard_tab_id"), timestamp)
    delete_old = ctx.query_flag("delete_old_dashcards")
    if old_dashboard is not None and (
        (new_dashboard is not None and new_dashboard != old_dashboard)
        or (card["archived"] and new_dashboard is not None)
        or (new_dashboard is None and delete_old)
    ):
        dashboard_questions.autoremove(ctx.state, card["id"], old_dashboard)


def put_card(ctx: Ctx, id: str) -> Response:
    """PUT /api/card/:id: partial update (card_write.clj `update-card!`); `archived` soft-deletes."""
    user = ctx.user
    assert user is not None
    _validate_card_body(ctx, creating=False)  # defendpoint checks the body before the handler looks it up
    body = ctx.body
    sent_query = body.get("dataset_query")
    saved = normalize_query(ctx.state, sent_query) if sent_query is not None else None
    card = _card(ctx, id)
    if saved is not None:
        _check_no_cycle(ctx.state, card["id"], saved.legacy)
    problem = _dashboard_question_problem(card, body)
    if problem:
        raise ApiError(400, problem)
    before = copy.deepcopy(card)
    model_after = (body.get("type") or card["type"]) == "model"
    _update_query(ctx, card, saved, model_after)
    _move_dashboard_question(ctx, card, body)
    for key in ("collection_position", "description", "cache_ttl"):
        if key in body:
            card[key] = body[key]
    for key in ("name", "display", "visualization_settings", "type", "enable_embedding", "parameters",
                "parameter_mappings", "embedding_params", "collection_preview"):  # fmt: skip
        if body.get(key) is not None:
            card[key] = copy.deepcopy(body[key])
    if body.get("type") is not None and model_after and body.get("display") != "list":
        card["display"] = "table"  # update-card! shows a model as a table unless it asks for "list"
    if body.get("archived") is not None and body["archived"] != card["archived"]:
        card["archived"] = body["archived"]
        card["archived_directly"] = bool(body["archived"])
    _place_or_remove(ctx, card, before)
    timestamp = now_iso()
    card["updated_at"] = timestamp
    card["metabase_version"] = f"{ctx.version} (fa4e0c1)"
    card["last_edit"] = {"user_id": user["id"], "timestamp": timestamp}
    return Response(200, card_json(ctx.state, card))


def delete_card(ctx: Ctx, id: str) -> Response:
    """DELETE /api/card/:id: hard delete; dashcards showing it go too (FK cascade)."""
    card = _card(ctx, id)
    del ctx.state.cards[card["id"]]
    for dashboard in ctx.state.dashboards.values():
        dashboard["dashcards"] = [dc for dc in dashboard["dashcards"] if dc.get("card_id") != card["id"]]
        for dashcard in dashboard["dashcards"]:
            dashcard["series"] = [s for s in dashcard.get("series", []) if s != card["id"]]
    return Response(204, empty=True)


# ----------------------------------------------------------------- query execution


def _tag_name_for(target: Any, tags: dict[str, dict]) -> str | None:
    """Return the template tag a parameter `target` points at, or None."""
    if not isinstance(target, list) or len(target) < 2 or target[0] not in ("variable", "dimension"):
        return None
    ref = target[1]
    if not isinstance(ref, list) or len(ref) != 2 or ref[0] != "template-tag":
        return None
    if isinstance(ref[1], dict):
        return next((n for n, t in tags.items() if t.get("id") == ref[1].get("id")), None)
    return ref[1] if isinstance(ref[1], str) else None


class _ParameterProblem(Exception):
    def __init__(self, message: str, error_type: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def _parameter_values(parameters: Any, tags: dict[str, dict]) -> dict[str, tuple[str | None, Any]]:
    if parameters is None:
        return {}
    if not isinstance(parameters, list):
        raise ApiError(400, {"errors": {"parameters": "nullable sequence of parameter"}})
    values: dict[str, tuple[str | None, Any]] = {}
    for parameter in parameters:
        if not isinstance(parameter, dict):
            raise ApiError(400, {"errors": {"parameters": "nullable sequence of parameter"}})
        name = _tag_name_for(parameter.get("target"), tags)
        if name is None:
            continue
        tag = tags[name]
        param_type = parameter.get("type")
        target_type = tag.get("widget-type") if tag.get("type") == "dimension" else tag.get("type")
        if param_type is not None and target_type not in ALLOWED_FOR.get(param_type, set()):
            raise _ParameterProblem(
                f"Invalid parameter type :{param_type} for parameter {json.dumps(name)}. "
                f"Parameter type must be one of: :{target_type}",
                "invalid-parameter",
            )
        values[name] = (param_type, parameter.get("value"))
    return values


def _field_refs(state: FakeState, tags: dict[str, dict]) -> dict[str, sql.FieldRef]:
    refs: dict[str, sql.FieldRef] = {}
    for name, tag in tags.items():
        if tag.get("type") == "dimension":
            found = field_by_id(state, tag["dimension"][1])
            if found:
                _, table, column = found
                refs[name] = sql.FieldRef(table["schema"], table["name"], column["name"], column["base_type"])
    return refs


def run_query(state: FakeState, legacy: dict, parameters: Any, context: str) -> Response:
    """Run a stored or ad-hoc query; answer 202 with `completed` or `failed`, as Metabase streams it."""
    started_at = now_iso()
    start = time.monotonic()
    database = state.databases[legacy["database"]]
    base = {
        "database_id": database["id"],
        "started_at": started_at,
        "json_query": {**legacy, "parameters": parameters or []},
        "context": context,
        "average_execution_time": None,
    }

    def failed(message: str, error_type: str) -> Response:
        return Response(
            202,
            {
                **base,
                "status": "failed",
                "error": message,
                "error_type": error_type,
                "via": [{"status": "failed", "error": message, "error_type": error_type}],
                "class": "clojure.lang.ExceptionInfo",
                "stacktrace": [],
                "row_count": 0,
                "running_time": int((time.monotonic() - start) * 1000),
                "data": {"rows": [], "cols": []},
            },
        )

    if database["engine"] != "postgres":
        return failed("The fake Metabase does not run queries on the H2 Sample Database.", "driver")
    cols: list[dict] | None = None
    if legacy["type"] == "query":
        if parameters is not None and not isinstance(parameters, list):
            raise ApiError(400, {"errors": {"parameters": "nullable sequence of parameter"}})
        try:
            compiled = mbql_sql.compile_query(legacy, StateCatalog(state), parameters)
        except mbql_sql.MbqlError as exc:
            return failed(str(exc), exc.error_type)
        text, cols = compiled.sql, compiled.columns
    else:
        tags = legacy["native"]["template-tags"]
        try:
            values = _parameter_values(parameters, tags)
            text = sql.substitute(legacy["native"]["query"], tags, values, _field_refs(state, tags))
        except _ParameterProblem as problem:
            return failed(str(problem), problem.error_type)
        except sql.QueryFailed as exc:
            return failed(str(exc), "missing-required-parameter")
    try:
        result = sql.run_native(database["details"], text)
    except sql.QueryFailed as exc:
        return failed(str(exc), "invalid-query")
    rows = result["rows"]
    cols = cols if cols is not None else result["cols"]
    return Response(
        202,
        {
            **base,
            "status": "completed",
            "row_count": len(rows),
            "running_time": int((time.monotonic() - start) * 1000),
            "data": {
                "rows": rows,
                "cols": cols,
                "native_form": {"query": text, "params": None},
                "results_timezone": "UTC",
                "requested_timezone": "UTC",
                "format-rows?": True,
                "is_sandboxed": False,
                "insights": None,
                "download_perms": "full",
                "results_metadata": {"columns": cols},
            },
        },
    )


def post_card_query(ctx: Ctx, id: str) -> Response:
    """POST /api/card/:id/query: run the saved query with the request's `parameters`."""
    card = _card(ctx, id)
    check = Validator(ctx.body)
    check.boolean("ignore_cache")
    check.boolean("collection_preview")
    check.positive_int("dashboard_id")
    check.raise_if_failed()
    return run_query(ctx.state, card["dataset_query"], check.body.get("parameters"), "question")


def post_dataset(ctx: Ctx) -> Response:
    """POST /api/dataset: run an ad-hoc query (legacy or MBQL 5 form)."""
    body = ctx.body if isinstance(ctx.body, dict) else {}
    check = Validator(body)
    check.positive_int("database", required=True, nullable=False)
    check.raise_if_failed()
    if body["database"] not in ctx.state.databases:
        raise not_found()
    try:
        saved = normalize_query(ctx.state, {k: v for k, v in body.items() if k != "parameters"})
    except ConversionRefused as refused:
        # No status code on this path: the API answers a 500 (seen on 63.1: "Error creating query from legacy
        # query: Assert failed: (= (count clause) 4)").
        raise ApiError(
            500,
            {
                "message": refused.message,
                "via": [{"type": "clojure.lang.ExceptionInfo", "message": refused.message}],
                "trace": [],
            },
        ) from refused
    return run_query(ctx.state, saved.legacy, body.get("parameters"), "ad-hoc")


ROUTES = [
    ("POST", r"/api/card", post_card, True),
    ("GET", r"/api/card", list_cards, True),
    ("GET", r"/api/card/(?P<id>[^/]+)", get_card, True),
    ("PUT", r"/api/card/(?P<id>\d+)", put_card, True),
    ("DELETE", r"/api/card/(?P<id>\d+)", delete_card, True),
    ("POST", r"/api/card/(?P<id>[^/]+)/query", post_card_query, True),
    ("POST", r"/api/dataset", post_dataset, True),
]
