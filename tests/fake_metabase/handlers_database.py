"""Databases: create with a real connection test, sync from real PostgreSQL, metadata with stable ids."""

from __future__ import annotations

import copy
from typing import Any

from tests.fake_metabase import sql
from tests.fake_metabase.handlers import ApiError, Ctx, Response, Validator, not_found, now_iso, positive_id
from tests.fake_metabase.state import FakeState

MASKED_PASSWORD = "**MetabasePass**"
ENGINES = ("postgres", "h2")
SAMPLE_DATABASE_ID = 1

_POSTGRES_FEATURES = [
    "describe-fks",
    "full-join",
    "window-functions/cumulative",
    "expressions/float",
    "describe-fields",
    "basic-aggregations",
    "temporal-extract",
    "identifiers-with-spaces",
    "actions/custom",
    "window-functions/offset",
    "now",
    "parameterized-sql",
    "convert-timezone",
    "expression-literals",
    "nested-field-columns",
    "standard-deviation-aggregations",
    "date-arithmetics",
    "persist-models",
    "expressions/integer",
    "expressions/date",
    "actions",
    "expression-aggregations",
    "percentile-aggregations",
    "describe-is-nullable",
    "right-join",
    "left-join",
    "expressions/datetime",
    "expressions/text",
    "native-parameters",
    "uuid-type",
    "schemas",
    "nested-queries",
    "describe-indexes",
    "expressions",
    "uploads",
    "set-timezone",
    "regex",
    "case-sensitivity-string-filter-options",
    "binning",
    "metadata/key-constraints",
    "datetime-diff",
    "inner-join",
    "advanced-math-expressions",
    "native-temporal-units",
    "fingerprint",
    "native-parameter-card-reference",
    "split-part",
]
_H2_FEATURES = [
    "basic-aggregations",
    "expressions",
    "native-parameters",
    "nested-queries",
    "left-join",
    "inner-join",
    "binning",
    "regex",
    "schemas",
]

# The H2 Sample Database a fresh Metabase ships, reduced to a few tables (queries on it are not run).
_SAMPLE_TABLES = [
    (
        "PRODUCTS",
        [
            ("ID", "BIGINT", "type/BigInteger", True, None),
            ("TITLE", "CHARACTER VARYING", "type/Text", False, None),
            ("CATEGORY", "CHARACTER VARYING", "type/Text", False, None),
            ("PRICE", "DOUBLE PRECISION", "type/Float", False, None),
        ],
    ),
    (
        "PEOPLE",
        [
            ("ID", "BIGINT", "type/BigInteger", True, None),
            ("NAME", "CHARACTER VARYING", "type/Text", False, None),
            ("EMAIL", "CHARACTER VARYING", "type/Text", False, None),
            ("CITY", "CHARACTER VARYING", "type/Text", False, None),
            ("LATITUDE", "DOUBLE PRECISION", "type/Float", False, None),
            ("LONGITUDE", "DOUBLE PRECISION", "type/Float", False, None),
        ],
    ),
    (
        "ORDERS",
        [
            ("ID", "BIGINT", "type/BigInteger", True, None),
            ("USER_ID", "INTEGER", "type/Integer", False, ["PEOPLE", "ID"]),
            ("PRODUCT_ID", "INTEGER", "type/Integer", False, ["PRODUCTS", "ID"]),
            ("TOTAL", "DOUBLE PRECISION", "type/Float", False, None),
            ("CREATED_AT", "TIMESTAMP", "type/DateTime", False, None),
        ],
    ),
]


def _sample_snapshot() -> list[dict]:
    return [
        {
            "schema": "PUBLIC",
            "name": name,
            "is_view": False,
            "description": None,
            "estimated_row_count": None,
            "columns": [
                {
                    "name": column,
                    "position": position,
                    "database_type": db_type,
                    "base_type": base_type,
                    "nullable": not pk,
                    "pk": pk,
                    "fk_target": fk,
                    "description": None,
                    "auto_increment": pk,
                    "default": None,
                }
                for position, (column, db_type, base_type, pk, fk) in enumerate(columns)
            ],
        }
        for name, columns in _SAMPLE_TABLES
    ]


def create_sample_database(state: FakeState) -> None:
    """Add the H2 Sample Database as id 1, synced, like a fresh instance."""
    timestamp = now_iso()
    database = {
        "id": state.next_id("database"),
        "name": "Sample Database",
        "engine": "h2",
        "details": {"db": "zip:/app/metabase.jar!/sample-database.db;USER=GUEST;PASSWORD=guest"},
        "is_sample": True,
        "is_full_sync": True,
        "is_on_demand": False,
        "auto_run_queries": True,
        "description": "Some example data for you to play around with.",
        "creator_id": None,
        "created_at": timestamp,
        "updated_at": timestamp,
        "dbms_version": {"flavor": "H2", "version": "2.1.214 (2022-06-13)", "semantic-version": [2, 1]},
        "sync_gets_remaining": 0,
        "tables": [],
        "synced_at": timestamp,
    }
    state.databases[database["id"]] = database
    _apply_snapshot(state, database, _sample_snapshot())


def _apply_snapshot(state: FakeState, database: dict, snapshot: list[dict]) -> None:
    """Store a sync result, giving tables and fields ids that stay stable across syncs."""
    db_id = database["id"]
    timestamp = now_iso()
    tables = []
    for table in snapshot:
        table_key = f"{db_id}:{table['schema']}.{table['name']}"
        if table_key not in state.table_ids:
            state.table_ids[table_key] = state.next_id("table")
        for column in table["columns"]:
            field_key = f"{table_key}.{column['name']}"
            if field_key not in state.field_ids:
                state.field_ids[field_key] = state.next_id("field")
        tables.append({**table, "id": state.table_ids[table_key]})
    for table in tables:
        table_key = f"{db_id}:{table['schema']}.{table['name']}"
        for column in table["columns"]:
            column["id"] = state.field_ids[f"{table_key}.{column['name']}"]
            target = column.get("fk_target")  # [table, column] in this schema, or [schema, table, column]
            if target and len(target) == 2:
                target = [table["schema"], *target]
            column["fk_target_field_id"] = (
                state.field_ids.get(f"{db_id}:{'.'.join(target)}") if target else None
            )
    database["tables"] = tables
    database["synced_at"] = timestamp


def sync_database(state: FakeState, database: dict) -> None:
    """Re-introspect the warehouse; raises sql.ConnectionFailed when it cannot be reached."""
    if database["engine"] != "postgres":
        return
    _apply_snapshot(state, database, sql.introspect(database["details"]))


def field_by_id(state: FakeState, field_id: int) -> tuple[dict, dict, dict] | None:
    """Return (database, table, column) for a synced field id, or None."""
    for database in state.databases.values():
        for table in database.get("tables", []):
            for column in table["columns"]:
                if column["id"] == field_id:
                    return database, table, column
    return None


# The postgres driver's `:secret` connection properties (driver/postgres.clj `connection-properties`).
_SECRET_PROPERTIES = ("ssl-root-cert", "ssl-client-cert", "ssl-key", "ssl-key-password")
# The detail keys Metabase never returns: the password and the values of secret properties.
_SENSITIVE_KEYS = ("password", *(f"{name}-value" for name in _SECRET_PROPERTIES))


def _masked_details(details: dict) -> dict:
    # secret.clj `to-json-hydrate-redacted-secrets`: an uploaded secret comes back as the protected
    # password with its options "uploaded"; a local one as its path.
    masked = dict(details)
    for key in _SENSITIVE_KEYS:
        if masked.get(key):
            masked[key] = MASKED_PASSWORD
    for name in _SECRET_PROPERTIES:
        if details.get(f"{name}-value"):
            masked[f"{name}-options"] = "uploaded"
    return masked


def database_json(database: dict, *, status: str | None = None) -> dict:
    """Return a Database as GET /api/database lists it (fixture database.json)."""
    return {
        "uploads_schema_name": None,
        "description": database.get("description"),
        "features": list(_POSTGRES_FEATURES if database["engine"] == "postgres" else _H2_FEATURES),
        "uploads_table_prefix": None,
        "cache_field_values_schedule": "0 0 5 * * ? *",
        "router_database_id": None,
        "timezone": "UTC",
        "is_attached_dwh": False,
        "auto_run_queries": database.get("auto_run_queries", True),
        "metadata_sync_schedule": "0 11 * * * ? *",
        "name": database["name"],
        "settings": None,
        "caveats": None,
        "creator_id": database.get("creator_id"),
        "is_full_sync": database.get("is_full_sync", True),
        "updated_at": database["updated_at"],
        "provider_name": None,
        "native_permissions": "write",
        "cache_ttl": None,
        "details": _masked_details(database["details"]),
        "is_sample": database["is_sample"],
        "id": database["id"],
        "is_on_demand": database.get("is_on_demand", False),
        "engine": database["engine"],
        "initial_sync_status": status or _status(database),
        "is_audit": False,
        "dbms_version": database.get("dbms_version"),
        "uploads_enabled": False,
        "refingerprint": False,
        "router_user_attribute": None,
        "created_at": database["created_at"],
        "points_of_interest": None,
        "can_upload": False,
    }


def _status(database: dict) -> str:
    return "incomplete" if database.get("sync_gets_remaining", 0) > 0 else "complete"


def _table_json(database: dict, table: dict, *, with_fields: bool) -> dict:
    synced_at = database.get("synced_at") or database["created_at"]
    body: dict[str, Any] = {
        "description": table.get("description"),
        "entity_type": sql.entity_type_for(table["name"]),
        "view_count": 0,
        "schema": table["schema"],
        "is_writable": not table["is_view"],
        "database_require_filter": None,
        "show_in_getting_started": False,
        "name": table["name"],
        "caveats": None,
        "segments": [],
        "updated_at": synced_at,
        "active": True,
        "id": table["id"],
        "db_id": database["id"],
        "archived_at": None,
        "visibility_type": None,
        "field_order": "database",
        "deactivated_at": None,
        "data_authority": "unconfigured",
        "is_upload": False,
        "initial_sync_status": _status(database),
        "display_name": sql.humanize(table["name"]),
        "metrics": [],
        "created_at": synced_at,
        "estimated_row_count": table.get("estimated_row_count"),
        "points_of_interest": None,
    }
    if with_fields:
        body["fields"] = [_field_json(table, column, synced_at) for column in table["columns"]]
    return body


def _field_json(table: dict, column: dict, synced_at: str) -> dict:
    return {
        "description": column.get("description"),
        "database_type": column["database_type"],
        "semantic_type": sql.semantic_type_for(column),
        "table_id": table["id"],
        "coercion_strategy": None,
        "database_indexed": None,
        "name": column["name"],
        "fingerprint_version": 5,
        "has_field_values": "list" if column["base_type"] in ("type/Text", "type/Boolean") else "none",
        "database_is_pk": column["pk"],
        "settings": None,
        "caveats": None,
        "fk_target_field_id": column.get("fk_target_field_id"),
        "updated_at": synced_at,
        "custom_position": 0,
        "database_default": column.get("default"),
        "effective_type": column["base_type"],
        "active": True,
        "nfc_path": None,
        "parent_id": None,
        "id": column["id"],
        "last_analyzed": synced_at,
        "database_partitioned": None,
        "database_is_auto_increment": column.get("auto_increment", False),
        "json_unfolding": False,
        "position": column["position"],
        "visibility_type": "normal",
        "target": None,
        "preview_display": True,
        "database_is_generated": False,
        "display_name": sql.humanize(column["name"]),
        "database_position": column["position"],
        "database_required": not column.get("nullable", True) and not column.get("default"),
        "database_is_nullable": column.get("nullable", True),
        "fingerprint": None,
        "created_at": synced_at,
        "base_type": column["base_type"],
        "points_of_interest": None,
    }


def _database(ctx: Ctx, id: str) -> dict:
    database = ctx.state.databases.get(positive_id(id))
    if database is None:
        raise not_found()
    return database


def _check_details(details: dict) -> str | None:
    """Test a connection as Metabase does before saving; return the server version; raises ApiError 400."""
    try:
        return sql.check_connection(details)
    except sql.ConnectionFailed as exc:
        raise ApiError(400, exc.body) from exc


def _validate_database_body(ctx: Ctx, *, creating: bool) -> None:
    check = Validator(ctx.body)
    check.non_blank("name", required=creating, nullable=not creating)
    engine = check.body.get("engine")
    # POST requires an engine; PUT's is `[:maybe DBEngineString]`: null means "keep it".
    if (creating or check.body.get("engine") is not None) and engine not in ENGINES:
        check.fail(
            "engine",
            "value must be a valid database engine.",
            f"valid database engine, received: {engine!r}",
        )
    check.mapping("details", required=creating, nullable=not creating)
    check.boolean("is_full_sync")
    check.boolean("is_on_demand")
    check.boolean("auto_run_queries")
    check.raise_if_failed()
    if "cache_ttl" in check.body and check.body["cache_ttl"] is not None:
        raise ApiError(402, "Setting cache_ttl is a paid feature not currently available to your instance.")


def register(
    state: FakeState, name: str, details: dict, *, creator_id: int | None, sync_polls: int, **options: Any
) -> dict:
    """Test the connection, save the database and sync it; raises ApiError 400 on connection failure."""
    details = copy.deepcopy(details)
    engine = options.get("engine", "postgres")
    version = None
    if engine == "postgres":
        # api `test-connection-details`: unless `ssl` is true, SSL is tried first and kept if it works.
        if details.get("ssl") is not True:
            try:
                version = sql.check_connection({**details, "ssl": True})
                details["ssl"] = True
            except sql.ConnectionFailed:
                pass
        if version is None:
            version = _check_details(details)
    timestamp = now_iso()
    database = {
        "id": 0,
        "name": name,
        "engine": engine,
        "details": details,
        "is_sample": False,
        "is_full_sync": options.get("is_full_sync", True) is not False,
        "is_on_demand": bool(options.get("is_on_demand", False)),
        "auto_run_queries": options.get("auto_run_queries", True) is not False,
        "description": None,
        "creator_id": creator_id,
        "created_at": timestamp,
        "updated_at": timestamp,
        "dbms_version": _dbms_version(version),
        "sync_gets_remaining": sync_polls,
        "tables": [],
    }
    try:
        sync_database(state, database)
    except sql.ConnectionFailed as exc:
        raise ApiError(400, exc.body) from exc
    # Assign the id only once everything worked: a failed create consumes no id, like a rolled-back insert.
    database["id"] = state.next_id("database")
    if database["tables"]:
        # Table/field ids were keyed under the placeholder id 0; re-key them under the real id.
        _rekey(state, database)
    state.databases[database["id"]] = database
    return database


def _rekey(state: FakeState, database: dict) -> None:
    for registry in (state.table_ids, state.field_ids):
        for key in [k for k in registry if k.startswith("0:")]:
            registry[f"{database['id']}:{key[2:]}"] = registry.pop(key)


def post_database(ctx: Ctx) -> Response:
    """POST /api/database: test the connection for real, then save and sync."""
    creator = ctx.require_superuser()
    _validate_database_body(ctx, creating=True)
    body = ctx.body
    database = register(
        ctx.state,
        body["name"],
        body["details"],
        creator_id=creator["id"],
        sync_polls=ctx.sync_polls,
        engine=body["engine"],
        is_full_sync=body.get("is_full_sync", True),
        is_on_demand=body.get("is_on_demand", False),
        auto_run_queries=body.get("auto_run_queries", True),
    )
    return Response(200, database_json(database, status="incomplete"))


def _dbms_version(version: str | None) -> dict | None:
    if version is None:
        return None
    parts = [int(p) for p in version.split()[0].split(".")[:2] if p.isdigit()]
    return {"flavor": "PostgreSQL", "version": version, "semantic-version": parts}


def list_databases(ctx: Ctx) -> Response:
    """GET /api/database: wrapped `{data, total}`, ordered by name like Metabase."""
    databases = sorted(ctx.state.databases.values(), key=lambda d: (d["name"].lower(), d["id"]))
    include_tables = "tables" in (ctx.query.get("include") or [])
    data = []
    for database in databases:
        body = database_json(database)
        if include_tables:
            body["tables"] = [_table_json(database, t, with_fields=False) for t in database["tables"]]
        data.append(body)
    return Response(200, {"data": data, "total": len(data)})


def get_database(ctx: Ctx, id: str) -> Response:
    """GET /api/database/:id; each GET advances the simulated initial sync."""
    database = _database(ctx, id)
    status = _status(database)
    if database.get("sync_gets_remaining", 0) > 0:
        database["sync_gets_remaining"] -= 1
    body = database_json(database, status=status)
    body["schedules"] = {
        "metadata_sync": {"schedule_type": "hourly", "schedule_minute": 11},
        "cache_field_values": {"schedule_type": "daily", "schedule_hour": 5, "schedule_minute": 0},
    }
    body["can-manage"] = True
    include = (ctx.query.get("include") or [""])[-1]
    if include in ("tables", "tables.fields"):
        body["tables"] = [
            _table_json(database, t, with_fields=include == "tables.fields") for t in database["tables"]
        ]
    return Response(200, body)


def get_metadata(ctx: Ctx, id: str) -> Response:
    """GET /api/database/:id/metadata: the synced tables (views too) and their fields."""
    database = _database(ctx, id)
    body = database_json(database)
    for key in ("native_permissions", "can_upload", "router_user_attribute"):
        body.pop(key, None)
    # Until the initial sync is done no table is known yet: a client must wait for "complete" first.
    tables = database["tables"] if _status(database) == "complete" else []
    body["tables"] = sorted(
        (_table_json(database, t, with_fields=True) for t in tables), key=lambda t: t["name"]
    )
    return Response(200, body)


def _db_summary(database: dict) -> dict:
    body = database_json(database)
    for key in ("native_permissions", "can_upload", "router_user_attribute", "router_database_id"):
        body.pop(key, None)
    return body


def list_tables(ctx: Ctx) -> Response:
    """GET /api/table: every synced table (views too), each with its database as `db` (fixture table.json)."""
    tables = []
    for database in sorted(ctx.state.databases.values(), key=lambda d: d["id"]):
        if _status(database) != "complete":
            continue
        for table in database["tables"]:
            body = _table_json(database, table, with_fields=False)
            for key in ("segments", "metrics"):
                body.pop(key)
            tables.append({**body, "db": _db_summary(database)})
    return Response(200, tables)


def get_table_query_metadata(ctx: Ctx, id: str) -> Response:
    """GET /api/table/:id/query_metadata: one table with its fields and database."""
    table_id = int(id)
    for database in ctx.state.databases.values():
        for table in database["tables"]:
            if table["id"] == table_id:
                return Response(
                    200, {**_table_json(database, table, with_fields=True), "db": _db_summary(database)}
                )
    raise not_found()


def get_schemas(ctx: Ctx, id: str) -> Response:
    database = _database(ctx, id)
    return Response(200, sorted({t["schema"] for t in database["tables"]}))


def put_database(ctx: Ctx, id: str) -> Response:
    """PUT /api/database/:id: partial update; the masked password keeps the stored one."""
    _validate_database_body(ctx, creating=False)  # defendpoint checks the body before the handler runs
    ctx.require_superuser()
    database = _database(ctx, id)
    body = ctx.body
    if body.get("details") is not None:
        # upsert-sensitive-fields: the sent keys are merged over the stored ones (a key left out keeps its
        # value, the password included), and a masked password means "unchanged".
        details = {**copy.deepcopy(database["details"]), **copy.deepcopy(body["details"])}
        for key in _SENSITIVE_KEYS:
            if details.get(key) == MASKED_PASSWORD:
                details[key] = database["details"].get(key)
        if details != database["details"] and (body.get("engine") or database["engine"]) == "postgres":
            _check_details(details)
        database["details"] = details
    for key in ("name", "engine", "is_full_sync", "is_on_demand", "auto_run_queries", "description"):
        if key in body and (body[key] is not None or key == "description"):
            database[key] = body[key]
    database["updated_at"] = now_iso()
    return Response(200, database_json(database))


def delete_database(ctx: Ctx, id: str) -> Response:
    """DELETE /api/database/:id: cascades to its cards and the dashcards showing them."""
    ctx.require_superuser()
    database = _database(ctx, id)
    del ctx.state.databases[database["id"]]
    doomed = {cid for cid, card in ctx.state.cards.items() if card["database_id"] == database["id"]}
    for card_id in doomed:
        del ctx.state.cards[card_id]
    for dashboard in ctx.state.dashboards.values():
        dashboard["dashcards"] = [dc for dc in dashboard["dashcards"] if dc.get("card_id") not in doomed]
    return Response(204, empty=True)


def sync_schema(ctx: Ctx, id: str) -> Response:
    """POST /api/database/:id/sync_schema: re-introspect now (real Metabase does it in the background)."""
    ctx.require_superuser()
    database = _database(ctx, id)
    try:
        sync_database(ctx.state, database)
    except sql.ConnectionFailed as exc:
        raise ApiError(422, exc.body["message"]) from exc
    return Response(200, {"status": "ok"})


def rescan_values(ctx: Ctx, id: str) -> Response:
    ctx.require_superuser()
    _database(ctx, id)
    return Response(200, {"status": "ok"})


def dismiss_spinner(ctx: Ctx, id: str) -> Response:
    ctx.require_superuser()
    database = _database(ctx, id)
    database["sync_gets_remaining"] = 0
    return Response(200, {"status": "ok"})


ROUTES = [
    ("POST", r"/api/database", post_database, True),
    ("GET", r"/api/database", list_databases, True),
    ("GET", r"/api/database/(?P<id>\d+)", get_database, True),
    ("PUT", r"/api/database/(?P<id>\d+)", put_database, True),
    ("DELETE", r"/api/database/(?P<id>\d+)", delete_database, True),
    ("GET", r"/api/database/(?P<id>\d+)/metadata", get_metadata, True),
    ("GET", r"/api/database/(?P<id>\d+)/schemas", get_schemas, True),
    ("GET", r"/api/table", list_tables, True),
    ("GET", r"/api/table/(?P<id>\d+)/query_metadata", get_table_query_metadata, True),
    ("POST", r"/api/database/(?P<id>\d+)/sync_schema", sync_schema, True),
    ("POST", r"/api/database/(?P<id>\d+)/rescan_values", rescan_values, True),
    ("POST", r"/api/database/(?P<id>\d+)/dismiss_spinner", dismiss_spinner, True),
]
