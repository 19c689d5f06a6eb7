"""Dashboards: create, read, and PUT with full dashcard/tab replacement semantics."""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.fake_metabase import dashboard_questions
from tests.fake_metabase.handlers import (
    ApiError,
    Ctx,
    Response,
    Validator,
    check_parameters,
    nano_id,
    not_found,
    now_iso,
    positive_id,
    received,
)
from tests.fake_metabase.handlers_auth import edit_info
from tests.fake_metabase.handlers_card import dashcard_card_json, run_query
from tests.fake_metabase.handlers_collection import collection_for_write, hydrated_collection
from tests.fake_metabase.handlers_database import field_by_id
from tests.fake_metabase.sql import humanize, semantic_type_for
from tests.fake_metabase.state import FakeState

TABS_NEED_CARDS = "This dashboard has tab, makes sure every card has a tab"
ARCHIVED = {"message": "The object has been archived.", "error_code": "archived"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _valid_target(target: Any) -> bool:
    """Return whether a parameter mapping target has a shape Metabase's `::target` schema accepts."""
    if not isinstance(target, list) or not target:
        return False
    tag = target[0]
    if tag == "field":
        return _valid_field_ref(target)
    if tag == "text-tag":
        return len(target) == 2 and isinstance(target[1], str) and target[1].strip() != ""
    if tag == "variable":
        return len(target) == 2 and _valid_template_tag_ref(target[1])
    if tag == "dimension":
        if len(target) not in (2, 3):
            return False
        if len(target) == 3 and target[2] is not None and not _valid_dimension_options(target[2]):
            return False
        inner = target[1]
        if isinstance(inner, list) and inner and inner[0] == "field":
            return _valid_field_ref(inner)
        if isinstance(inner, list) and inner and inner[0] == "expression":
            return len(inner) in (2, 3)
        return _valid_template_tag_ref(inner)
    return False


def _valid_field_ref(ref: list) -> bool:
    """Whether a `["field", id-or-name, opts]` target passes `legacy_mbql/schema.cljc` `field`.

    A name needs `base-type` in its options (`::require-base-type-for-field-name`); the field need not exist:
    `check-parameter-mapping-permissions` skips ids of no table (dashboards/api.clj).
    """
    if len(ref) not in (2, 3):
        return False
    id_or_name, options = ref[1], ref[2] if len(ref) == 3 else None
    if options is not None and not isinstance(options, dict):
        return False
    if isinstance(id_or_name, str):
        return id_or_name != "" and bool((options or {}).get("base-type"))
    return _is_int(id_or_name) and id_or_name > 0


def _valid_dimension_options(options: Any) -> bool:
    # ::dimension.options: a map whose optional `stage-number` is an integer >= 0.
    if not isinstance(options, dict):
        return False
    stage = options.get("stage-number", 0)
    return _is_int(stage) and stage >= 0


def _valid_template_tag_ref(ref: Any) -> bool:
    if not isinstance(ref, list) or len(ref) != 2 or ref[0] != "template-tag":
        return False
    name = ref[1]
    if isinstance(name, dict):
        return isinstance(name.get("id"), str) and name["id"].strip() != ""
    return isinstance(name, str) and name.strip() != ""


def _id_problems(index: int, item: dict, seen: set[int]) -> list[str]:
    """Return the problem with an item's `id` (an integer, unique in its array: maps-with-unique-key)."""
    item_id = item.get("id")
    if not _is_int(item_id):
        return [f"[{index}].id: should be an integer, received: {received(item_id)}"]
    if item_id in seen:
        return [f"[{index}].id: ids must be unique, received duplicate: {item_id}"]
    seen.add(item_id)
    return []


def _dashcard_problems(dashcards: list) -> list[str]:
    """Return malli-style problems of a `dashcards` array (UpdatedDashboardCard, unique ids)."""
    problems: list[str] = []
    seen: set[int] = set()
    for index, dashcard in enumerate(dashcards):
        if not isinstance(dashcard, dict):
            problems.append(f"[{index}] should be a map, received: {received(dashcard)}")
            continue
        problems.extend(_id_problems(index, dashcard, seen))
        for key, minimum in (("size_x", 1), ("size_y", 1), ("row", 0), ("col", 0)):
            value = dashcard.get(key)
            if not _is_int(value) or value < minimum:
                problems.append(
                    f"[{index}].{key}: should be an integer >= {minimum}, received: {received(value)}"
                )
        for key in ("card_id", "action_id"):  # [:maybe ms/PositiveInt]
            value = dashcard.get(key)
            if value is not None and not (_is_int(value) and value > 0):
                problems.append(f"[{index}].{key}: should be a positive int, received: {received(value)}")
        tab_id = dashcard.get("dashboard_tab_id")
        if tab_id is not None and not _is_int(tab_id):
            problems.append(f"[{index}].dashboard_tab_id: should be an int, received: {received(tab_id)}")
        settings = dashcard.get("visualization_settings")
        if settings is not None and not isinstance(settings, dict):
            problems.append(
                f"[{index}].visualization_settings: should be a map, received: {received(settings)}"
            )
        inline = dashcard.get("inline_parameters")
        if inline is not None and not (
            isinstance(inline, list) and all(isinstance(i, str) and i.strip() for i in inline)
        ):
            problems.append(f"[{index}].inline_parameters: should be a sequence of non-blank strings")
        mappings = dashcard.get("parameter_mappings")
        if mappings is not None:
            if not isinstance(mappings, list):
                problems.append(f"[{index}].parameter_mappings: should be a sequence")
            else:
                for mapping in mappings:
                    problems.extend(_mapping_problems(index, mapping))
        series = dashcard.get("series")
        if series is not None and (
            not isinstance(series, list) or not all(isinstance(s, dict) for s in series)
        ):
            problems.append(f"[{index}].series: should be a sequence of maps, received: {received(series)}")
    return problems


def _mapping_problems(index: int, mapping: Any) -> list[str]:
    if not isinstance(mapping, dict):
        return [f"[{index}].parameter_mappings: should be a map, received: {received(mapping)}"]
    problems = []
    parameter_id = mapping.get("parameter_id")
    if not isinstance(parameter_id, str) or not parameter_id.strip():
        problems.append(
            f"[{index}].parameter_mappings.parameter_id: non-blank string, received: {received(parameter_id)}"
        )
    if not _valid_target(mapping.get("target")):
        problems.append(
            f"[{index}].parameter_mappings.target: Invalid parameter :target, must be either :field, "
            f":dimension, or :variable; got: {received(mapping.get('target'))}"
        )
    # `[:card_id {:optional true} ::lib.schema.id/card]`: may be left out, but null is not a card id.
    if "card_id" in mapping and not (_is_int(mapping["card_id"]) and mapping["card_id"] > 0):
        problems.append(f"[{index}].parameter_mappings.card_id: should be a positive int")
    return problems


def _tab_problems(tabs: list) -> list[str]:
    problems: list[str] = []
    seen: set[int] = set()
    for index, tab in enumerate(tabs):
        if not isinstance(tab, dict):
            problems.append(f"[{index}] should be a map, received: {received(tab)}")
            continue
        problems.extend(_id_problems(index, tab, seen))
        name = tab.get("name")
        if not isinstance(name, str) or not name.strip():
            problems.append(f"[{index}].name: non-blank string, received: {received(name)}")
        position = tab.get("position", 0)  # optional, but when sent an integer >= 0 (not null)
        if not (_is_int(position) and position >= 0):
            problems.append(f"[{index}].position: should be an integer >= 0, received: {received(position)}")
    return problems


# ----------------------------------------------------------------- JSON shapes


def _tab_json(dashboard: dict, tab: dict, position: int) -> dict:
    return {
        "id": tab["id"],
        "dashboard_id": dashboard["id"],
        "name": tab["name"],
        "position": position,
        "entity_id": tab["entity_id"],
        "created_at": tab["created_at"],
        "updated_at": tab["updated_at"],
    }


def _dashcard_json(state: FakeState, dashboard: dict, dashcard: dict) -> dict:
    card = state.cards.get(dashcard["card_id"]) if dashcard.get("card_id") else None
    return {
        "size_x": dashcard["size_x"],
        "dashboard_tab_id": dashcard["dashboard_tab_id"],
        # A virtual (text/heading) card hydrates to this stub, not null.
        "card": dashcard_card_json(state, card) if card else {"query_average_duration": None},
        "series": [dashcard_card_json(state, state.cards[s]) for s in dashcard["series"] if s in state.cards],
        "inline_parameters": copy.deepcopy(dashcard.get("inline_parameters")),
        "action_id": dashcard.get("action_id"),
        "collection_authority_level": None,
        "updated_at": dashcard["updated_at"],
        "col": dashcard["col"],
        "id": dashcard["id"],
        "parameter_mappings": copy.deepcopy(dashcard["parameter_mappings"]),
        "card_id": dashcard.get("card_id"),
        "entity_id": dashcard["entity_id"],
        "visualization_settings": copy.deepcopy(dashcard["visualization_settings"]),
        "size_y": dashcard["size_y"],
        "dashboard_id": dashboard["id"],
        "created_at": dashcard["created_at"],
        "row": dashcard["row"],
    }


def _param_fields(state: FakeState, dashboard: dict) -> dict:
    """Return `param_fields`: the fields dashboard filters reach through their mappings, keyed by id."""
    fields: dict[str, dict] = {}
    for dashcard in dashboard["dashcards"]:
        card = state.cards.get(dashcard.get("card_id") or 0)
        for mapping in dashcard["parameter_mappings"]:
            field_id = _mapping_field_id(card, mapping.get("target"))
            found = field_by_id(state, field_id) if field_id else None
            if not found:
                continue
            _, table, column = found
            fields[str(column["id"])] = {
                "id": column["id"],
                "table_id": table["id"],
                "display_name": humanize(column["name"]),
                "base_type": column["base_type"],
                "semantic_type": semantic_type_for(column),
                "has_field_values": "list" if column["base_type"] == "type/Text" else "none",
                "name": column["name"],
                "name_field": None,
                "dimensions": [],
            }
    return fields


def _mapping_field_id(card: dict | None, target: Any) -> int | None:
    if not isinstance(target, list) or len(target) < 2 or target[0] != "dimension":
        return None
    inner = target[1]
    if isinstance(inner, list) and len(inner) >= 2 and inner[0] == "field" and _is_int(inner[1]):
        return inner[1]
    if (
        card
        and isinstance(inner, list)
        and inner[0] == "template-tag"
        and card["dataset_query"]["type"] == "native"
    ):
        tag = (
            card["dataset_query"]["native"]["template-tags"].get(inner[1])
            if isinstance(inner[1], str)
            else None
        )
        if tag and tag.get("type") == "dimension":
            return tag["dimension"][1]
    return None


def dashboard_json(state: FakeState, dashboard: dict) -> dict:
    """Return a dashboard as `GET /api/dashboard/:id` does (fixture dashboard/2.json key set)."""
    editor = state.users.get(dashboard["last_edit"]["user_id"])
    return {
        "description": dashboard["description"],
        "archived": dashboard["archived"],
        "view_count": 0,
        "collection_position": dashboard["collection_position"],
        "dashcards": [_dashcard_json(state, dashboard, dc) for dc in _ordered(state, dashboard)],
        "dependency_analysis_version": 0,
        "initially_published_at": None,
        "can_write": True,
        "tabs": [_tab_json(dashboard, tab, i) for i, tab in enumerate(dashboard["tabs"])],
        "enable_embedding": dashboard["enable_embedding"],
        "collection_id": dashboard["collection_id"],
        "show_in_getting_started": False,
        "name": dashboard["name"],
        "is_remote_synced": False,
        "width": dashboard["width"],
        "caveats": None,
        "collection_authority_level": None,
        "creator_id": dashboard["creator_id"],
        "can_restore": bool(dashboard["archived_directly"]),
        "moderation_reviews": [],
        "updated_at": dashboard["updated_at"],
        "made_public_by_id": None,
        "embedding_params": dashboard["embedding_params"],
        "cache_ttl": dashboard["cache_ttl"],
        "last_used_param_values": {},
        "id": dashboard["id"],
        "last_viewed_at": None,
        "position": dashboard["position"],
        "archived_directly": dashboard["archived_directly"],
        "entity_id": dashboard["entity_id"],
        "param_fields": _param_fields(state, dashboard),
        "last-edit-info": edit_info(editor, dashboard["last_edit"]["timestamp"]) if editor else None,
        "collection": hydrated_collection(state, dashboard["collection_id"]),
        "parameters": copy.deepcopy(dashboard["parameters"]),
        "auto_apply_filters": dashboard["auto_apply_filters"],
        "created_at": dashboard["created_at"],
        "public_uuid": None,
        "points_of_interest": None,
        "can_delete": bool(dashboard["archived"]),
    }


def _visible(state: FakeState, dashcard: dict) -> bool:
    # Metabase's dashcards hydration skips cards in the Trash; the rows stay and return on restore.
    card = state.cards.get(dashcard.get("card_id") or 0)
    return card is None or not card["archived"]


def _ordered(state: FakeState, dashboard: dict) -> list[dict]:
    # Creation order (`created_at`), as the hydration query sorts; ids grow with creation.
    return sorted((dc for dc in dashboard["dashcards"] if _visible(state, dc)), key=lambda dc: dc["id"])


def _children_location(state: FakeState, collection_id: int | None) -> str:
    collection = state.collections.get(collection_id or 0)
    return f"{collection['location']}{collection['id']}/" if collection else "/"


def dashboard_item_json(state: FakeState, dashboard: dict) -> dict:
    """Return a dashboard as a collection item (fixture collection/root/items.json)."""
    editor = state.users.get(dashboard["last_edit"]["user_id"])
    info = edit_info(editor, dashboard["last_edit"]["timestamp"]) if editor else None
    if info:
        info = {k: info[k] for k in ("id", "last_name", "first_name", "email", "timestamp")}
    return {
        "description": dashboard["description"],
        "archived": dashboard["archived"],
        "collection_position": dashboard["collection_position"],
        "can_write": True,
        "database_id": None,
        "collection_id": dashboard["collection_id"],
        "name": dashboard["name"],
        "is_remote_synced": False,
        "last_used_at": None,
        "can_restore": bool(dashboard["archived_directly"]),
        "moderated_status": None,
        "id": dashboard["id"],
        "entity_id": dashboard["entity_id"],
        "last-edit-info": info,
        "location": _children_location(state, dashboard["collection_id"]),
        "dashboard_id": None,
        "can_delete": bool(dashboard["archived"]),
        "model": "dashboard",
    }


# ----------------------------------------------------------------- endpoints


def _dashboard(ctx: Ctx, id: str) -> dict:
    dashboard = ctx.state.dashboards.get(positive_id(id))
    if dashboard is None:
        raise not_found()
    return dashboard


def post_dashboard(ctx: Ctx) -> Response:
    """POST /api/dashboard: name, description, collection, parameters; never dashcards."""
    user = ctx.user
    assert user is not None
    check = Validator(ctx.body)
    check.non_blank("name", required=True, nullable=False)
    check_parameters(check)
    check.string("description")
    for key in ("cache_ttl", "collection_id", "collection_position"):
        check.positive_int(key)
    check.raise_if_failed()
    body = ctx.body
    collection_id = collection_for_write(ctx.state, body.get("collection_id"))
    timestamp = now_iso()
    dashboard = {
        "id": ctx.state.next_id("dashboard"),
        "name": body["name"],
        "description": body.get("description"),
        "collection_id": collection_id,
        "collection_position": body.get("collection_position"),
        "parameters": copy.deepcopy(body.get("parameters") or []),
        "width": "fixed",
        "auto_apply_filters": True,
        "archived": False,
        "archived_directly": False,
        # The endpoint builds the row itself: a client-sent entity_id is ignored.
        "entity_id": nano_id(),
        "creator_id": user["id"],
        "created_at": timestamp,
        "updated_at": timestamp,
        "cache_ttl": body.get("cache_ttl"),
        "enable_embedding": False,
        "embedding_params": None,
        "position": None,
        "dashcards": [],
        "tabs": [],
        "last_edit": {"user_id": user["id"], "timestamp": timestamp},
    }
    ctx.state.dashboards[dashboard["id"]] = dashboard
    return Response(200, dashboard_json(ctx.state, dashboard))


def get_dashboard(ctx: Ctx, id: str) -> Response:
    return Response(200, dashboard_json(ctx.state, _dashboard(ctx, id)))


def _validate_updates(ctx: Ctx) -> None:
    check = Validator(ctx.body)
    check.non_blank("name")
    check.string("description")
    check_parameters(check)
    check.positive_int("position")
    body = check.body
    if "width" in body and body["width"] not in ("fixed", "full"):
        check.fail(
            "width",
            'value must be one of "fixed", "full".',
            f"should be either fixed or full, received: {received(body['width'])}",
        )
    for key in ("archived", "enable_embedding", "auto_apply_filters", "show_in_getting_started"):
        check.boolean(key)
    for key in ("collection_id", "collection_position", "cache_ttl"):
        check.positive_int(key)
    for key, problems_of in (("dashcards", _dashcard_problems), ("tabs", _tab_problems)):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, list):
            check.fail(
                key,
                "nullable value must be a seq of maps in which ids are unique",
                f"should be a sequence, received: {received(value)}",
            )
            continue
        for problem in problems_of(value):
            check.fail(key, "nullable value must be a seq of maps in which ids are unique", problem)
    check.raise_if_failed()


def _apply_tabs(state: FakeState, dashboard: dict, tabs: list[dict], timestamp: str) -> dict[int, int]:
    """Replace the tab list (order = position); return new-tab id in the body → id given to it.

    Omitted tabs are deleted together with their dashcards.
    """
    existing = {tab["id"]: tab for tab in dashboard["tabs"]}
    remap: dict[int, int] = {}
    new_tabs = []
    for tab in tabs:
        current = existing.get(tab["id"])
        if current is None:
            current = {"id": state.next_id("dashboard_tab"), "entity_id": nano_id(), "created_at": timestamp}
            remap[tab["id"]] = current["id"]
        current.update(name=tab["name"], updated_at=timestamp)
        new_tabs.append(current)
    kept = {tab["id"] for tab in new_tabs}
    dashboard["dashcards"] = [
        dc
        for dc in dashboard["dashcards"]
        if dc["dashboard_tab_id"] is None or dc["dashboard_tab_id"] in kept
    ]
    dashboard["tabs"] = new_tabs
    return remap


def _check_card_usable(state: FakeState, card_id: int | None) -> None:
    if card_id is None:
        return
    card = state.cards.get(card_id)
    if card is None:
        raise not_found()
    if card["archived"]:
        raise ApiError(404, ARCHIVED)


def _apply_dashcards(
    state: FakeState, dashboard: dict, dashcards: list[dict], remap: dict[int, int], timestamp: str
) -> None:
    """Make `dashcards` the complete set: absent ones deleted, ids not on the dashboard created afresh."""
    tab_ids = {tab["id"] for tab in dashboard["tabs"]}
    # The diff runs against the dashcards a read shows; those of trashed cards are kept aside untouched.
    existing = {dc["id"]: dc for dc in dashboard["dashcards"] if _visible(state, dc)}
    hidden = [dc for dc in dashboard["dashcards"] if not _visible(state, dc)]
    # Cards the dashboard shows already may stay even if they became another dashboard's questions (UXW-4870).
    grandfathered = {i for dc in existing.values() for i in (dc.get("card_id"), *dc["series"]) if i}
    result = []
    for wanted in dashcards:
        tab_id = wanted.get("dashboard_tab_id")
        tab_id = remap.get(tab_id, tab_id)
        if tab_id is not None and tab_id not in tab_ids:
            # Real Metabase hits the dashboard_tab foreign key here and answers a 500.
            raise ApiError(500, _fk_violation(tab_id))
        current = existing.get(wanted["id"])
        card_id = wanted.get("card_id")
        series = [s.get("id") for s in wanted.get("series") or []]
        if current is None:  # create-dashcards! checks the card and its series are readable and not archived
            for used in (card_id, *series):
                _check_card_usable(state, used)
        elif card_id is not None and card_id not in state.cards:
            raise not_found()
        for series_id in series:
            if series_id not in state.cards:
                raise not_found()
        for used in (card_id, *series):
            if used in grandfathered:
                continue
            owner = state.cards[used].get("dashboard_id") if used in state.cards else None
            if owner is not None and owner != dashboard["id"]:
                # A dashboard question belongs to its own dashboard (assert-dashcards-are-not-internal-...).
                raise ApiError(400, "Invalid Request.")
        if current is None:
            current = {"id": state.next_id("dashcard"), "entity_id": nano_id(), "created_at": timestamp}
        current.update(
            card_id=card_id,
            dashboard_tab_id=tab_id,
            row=wanted["row"],
            col=wanted["col"],
            size_x=wanted["size_x"],
            size_y=wanted["size_y"],
            parameter_mappings=copy.deepcopy(wanted.get("parameter_mappings") or []),
            visualization_settings=copy.deepcopy(wanted.get("visualization_settings") or {}),
            series=series,
            action_id=wanted.get("action_id"),
            inline_parameters=copy.deepcopy(wanted.get("inline_parameters")),
            updated_at=timestamp,
        )
        result.append(current)
    dashboard["dashcards"] = result + [dc for dc in hidden if dc["id"] not in {r["id"] for r in result}]


def _fk_violation(tab_id: int) -> dict:
    message = (
        'ERROR: insert or update on table "report_dashboardcard" violates foreign key constraint '
        f'"fk_report_dashboardcard_ref_dashboard_tab_id" Detail: Key (dashboard_tab_id)=({tab_id}) '
        'is not present in table "dashboard_tab".'
    )
    return {"message": message, "via": [{"type": "org.postgresql.util.PSQLException", "message": message}]}


def put_dashboard(ctx: Ctx, id: str) -> Response:
    """PUT /api/dashboard/:id: metadata, and with `dashcards` the complete layout (dashboards/write.clj).

    As in Metabase, `tabs` is only read when `dashcards` is present; then omitted tabs (all of them when
    `tabs` is absent) and omitted dashcards are deleted, and negative ids name new rows.
    """
    user = ctx.user
    assert user is not None
    _validate_updates(ctx)  # defendpoint checks the body before the handler looks the dashboard up
    dashboard = _dashboard(ctx, id)
    body = ctx.body
    if "collection_id" in body:
        dashboard["collection_id"] = collection_for_write(ctx.state, body["collection_id"])
    timestamp = now_iso()
    if "dashcards" in body:
        if dashboard["archived"]:
            # Checked against the dashboard as it was, even when the same body unarchives it.
            raise ApiError(404, ARCHIVED)
        tabs = body.get("tabs") or []
        dashcards = [dict(dc) for dc in body.get("dashcards") or []]
        if len(tabs) == 1:
            for dc in dashcards:
                if dc.get("dashboard_tab_id") is None:
                    dc["dashboard_tab_id"] = tabs[0]["id"]
        if tabs and any(dc.get("dashboard_tab_id") is None for dc in dashcards):
            raise ApiError(400, TABS_NEED_CARDS)
        remap = _apply_tabs(ctx.state, dashboard, tabs, timestamp)
        # Its own questions no dashcard shows any more are archived, those shown unarchived (row-diff first).
        shown = {dc["card_id"] for dc in dashcards if dc.get("card_id")}
        dashboard_questions.set_archived_by_dashcards(ctx.state, dashboard["id"], shown, archived=False)
        _apply_dashcards(ctx.state, dashboard, dashcards, remap, timestamp)
        dashboard_questions.set_archived_by_dashcards(ctx.state, dashboard["id"], shown, archived=True)
    for key in ("description", "collection_position", "cache_ttl", "position"):
        if key in body:
            dashboard[key] = body[key]
    for key in ("name", "parameters", "width", "auto_apply_filters", "enable_embedding", "embedding_params"):
        if body.get(key) is not None:
            dashboard[key] = copy.deepcopy(body[key])
    if body.get("archived") is not None and body["archived"] != dashboard["archived"]:
        dashboard["archived"] = body["archived"]
        dashboard["archived_directly"] = bool(body["archived"])
        dashboard_questions.follow_dashboard_archiving(ctx.state, dashboard["id"], body["archived"])
    if "collection_id" in body:
        dashboard_questions.follow_dashboard_move(ctx.state, dashboard["id"], dashboard["collection_id"])
    dashboard["updated_at"] = timestamp
    dashboard["last_edit"] = {"user_id": user["id"], "timestamp": timestamp}
    return Response(200, dashboard_json(ctx.state, dashboard))


def delete_dashboard(ctx: Ctx, id: str) -> Response:
    """DELETE /api/dashboard/:id: hard delete, 204."""
    dashboard = _dashboard(ctx, id)
    del ctx.state.dashboards[dashboard["id"]]
    return Response(204, empty=True)


def post_dashcard_query(ctx: Ctx, id: str, dashcard_id: str, card_id: str) -> Response:
    """POST /api/dashboard/:id/dashcard/:dcid/card/:cid/query: run a card with dashboard filter values.

    Each request parameter names a dashboard parameter by `id`; the dashcard's parameter mappings carry the
    value to the card's template tag, typed as the dashboard parameter (so a badly wired filter fails here).
    """
    dashboard = _dashboard(ctx, id)
    dashcard = next((dc for dc in dashboard["dashcards"] if dc["id"] == positive_id(dashcard_id)), None)
    card = ctx.state.cards.get(positive_id(card_id))
    if dashcard is None or card is None:
        raise not_found()
    if card["id"] != dashcard.get("card_id") and card["id"] not in dashcard["series"]:
        raise not_found()
    body = ctx.body if isinstance(ctx.body, dict) else {}
    declared = {p["id"]: p for p in dashboard["parameters"]}
    card_parameters = []
    for parameter in body.get("parameters") or []:
        parameter_id = parameter.get("id") if isinstance(parameter, dict) else None
        if parameter_id not in declared:
            message = f"Dashboard does not have a parameter with the ID {json.dumps(parameter_id)}."
            raise ApiError(400, {"message": message})
        for mapping in dashcard["parameter_mappings"]:
            if (
                mapping.get("parameter_id") == parameter_id
                and mapping.get("card_id", card["id"]) == card["id"]
            ):
                card_parameters.append(
                    {
                        "id": parameter_id,
                        "type": parameter.get("type") or declared[parameter_id]["type"],
                        "target": mapping["target"],
                        "value": parameter.get("value"),
                    }
                )
    return run_query(ctx.state, card["dataset_query"], card_parameters, "dashboard")


ROUTES = [
    ("POST", r"/api/dashboard", post_dashboard, True),
    (
        "POST",
        r"/api/dashboard/(?P<id>\d+)/dashcard/(?P<dashcard_id>\d+)/card/(?P<card_id>\d+)/query",
        post_dashcard_query,
        True,
    ),
    ("GET", r"/api/dashboard/(?P<id>\d+)", get_dashboard, True),
    ("PUT", r"/api/dashboard/(?P<id>\d+)", put_dashboard, True),
    ("DELETE", r"/api/dashboard/(?P<id>\d+)", delete_dashboard, True),
]
