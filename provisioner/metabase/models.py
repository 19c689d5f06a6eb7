"""pydantic models of Metabase JSON, both directions.

Read models ignore unknown keys (every Metabase release adds some). Write models are dumped with
`model_dump(mode="json", exclude_none=True)`; the few fields where `null` means something (a
card's `collection_id: null` is the root collection, a virtual dashcard has `card_id: null`) are
listed in `_send_null` and survive the dump when they were set explicitly. Kebab-case keys
(`template-tags`, `display-name`, `widget-type`, `has-user-setup`) are aliases, used on the wire.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)

from provisioner.errors import MetabaseError, MetabaseNotFound
from provisioner.mbql.normal import copy_plain

CollectionId = int | Literal["root"]


class _Read(BaseModel):
    """A Metabase answer: lenient, unknown keys ignored."""

    model_config = ConfigDict(extra="ignore", validate_by_name=True, validate_by_alias=True)


class _Write(BaseModel):
    """A request body: exact, dumped by alias; `_send_null` fields keep an explicit None."""

    model_config = ConfigDict(
        extra="forbid", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    # Fields whose explicit None is meaningful to Metabase and must be sent as null.
    _send_null: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _keep_meaningful_nulls(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        out = handler(self)
        if not isinstance(out, dict) or not info.exclude_none:
            return out
        for name in self._send_null & self.model_fields_set:
            if getattr(self, name) is None:
                field = type(self).model_fields[name]
                alias = field.serialization_alias or field.alias
                out[alias if alias and info.by_alias is not False else name] = None
        return out


def unwrap_list(payload: Any) -> list[Any]:
    """The items of a Metabase list answer, bare (`[...]`) or wrapped (`{"data": [...], "total": N}`)."""
    # Since ~v0.41 several list endpoints wrap their items in `data`; recordings and old versions do not.
    if isinstance(payload, list):
        return payload
    if isinstance(payload, Mapping) and isinstance(payload.get("data"), list):
        return list(payload["data"])
    raise ValueError(f"expected a list or an object with a `data` list, got {type(payload).__name__}")


# --- health, properties, setup, auth ---------------------------------------------------------


class HealthStatus(_Read):
    """`GET /api/health`: "ok" once initialised, "initializing" (with progress 0..1) while starting."""

    status: str
    progress: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class VersionInfo(_Read):
    tag: str | None = None
    date: str | None = None
    hash: str | None = None


class SessionProperties(_Read):
    """The public settings from `GET /api/session/properties` that provisioning needs."""

    has_user_setup: bool = Field(default=False, alias="has-user-setup")
    setup_token: str | None = Field(default=None, alias="setup-token")
    version: VersionInfo = Field(default_factory=VersionInfo)
    site_name: str | None = Field(default=None, alias="site-name")
    anon_tracking_enabled: bool | None = Field(default=None, alias="anon-tracking-enabled")

    @property
    def version_tag(self) -> str | None:
        return self.version.tag


def _reveal(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


class SetupUser(_Write):
    """The first admin, created by `POST /api/setup`."""

    first_name: str | None = None
    last_name: str | None = None
    email: str
    password: SecretStr

    @field_serializer("password")
    def _password(self, value: SecretStr) -> str | None:
        return _reveal(value)  # the request body needs the value; repr() still hides it


class SetupPrefs(_Write):
    # No `allow_tracking`: the endpoint's schema has none (setup/api.clj reads only site_name and
    # site_locale, and turns tracking on); it is turned off through its setting after setup.
    site_name: str
    site_locale: str | None = None


class SettingValue(_Write):
    """Body of `PUT /api/setting/:key`."""

    value: bool | int | str


class SetupRequest(_Write):
    token: str
    user: SetupUser
    prefs: SetupPrefs


class LoginRequest(_Write):
    username: str
    password: SecretStr

    @field_serializer("password")
    def _password(self, value: SecretStr) -> str | None:
        return _reveal(value)


class SessionCreated(_Read):
    """Answer of `POST /api/setup` and `POST /api/session`: the session id."""

    id: str


class GroupMembership(_Read):
    id: int


class User(_Read):
    """`GET /api/user/current`: an admin user, or the virtual user behind an API key."""

    id: int
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    common_name: str | None = None
    is_superuser: bool = False
    type: str | None = None  # "api-key" for the user an API key acts as (newer versions)
    user_group_memberships: list[GroupMembership] = Field(default_factory=list)


class PermissionGroup(_Read):
    id: int
    name: str
    member_count: int | None = None


class ApiKeyGroup(_Read):
    id: int
    name: str | None = None


class ApiKey(_Read):
    """An API key as listed: its secret is never included."""

    id: int
    name: str
    group: ApiKeyGroup | None = None
    masked_key: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class ApiKeyCreated(_Read):
    """Answer of create/regenerate: the only time Metabase shows the key itself."""

    # Newest releases answer a regenerate with only id, unmasked_key, masked_key and prefix (no name or
    # group, unlike create): nothing else may be required.
    id: int
    unmasked_key: SecretStr
    name: str | None = None
    group: ApiKeyGroup | None = None
    masked_key: str | None = None


class ApiKeyCreate(_Write):
    name: str
    group_id: int


# --- databases ---------------------------------------------------------------------------------


class Database(_Read):
    """A registered database; `details.password` comes back masked as `**MetabasePass**`."""

    id: int
    name: str
    engine: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    initial_sync_status: str | None = None
    is_sample: bool = False
    is_full_sync: bool | None = None
    is_audit: bool = False

    @field_validator("details", mode="before")
    @classmethod
    def _details_may_be_null(cls, value: Any) -> Any:
        return {} if value is None else value  # callers without write access get no details


class PostgresDetails(_Write):
    """Connection details of a PostgreSQL database as Metabase stores them."""

    model_config = ConfigDict(extra="allow", serialize_by_alias=True, validate_by_name=True)

    host: str
    port: int = 5432
    dbname: str
    user: str
    password: SecretStr | None = None
    ssl: bool = False
    # driver/postgres.clj `connection-properties`: "ssl-mode" (allow ... verify-full), the secret
    # "ssl-root-cert" sent as its "-options" ("uploaded") and "-value" (the PEM), "schema-filters"
    # ("-type" all/inclusion/exclusion, "-patterns" comma-separated, `*` a wildcard), and
    # "additional-options", appended to the JDBC URL (sql_jdbc/common.clj `handle-additional-options`).
    ssl_mode: str | None = Field(default=None, alias="ssl-mode")
    ssl_root_cert_options: str | None = Field(default=None, alias="ssl-root-cert-options")
    ssl_root_cert_value: str | None = Field(default=None, alias="ssl-root-cert-value")
    schema_filters_type: str = Field(default="all", alias="schema-filters-type")
    schema_filters_patterns: str | None = Field(default=None, alias="schema-filters-patterns")
    tunnel_enabled: bool = Field(default=False, alias="tunnel-enabled")
    advanced_options: bool = Field(default=False, alias="advanced-options")
    additional_options: str | None = Field(default=None, alias="additional-options")

    @field_serializer("password")
    def _password(self, value: SecretStr | None) -> str | None:
        return _reveal(value)

    def as_details(self) -> dict[str, Any]:
        """The `details` map for DatabaseCreate / DatabaseUpdate (password included)."""
        return self.model_dump(mode="json", exclude_none=True)


class DatabaseSchedule(_Write):
    schedule_type: str
    schedule_hour: int | None = None


class DatabaseCreate(_Write):
    name: str
    engine: str = "postgres"
    details: dict[str, Any]
    is_full_sync: bool | None = True
    is_on_demand: bool | None = None
    auto_run_queries: bool | None = None
    schedules: dict[str, DatabaseSchedule] | None = None


class DatabaseUpdate(_Write):
    name: str | None = None
    engine: str | None = None
    details: dict[str, Any] | None = None
    is_full_sync: bool | None = None
    auto_run_queries: bool | None = None


class FieldMetadata(_Read):
    id: int
    name: str
    display_name: str | None = None
    base_type: str | None = None
    effective_type: str | None = None
    semantic_type: str | None = None
    database_type: str | None = None
    table_id: int | None = None
    fk_target_field_id: int | None = None


class TableMetadata(_Read):
    id: int
    name: str
    schema_name: str | None = Field(default=None, alias="schema")
    display_name: str | None = None
    entity_type: str | None = None
    active: bool = True
    fields: list[FieldMetadata] = Field(default_factory=list)

    @property
    def qualified_name(self) -> str:
        return f"{self.schema_name}.{self.name}" if self.schema_name else self.name


class DatabaseMetadata(Database):
    """`GET /api/database/:id/metadata`: the database (details too) with its tables, views and fields."""

    tables: list[TableMetadata] = Field(default_factory=list)

    @property
    def table_names(self) -> set[str]:
        """Names of the synced tables and views, unqualified."""
        return {t.name for t in self.tables}

    def table(self, name: str) -> TableMetadata:
        """The table named `name` (`table` or `schema.table`); raises MetabaseNotFound."""
        schema, _, bare = name.rpartition(".")
        matches = [t for t in self.tables if t.name == bare and (not schema or t.schema_name == schema)]
        if not matches:
            raise MetabaseNotFound(
                f"table {name!r} is not in the metadata of Metabase database {self.name!r} (id {self.id})",
                hint="run `provision metabase connect` to sync the schema, or check the table name",
            )
        # Prefer `public` when an unqualified name exists in several schemas.
        return next((t for t in matches if t.schema_name == "public"), matches[0])

    def field_id(self, table: str, column: str) -> int:
        """The field id of `table.column`; raises MetabaseNotFound naming what is missing."""
        found = self.table(table)
        for field in found.fields:
            if field.name == column:
                return field.id
        raise MetabaseNotFound(
            f"column {column!r} is not in table {found.qualified_name!r} of Metabase database {self.name!r}",
            hint="check the column name, or run `provision metabase connect` to sync the schema",
        )

    def field_name(self, field_id: int) -> tuple[str, str]:
        """(table, column) of a field id; raises MetabaseNotFound."""
        for table in self.tables:
            for field in table.fields:
                if field.id == field_id:
                    return table.name, field.name
        raise MetabaseNotFound(
            f"field id {field_id} is not in Metabase database {self.name!r}",
            hint="the field may have been removed by a schema sync",
        )


# --- collections -------------------------------------------------------------------------------


class Collection(_Read):
    """A collection; the synthetic root has id "root"."""

    id: CollectionId
    name: str
    description: str | None = None
    location: str | None = None
    parent_id: int | None = None
    archived: bool = False
    entity_id: str | None = None
    personal_owner_id: int | None = None
    type: str | None = None
    slug: str | None = None
    namespace: str | None = None

    @property
    def effective_parent_id(self) -> int | None:
        """The parent collection id, from `parent_id` or the `location` path ("/3/5/" → 5)."""
        if self.parent_id is not None:
            return self.parent_id
        parts = [p for p in (self.location or "").split("/") if p]
        return int(parts[-1]) if parts else None


class CollectionCreate(_Write):
    _send_null: ClassVar[frozenset[str]] = frozenset({"parent_id"})

    name: str
    description: str | None = None  # Metabase rejects "" on create: send None instead
    parent_id: int | None = None
    namespace: str | None = None


class CollectionUpdate(_Write):
    _send_null: ClassVar[frozenset[str]] = frozenset({"parent_id", "description"})

    name: str | None = None
    description: str | None = None
    # Metabase treats an omitted `archived` as false on this PUT: an update unarchives.
    archived: bool | None = None
    parent_id: int | None = None


class CollectionItem(_Read):
    """One entry of `GET /api/collection/:id/items`."""

    id: int
    model: str
    name: str
    entity_id: str | None = None
    archived: bool = False
    description: str | None = None
    display: str | None = None
    collection_id: int | None = None
    database_id: int | None = None


# --- cards -------------------------------------------------------------------------------------


class TemplateTag(_Write):
    """A native query variable (`{{name}}`), as in the legacy `template-tags` map."""

    model_config = ConfigDict(
        extra="ignore", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    id: str | None = None
    name: str
    display_name: str = Field(alias="display-name")
    type: str
    dimension: list[Any] | None = None
    widget_type: str | None = Field(default=None, alias="widget-type")
    required: bool | None = None
    default: Any = None

    @property
    def dimension_field_id(self) -> int | None:
        """The field id of a field filter: legacy `["field", 78, opts]` or MBQL 5 `["field", {opts}, 78]`."""
        if not self.dimension or self.dimension[0] != "field":
            return None
        return next((v for v in self.dimension[1:] if isinstance(v, int) and not isinstance(v, bool)), None)


class NativeQuery(_Write):
    query: str
    template_tags: dict[str, TemplateTag] = Field(default_factory=dict, alias="template-tags")


class NativeDatasetQuery(_Write):
    """The legacy native `dataset_query`: what every version from v0.46 accepts on write."""

    type: Literal["native"] = "native"
    database: int
    native: NativeQuery


class Parameter(BaseModel):
    """A dashboard or card filter; unknown keys are kept so a round trip loses nothing."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str | None = None
    slug: str | None = None
    type: str
    sectionId: str | None = None  # Metabase's own camelCase key
    default: Any = None
    required: bool | None = None


class _KeepsRaw(_Read):
    """An answer whose JSON, exactly as Metabase sent it, is kept: backups and saved plans need it."""

    raw: dict[str, Any] = Field(default_factory=dict, exclude=True, repr=False)

    @model_validator(mode="before")
    @classmethod
    def _keep_raw(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "raw" not in data:
            # marshal's copy: copy.deepcopy made reading a dashboard cost twice as much
            return {**data, "raw": copy_plain(dict(data))}
        return data


class Card(_KeepsRaw):
    """A saved question, model or metric, read in either `dataset_query` form."""

    id: int
    entity_id: str | None = None
    name: str
    description: str | None = None
    display: str | None = None
    collection_id: int | None = None
    collection_position: int | None = None
    archived: bool = False
    visualization_settings: dict[str, Any] = Field(default_factory=dict)
    dataset_query: dict[str, Any] = Field(default_factory=dict)
    legacy_query: str | None = None  # newest versions: the legacy form as a JSON string
    query_type: str | None = None
    database_id: int | None = None
    type: str | None = None
    parameters: list[Parameter] = Field(default_factory=list)
    dashboard_id: int | None = None  # a dashboard question (v0.53+) belongs in this dashboard
    result_metadata: list[dict[str, Any]] | None = None
    created_at: str | None = None
    updated_at: str | None = None

    @field_validator("result_metadata", mode="before")
    @classmethod
    def _metadata_list(cls, value: Any) -> Any:
        return value if isinstance(value, list) else None

    def _native_form(self) -> tuple[str | None, dict[str, Any]]:
        # Prefer the legacy form (what we write): from `legacy_query` on newest servers, else
        # `dataset_query` itself on servers before MBQL 5; MBQL 5 keeps the SQL in stages[0].
        legacy: Any = None
        if self.legacy_query:
            try:
                legacy = json.loads(self.legacy_query)
            except ValueError:
                legacy = None
        if not isinstance(legacy, dict) or not isinstance(legacy.get("native"), dict):
            legacy = self.dataset_query
        native = legacy.get("native") if isinstance(legacy, dict) else None
        if isinstance(native, dict) and isinstance(native.get("query"), str):
            return native["query"], native.get("template-tags") or {}
        stages = self.dataset_query.get("stages")
        if isinstance(stages, list) and stages and isinstance(stages[0], dict):
            stage = stages[0]
            if isinstance(stage.get("native"), str):
                return stage["native"], stage.get("template-tags") or {}
        return None, {}

    @property
    def native_sql(self) -> str | None:
        """The SQL of a native card (legacy or MBQL 5 form); None for query-builder cards."""
        return self._native_form()[0]

    @property
    def template_tags(self) -> dict[str, TemplateTag]:
        """The card's template tags by name; raises MetabaseError for a tag Metabase did not describe."""
        tags: dict[str, TemplateTag] = {}
        for key, tag in self._native_form()[1].items():
            try:
                tags[key] = TemplateTag.model_validate(tag)
            except ValidationError as exc:
                raise MetabaseError(
                    f"card {self.id} ({self.name!r}) has an unreadable template tag {key!r}: "
                    f"{exc.errors()[0]['msg']}",
                    hint="open the card in Metabase and fix its variable, or re-apply its YAML",
                ) from exc
        return tags


class QueryDatasetQuery(_Write):
    """A legacy MBQL 4 query-builder `dataset_query` (see `provisioner/mbql/legacy.py` for why legacy)."""

    type: Literal["query"] = "query"
    database: int
    query: dict[str, Any]


class ResultColumn(_Write):
    """A model's column as sent in `result_metadata`: Metabase keeps the edited keys on top of its own."""

    model_config = ConfigDict(extra="forbid", serialize_by_alias=True)

    name: str
    display_name: str
    base_type: str
    semantic_type: str | None = None
    description: str | None = None
    fk_target_field_id: int | None = None


DatasetQuery = NativeDatasetQuery | QueryDatasetQuery


class StoredDatasetQuery(_Write):
    """A `dataset_query` exactly as Metabase returned it (legacy or MBQL 5): what restore sends back."""

    model_config = ConfigDict(extra="allow", serialize_by_alias=True)

    database: int


class CardCreate(_Write):
    _send_null: ClassVar[frozenset[str]] = frozenset({"collection_id"})

    name: str
    display: str
    dataset_query: DatasetQuery
    visualization_settings: dict[str, Any] = Field(default_factory=dict)
    type: str | None = "question"
    collection_id: int | None = None
    collection_position: int | None = None
    description: str | None = None  # "" is rejected on create: send None
    parameters: list[Parameter] | None = None
    result_metadata: list[ResultColumn] | None = None
    dashboard_id: int | None = None  # a dashboard question: saved inside that dashboard, placed on it
    entity_id: str | None = None


class CardUpdate(_Write):
    _send_null: ClassVar[frozenset[str]] = frozenset(
        {"collection_id", "description", "collection_position", "dashboard_id"}
    )

    name: str | None = None
    display: str | None = None
    dataset_query: DatasetQuery | StoredDatasetQuery | None = None
    visualization_settings: dict[str, Any] | None = None
    type: str | None = None
    collection_id: int | None = None
    collection_position: int | None = None
    description: str | None = None
    archived: bool | None = None
    parameters: list[Parameter] | None = None
    result_metadata: list[ResultColumn] | None = None
    dashboard_id: int | None = None


class QueryParameter(_Write):
    """A filter value passed to `POST /api/card/:id/query`."""

    model_config = ConfigDict(extra="allow", serialize_by_alias=True)

    type: str
    target: list[Any]
    value: Any = None


class CardQuery(_Write):
    """Body of `POST /api/card/:id/query`: filter values; none runs the card with its defaults."""

    parameters: list[QueryParameter] = Field(default_factory=list)


class QueryColumn(_Read):
    name: str
    display_name: str | None = None
    base_type: str | None = None


class QueryData(_Read):
    rows: list[list[Any]] = Field(default_factory=list)
    cols: list[QueryColumn] = Field(default_factory=list)


class QueryResult(_Read):
    """A query answer (HTTP 202 even when the SQL failed: check `status`)."""

    status: str
    error: str | None = None
    error_type: str | None = None
    row_count: int | None = None
    database_id: int | None = None
    running_time: int | None = None
    data: QueryData = Field(default_factory=QueryData)

    @field_validator("error", mode="before")
    @classmethod
    def _error_as_text(cls, value: Any) -> Any:
        return value if value is None or isinstance(value, str) else json.dumps(value)

    @property
    def ok(self) -> bool:
        return self.status == "completed"


# --- dashboards --------------------------------------------------------------------------------


class ParameterMapping(_Write):
    """Connects a dashboard filter to a card's variable or column."""

    model_config = ConfigDict(
        extra="ignore", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    parameter_id: str
    card_id: int | None = None
    target: list[Any]


class Tab(_Write):
    model_config = ConfigDict(
        extra="ignore", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    id: int
    name: str
    position: int | None = None


class DashCard(_Write):
    """A card on a dashboard (read and write: negative `id` creates, `card_id: None` is a text card)."""

    model_config = ConfigDict(
        extra="ignore", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )
    _send_null: ClassVar[frozenset[str]] = frozenset({"card_id", "dashboard_tab_id"})

    id: int
    card_id: int | None = None
    card: Card | None = Field(default=None, exclude=True)  # hydrated on read; never sent
    dashboard_tab_id: int | None = None
    row: int
    col: int
    size_x: int
    size_y: int
    parameter_mappings: list[ParameterMapping] = Field(default_factory=list)
    visualization_settings: dict[str, Any] = Field(default_factory=dict)
    series: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("card", mode="before")
    @classmethod
    def _virtual_card_is_none(cls, value: Any) -> Any:
        # Virtual (text/heading) dashcards come back with an empty or id-less card map.
        return value if isinstance(value, dict) and value.get("id") is not None else None

    @field_validator("series", mode="before")
    @classmethod
    def _series_as_ids(cls, value: Any) -> Any:
        # Read: hydrated cards; write: `[{id}]` is all Metabase needs.
        if isinstance(value, list):
            return [{"id": s["id"]} if isinstance(s, dict) and "id" in s else s for s in value]
        return value

    @field_validator("parameter_mappings", "visualization_settings", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any, info: Any) -> Any:
        if value is None:
            return [] if info.field_name == "parameter_mappings" else {}
        return value


class Dashboard(_KeepsRaw):
    """A dashboard with its dashcards (v0.46 called them `ordered_cards`) and tabs."""

    id: int
    entity_id: str | None = None
    name: str
    description: str | None = None
    collection_id: int | None = None
    collection_position: int | None = None
    archived: bool = False
    parameters: list[Parameter] = Field(default_factory=list)
    dashcards: list[DashCard] = Field(
        default_factory=list, validation_alias=AliasChoices("dashcards", "ordered_cards")
    )
    tabs: list[Tab] = Field(default_factory=list)
    width: str | None = None
    auto_apply_filters: bool | None = None
    created_at: str | None = None
    updated_at: str | None = None


class DashboardCreate(_Write):
    _send_null: ClassVar[frozenset[str]] = frozenset({"collection_id"})

    name: str
    description: str | None = None
    collection_id: int | None = None
    collection_position: int | None = None
    parameters: list[Parameter] = Field(default_factory=list)


class DashboardUpdate(_Write):
    """The full PUT: when `dashcards` is given it is the complete set (absent ones are deleted)."""

    _send_null: ClassVar[frozenset[str]] = frozenset({"collection_id", "description", "collection_position"})

    name: str | None = None
    description: str | None = None
    collection_id: int | None = None
    collection_position: int | None = None
    parameters: list[Parameter] | None = None
    width: Literal["fixed", "full"] | None = None
    archived: bool | None = None
    auto_apply_filters: bool | None = None
    dashcards: list[DashCard] | None = None
    tabs: list[Tab] | None = None
