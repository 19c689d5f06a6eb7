"""Collections: the root stub, personal collections, Trash, archiving, and collection items."""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from tests.fake_metabase.handlers import (
    ApiError,
    Ctx,
    Response,
    Validator,
    nano_id,
    not_found,
    now_iso,
)
from tests.fake_metabase.state import FakeState

ROOT_NAME = "Our analytics"
# `?models=` values the endpoint accepts, and the ones it queries on OSS (sorted, as it reports them).
VALID_MODEL_PARAMS = frozenset(
    {"card", "dataset", "document", "metric", "collection", "dashboard", "pulse", "snippet", "no_models"}
    | {"timeline", "table"}
)
QUERIED_MODELS = (
    "card",
    "collection",
    "dashboard",
    "dataset",
    "document",
    "metric",
    "pulse",
    "snippet",
    "timeline",
)


def slugify(name: str) -> str:
    """Return Metabase's collection slug: lowercase, `_` for separators, non-ASCII percent-encoded."""
    slug = re.sub(r"[^\w]+", "_", name.strip().lower()).strip("_")
    return urllib.parse.quote(slug, safe="_")


def root_stub() -> dict:
    """Return the root collection as `GET /api/collection` lists it first."""
    return {
        "authority_level": None,
        "can_write": True,
        "name": ROOT_NAME,
        "is_remote_synced": False,
        "effective_ancestors": [],
        "can_restore": False,
        "effective_location": None,
        "parent_id": None,
        "id": "root",
        "is_personal": False,
        "can_delete": False,
    }


def hydrated_root() -> dict:
    """Return the root collection as hydrated into a card or dashboard with `collection_id` null."""
    return {
        "metabase.collections.models.collection.root/is-root?": True,
        "authority_level": None,
        "name": ROOT_NAME,
        "is_personal": False,
        "id": "root",
        "can_write": True,
    }


def _insert(state: FakeState, **fields: Any) -> dict:
    collection = {
        "id": state.next_id("collection"),
        "name": fields["name"],
        "description": fields.get("description"),
        "slug": slugify(fields["name"]),
        "entity_id": nano_id(),
        "location": fields.get("location", "/"),
        "archived": False,
        "archived_directly": None,
        "archive_operation_id": None,
        "personal_owner_id": fields.get("personal_owner_id"),
        "namespace": fields.get("namespace"),
        "type": fields.get("type"),
        "authority_level": None,
        "is_sample": False,
        "created_at": now_iso(),
    }
    state.collections[collection["id"]] = collection
    return collection


def create_trash_collection(state: FakeState) -> dict:
    return _insert(state, name="Trash", type="trash")


def create_personal_collection(state: FakeState, user: dict) -> dict:
    # Imported here: handlers_auth creates personal collections through this module.
    from tests.fake_metabase.handlers_auth import common_name

    return _insert(state, name=f"{common_name(user)}'s Personal Collection", personal_owner_id=user["id"])


def _is_personal(state: FakeState, collection: dict) -> bool:
    if collection.get("personal_owner_id"):
        return True
    top = _ancestor_ids(collection)
    return bool(top) and bool(state.collections.get(top[0], {}).get("personal_owner_id"))


def _ancestor_ids(collection: dict) -> list[int]:
    return [int(part) for part in collection["location"].strip("/").split("/") if part]


def collection_json(state: FakeState, collection: dict) -> dict:
    """Return a collection as `GET /api/collection` lists it (fixture collection.json)."""
    return {
        "authority_level": collection["authority_level"],
        "description": collection["description"],
        "archived": collection["archived"],
        "slug": collection["slug"],
        "archive_operation_id": collection["archive_operation_id"],
        "can_write": True,
        "name": collection["name"],
        "is_remote_synced": False,
        "personal_owner_id": collection["personal_owner_id"],
        "type": collection["type"],
        "is_sample": False,
        "id": collection["id"],
        "archived_directly": collection["archived_directly"],
        "entity_id": collection["entity_id"],
        "location": collection["location"],
        "namespace": collection["namespace"],
        "is_personal": _is_personal(state, collection),
        "created_at": collection["created_at"],
        "can_delete": bool(collection["archived"]),
    }


def hydrated_collection(state: FakeState, collection_id: int | None) -> dict:
    """Return the `collection` Metabase hydrates into a card or dashboard."""
    if collection_id is None or collection_id not in state.collections:
        return hydrated_root()
    return {**collection_json(state, state.collections[collection_id]), "effective_ancestors": []}


def _detail_json(state: FakeState, collection: dict) -> dict:
    ancestors = [hydrated_root()] + [
        {
            "metabase.collections.models.collection.root/is-root?": False,
            "id": ancestor_id,
            "name": state.collections[ancestor_id]["name"],
            "authority_level": None,
            "personal_owner_id": state.collections[ancestor_id]["personal_owner_id"],
            "type": state.collections[ancestor_id]["type"],
            "is_personal": _is_personal(state, state.collections[ancestor_id]),
            "can_write": True,
        }
        for ancestor_id in _ancestor_ids(collection)
        if ancestor_id in state.collections
    ]
    parents = _ancestor_ids(collection)
    return {
        **collection_json(state, collection),
        "effective_ancestors": ancestors,
        "effective_location": collection["location"],
        "parent_id": parents[-1] if parents else None,
        "can_restore": bool(collection["archived_directly"]),
    }


def collection_for_write(state: FakeState, collection_id: Any, key: str = "collection_id") -> int | None:
    """Return a valid target collection id (None = root); raises 400 for `"root"`, 404 when missing."""
    if collection_id is None:
        return None
    if not isinstance(collection_id, int) or isinstance(collection_id, bool) or collection_id <= 0:
        raise ApiError(
            400,
            {
                "errors": {key: "nullable value must be an integer greater than zero."},
                "specific-errors": {key: [f"should be a positive int, received: {collection_id!r}"]},
            },
        )
    if collection_id not in state.collections:
        raise not_found()
    return collection_id


def _get(ctx: Ctx, id: str) -> dict:
    if not id.isdigit() or int(id) not in ctx.state.collections:
        raise not_found()
    return ctx.state.collections[int(id)]


def list_collections(ctx: Ctx) -> Response:
    """GET /api/collection: a bare list, root stub first; `archived=true` lists Trash and archived ones."""
    archived = ctx.query_flag("archived")
    personal_only = ctx.query_flag("personal-only")

    def listed(collection: dict) -> bool:
        if collection["namespace"] is not None or (personal_only and not collection["personal_owner_id"]):
            return False
        if collection["type"] == "trash":
            return archived
        return bool(collection["archived"]) == archived

    rows = [c for c in ctx.state.collections.values() if listed(c)]
    # Official first, then normal before the Trash, then by lower-cased name (select-collections' order-by).
    rows.sort(key=lambda c: (c["type"] is not None, c["name"].lower(), c["id"]))
    body = [{**collection_json(ctx.state, c), "parent_id": _parent_id(c)} for c in rows]
    return Response(200, body if archived or personal_only else [root_stub(), *body])


def _parent_id(collection: dict) -> int | None:
    parents = _ancestor_ids(collection)
    return parents[-1] if parents else None


def get_collection(ctx: Ctx, id: str) -> Response:
    if id == "root":
        return Response(200, {**root_stub(), "effective_ancestors": [], "effective_location": None})
    if id == "trash":
        return Response(200, _detail_json(ctx.state, ctx.state.trash_collection()))
    return Response(200, _detail_json(ctx.state, _get(ctx, id)))


def post_collection(ctx: Ctx) -> Response:
    """POST /api/collection: create under `parent_id` (null = root)."""
    check = Validator(ctx.body)
    check.non_blank("name", required=True, nullable=False)
    check.non_blank("description")
    check.one_of("authority_level", {"official"})
    check.non_blank("namespace")
    check.positive_int("parent_id")
    body = check.body
    check.raise_if_failed()
    if body.get("authority_level") == "official":
        raise ApiError(
            402, "Official Collections is a paid feature not currently available to your instance."
        )
    location = "/"
    if body.get("parent_id") is not None:
        parent = ctx.state.collections.get(body["parent_id"])
        if parent is None:
            raise not_found()
        location = f"{parent['location']}{parent['id']}/"
    # entity_id from the client is ignored: the model generates one on insert.
    collection = _insert(
        ctx.state,
        name=body["name"],
        description=body.get("description"),
        location=location,
        namespace=body.get("namespace"),
    )
    return Response(200, _detail_json(ctx.state, collection))


def _descendants(state: FakeState, collection: dict) -> list[dict]:
    prefix = f"{collection['location']}{collection['id']}/"
    return [c for c in state.collections.values() if c["location"].startswith(prefix)]


def _set_archived(state: FakeState, collection: dict, archived: bool) -> None:
    """Archive or restore a collection with everything inside it (items get archived_directly false)."""
    inside = [collection, *_descendants(state, collection)]
    ids = {c["id"] for c in inside}
    operation = nano_id() if archived else None
    for member in inside:
        direct = member is collection
        if archived:
            if member["archived"] and not direct:
                continue
            member.update(archived=True, archived_directly=direct, archive_operation_id=operation)
        elif direct or not member["archived_directly"]:
            member.update(archived=False, archived_directly=None, archive_operation_id=None)
    for item in (*state.cards.values(), *state.dashboards.values()):
        if item.get("collection_id") not in ids:
            continue
        if archived and not item["archived"]:
            item.update(archived=True, archived_directly=False)
        elif not archived and item["archived"] and not item["archived_directly"]:
            item.update(archived=False, archived_directly=False)


def put_collection(ctx: Ctx, id: str) -> Response:
    """PUT /api/collection/:id: rename, describe, move, archive (omitted `archived` means unarchived)."""
    # defendpoint checks the body before the handler looks the collection up or checks permissions.
    check = Validator(ctx.body)
    check.non_blank("name")
    check.non_blank("description")
    check.boolean("archived")
    check.one_of("authority_level", {"official"})
    check.positive_int("parent_id")
    body = check.body
    check.raise_if_failed()
    collection = _get(ctx, id)
    if collection["type"] == "trash":
        raise ApiError(403, "You don't have permissions to do that.")
    if collection["personal_owner_id"] and (
        body.get("archived") or "parent_id" in body or body.get("name") not in (None, collection["name"])
    ):
        # A personal collection keeps its name and place; only its description may change.
        raise ApiError(403, "You don't have permissions to do that.")
    if body.get("name") is not None:
        collection["name"] = body["name"]
        collection["slug"] = slugify(body["name"])
    if "description" in body:
        collection["description"] = body["description"]
    # The REST endpoint defaults an omitted `archived` to false; archiving wins over moving (a `condp`).
    archived = bool(body.get("archived", False))
    if archived != bool(collection["archived"]):
        _set_archived(ctx.state, collection, archived)
    elif "parent_id" in body:
        _move(ctx.state, collection, body["parent_id"])
    return Response(200, _detail_json(ctx.state, collection))


def _move(state: FakeState, collection: dict, parent_id: int | None) -> None:
    if parent_id is None:
        new_location = "/"
    else:
        parent = state.collections.get(parent_id)
        if parent is None:
            raise not_found()
        if parent["id"] == collection["id"] or parent["location"].startswith(
            f"{collection['location']}{collection['id']}/"
        ):
            raise ApiError(400, "You can't move a Collection into itself or into one of its descendants.")
        new_location = f"{parent['location']}{parent['id']}/"
    old_prefix = f"{collection['location']}{collection['id']}/"
    new_prefix = f"{new_location}{collection['id']}/"
    for child in _descendants(state, collection):
        child["location"] = new_prefix + child["location"][len(old_prefix) :]
    collection["location"] = new_location


def _card_model(card: dict) -> str:
    return {"model": "dataset", "metric": "metric"}.get(card["type"], "card")


def get_items(ctx: Ctx, id: str) -> Response:
    """GET /api/collection/:id|root|trash/items: wrapped `{total, data, models, limit, offset}`.

    As collections_rest/api.clj: an item directly trashed shows only in the Trash; `models` echoes the models
    queried (all of them when none is asked for); `total` is null when nothing matches; sorting is by
    lower-cased name then id; paging needs both `limit` and `offset`.
    """
    # Imported here: the card and dashboard modules hydrate collections through this module.
    from tests.fake_metabase.handlers_card import card_item_json
    from tests.fake_metabase.handlers_dashboard import dashboard_item_json

    state = ctx.state
    archived = ctx.query_flag("archived")
    models = sorted({m for m in ctx.query.get("models", []) if m})
    unknown = [m for m in models if m not in VALID_MODEL_PARAMS]
    if unknown:
        raise ApiError(
            400,
            {
                "errors": {"models": "nullable value must be a valid collection item model, or sequence"},
                "specific-errors": {"models": [f"should be a valid model, received: {unknown[0]!r}"]},
            },
        )
    in_trash = id == "trash"
    if id == "root":
        collection_id, location = None, "/"
    elif in_trash:
        collection_id, location = state.trash_collection()["id"], None
    else:
        collection = _get(ctx, id)
        collection_id, location = collection["id"], f"{collection['location']}{collection['id']}/"
    queried = [m for m in QUERIED_MODELS if not models or m in models]

    def belongs(item: dict) -> bool:
        if item["archived"] != archived:
            return False
        if in_trash:
            return bool(item["archived_directly"])
        return item["collection_id"] == collection_id and not item["archived_directly"]

    items: list[dict] = []
    if "collection" in queried:
        for child in state.collections.values():
            if child["type"] == "trash" or bool(child["archived"]) != archived:
                continue
            here = child["archived_directly"] if in_trash else child["location"] == location
            if here and not (id == "root" and child["personal_owner_id"]):
                items.append(_collection_item_json(state, child))
    for card in state.cards.values():
        # Dashboard questions live inside their dashboard, not in the collection listing.
        if _card_model(card) in queried and belongs(card) and card.get("dashboard_id") is None:
            items.append(card_item_json(state, card))
    if "dashboard" in queried:
        items.extend(dashboard_item_json(state, d) for d in state.dashboards.values() if belongs(d))
    items.sort(key=lambda i: (str(i["name"]).lower(), i["id"]))
    for item in items:
        item["collection_id"] = collection_id  # presented "in" the collection asked about
    total = len(items) or None
    limit = _int_param(ctx, "limit")
    offset = _int_param(ctx, "offset")
    if limit is not None and offset is not None:
        items = [] if limit == 0 else items[offset : offset + limit]
    return Response(200, {"total": total, "data": items, "models": queried, "limit": limit, "offset": offset})


def _int_param(ctx: Ctx, name: str) -> int | None:
    values = ctx.query.get(name)
    if not values:
        return None
    try:
        return max(int(values[-1]), 0)
    except ValueError as exc:
        raise ApiError(400, {"errors": {name: "value must be an integer."}}) from exc


def _collection_item_json(state: FakeState, collection: dict) -> dict:
    body = {
        "description": collection["description"],
        "archived": collection["archived"],
        "can_write": True,
        "name": collection["name"],
        "is_remote_synced": False,
        "type": collection["type"],
        "can_restore": bool(collection["archived_directly"]),
        "id": collection["id"],
        "entity_id": collection["entity_id"],
        "authority_level": None,
        "location": collection["location"],
        "effective_location": collection["location"],
        "namespace": collection["namespace"],
        "is_tenant_collection": False,
        "here": [],
        "below": [],
        "can_delete": bool(collection["archived"]),
        "model": "collection",
    }
    if collection["personal_owner_id"]:  # dropped from the item unless the collection is personal
        body["personal_owner_id"] = collection["personal_owner_id"]
    return body


ROUTES = [
    ("GET", r"/api/collection", list_collections, True),
    ("POST", r"/api/collection", post_collection, True),
    ("GET", r"/api/collection/(?P<id>root|trash|\d+)", get_collection, True),
    ("PUT", r"/api/collection/(?P<id>\d+)", put_collection, True),
    ("GET", r"/api/collection/(?P<id>root|trash|\d+)/items", get_items, True),
]
