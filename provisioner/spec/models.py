"""The dashboard YAML as pydantic models: names only, never Metabase ids.

Strict (`extra="forbid"`): an unknown key is a typo the author must hear about. Loading with line marks
is in `loader.py`, checks across fields in `checks.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

GRID_COLUMNS = 24
KEY_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
FIELD_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){1,2}$"

# YAML filter type -> (Metabase parameter type, sectionId). Plain words are aliases people reach for.
FILTER_TYPES: dict[str, tuple[str, str]] = {
    "category": ("category", "string"),
    "text": ("string/=", "string"),
    "string/=": ("string/=", "string"),
    "string/contains": ("string/contains", "string"),
    "string/starts-with": ("string/starts-with", "string"),
    "number": ("number/=", "number"),
    "number/=": ("number/=", "number"),
    "number/between": ("number/between", "number"),
    "number/>=": ("number/>=", "number"),
    "number/<=": ("number/<=", "number"),
    "id": ("id", "id"),
    "date/single": ("date/single", "date"),
    "date/range": ("date/range", "date"),
    "date/relative": ("date/relative", "date"),
    "date/month-year": ("date/month-year", "date"),
    "date/quarter-year": ("date/quarter-year", "date"),
    "date/all-options": ("date/all-options", "date"),
}

# YAML display -> (Metabase display, settings it implies).
DISPLAYS: dict[str, tuple[str, dict[str, Any]]] = {
    "table": ("table", {}),
    "scalar": ("scalar", {}),
    "smartscalar": ("smartscalar", {}),
    "bar": ("bar", {}),
    "row": ("row", {}),
    "line": ("line", {}),
    "area": ("area", {}),
    "combo": ("combo", {}),
    "scatter": ("scatter", {}),
    "pie": ("pie", {}),
    "funnel": ("funnel", {}),
    "gauge": ("gauge", {}),
    "progress": ("progress", {}),
    "waterfall": ("waterfall", {}),
    "pin map": ("map", {"map.type": "pin"}),
    "object": ("object", {}),
}

FilterTypeName = Literal[
    "category",
    "text",
    "string/=",
    "string/contains",
    "string/starts-with",
    "number",
    "number/=",
    "number/between",
    "number/>=",
    "number/<=",
    "id",
    "date/single",
    "date/range",
    "date/relative",
    "date/month-year",
    "date/quarter-year",
    "date/all-options",
]
DisplayName = Literal[
    "table",
    "scalar",
    "smartscalar",
    "bar",
    "row",
    "line",
    "area",
    "combo",
    "scatter",
    "pie",
    "funnel",
    "gauge",
    "progress",
    "waterfall",
    "pin map",
    "object",
]
Key = Annotated[str, Field(pattern=KEY_PATTERN, description="lowercase letters, digits, - and _")]
NonBlank = Annotated[str, Field(min_length=1)]


class SpecModel(BaseModel):
    """Strict: an unknown key is a typo the author must hear about."""

    model_config = ConfigDict(extra="forbid")


class Filter(SpecModel):
    """A dashboard filter, wired to cards by its `key`."""

    key: Key
    name: NonBlank
    type: FilterTypeName = Field(description="Metabase parameter type; `text`/`number` are aliases")
    default: Any = Field(default=None, description="value applied when the dashboard opens")
    required: bool = False

    @property
    def parameter_type(self) -> str:
        return FILTER_TYPES[self.type][0]

    @property
    def section(self) -> str:
        return FILTER_TYPES[self.type][1]


class TagSpec(SpecModel):
    """How one `{{tag}}` of the SQL is typed: a field filter (`field`) or a raw value (`type`)."""

    field: Annotated[str, Field(pattern=FIELD_PATTERN)] | None = Field(
        default=None, description="field filter on table.column (or schema.table.column)"
    )
    type: Literal["text", "number", "date"] | None = Field(
        default=None, description="raw value type; inferred from the wired filter when omitted"
    )
    widget: FilterTypeName | None = Field(
        default=None, description="field filter widget; default: the filter's type"
    )
    label: NonBlank | None = Field(default=None, description="display name of the variable")
    default: Any = None

    @model_validator(mode="after")
    def _field_or_type(self) -> TagSpec:
        if self.field and self.type:
            raise ValueError("give `field` (a field filter) or `type` (a raw value), not both")
        return self


class Viz(SpecModel):
    """Visualisation by column name; `settings` passes raw Metabase settings through."""

    x: str | list[str] | None = Field(default=None, description="dimension column(s)")
    y: str | list[str] | None = Field(default=None, description="metric column(s)")
    latitude: str | None = None
    longitude: str | None = None
    stacked: bool | None = None
    title: str | None = None
    settings: dict[str, Any] = Field(
        default_factory=dict, description="raw visualization_settings, merged last"
    )

    def columns(self) -> list[tuple[str, str]]:
        """Every (viz key, column name) this viz refers to."""
        out: list[tuple[str, str]] = []
        for name in ("x", "y"):
            value = getattr(self, name)
            for column in [value] if isinstance(value, str) else value or []:
                out.append((name, column))
        out += [(n, getattr(self, n)) for n in ("latitude", "longitude") if getattr(self, n)]
        return out


class Place(SpecModel):
    """Where a card sits; omitted parts are chosen by the layout engine."""

    tab: NonBlank | None = None
    row: int | None = Field(default=None, ge=0)
    col: int | None = Field(default=None, ge=0, lt=GRID_COLUMNS)
    width: int | None = Field(default=None, ge=1, le=GRID_COLUMNS)
    height: int | None = Field(default=None, ge=1)


class QueryCard(SpecModel):
    """A native SQL question on the dashboard."""

    key: Key
    name: NonBlank
    description: NonBlank | None = None
    display: DisplayName = "table"
    sql: NonBlank | None = None
    sql_file: NonBlank | None = Field(default=None, description="path relative to this YAML file")
    tags: dict[str, TagSpec] = Field(default_factory=dict)
    filters: dict[str, Key] = Field(default_factory=dict, description="template tag -> dashboard filter key")
    viz: Viz = Field(default_factory=Viz)
    at: Place = Field(default_factory=Place)

    @model_validator(mode="after")
    def _one_sql_source(self) -> QueryCard:
        if (self.sql is None) == (self.sql_file is None):
            raise ValueError("give exactly one of `sql` (inline) or `sql_file` (a path)")
        return self


class TextCard(SpecModel):
    """A markdown text card."""

    text: NonBlank
    at: Place = Field(default_factory=Place)


class HeadingCard(SpecModel):
    """A heading card."""

    heading: NonBlank
    at: Place = Field(default_factory=Place)


def _card_kind(value: Any) -> str:
    if isinstance(value, Mapping):
        if "text" in value:
            return "text"
        if "heading" in value:
            return "heading"
    return "query"


AnyCard = Annotated[
    Annotated[QueryCard, Tag("query")]
    | Annotated[TextCard, Tag("text")]
    | Annotated[HeadingCard, Tag("heading")],
    Discriminator(_card_kind),
]
_UNION_TAGS = {"query", "text", "heading"}


class DashboardSpec(SpecModel):
    """One dashboard file."""

    model_config = ConfigDict(
        extra="forbid",
        title="Dashboard",
        json_schema_extra={"description": "A Metabase dashboard kept as code (metabase-provisioner)."},
    )

    key: Key = Field(description="stable identity: renaming `name` updates in place")
    name: NonBlank
    collection: NonBlank = Field(
        description="collection path, e.g. `Asset Finance Demo/Risk`; created when missing"
    )
    description: NonBlank | None = None
    database: NonBlank | None = Field(
        default=None, description="Metabase database name; default: the only non-sample database"
    )
    width: Literal["fixed", "full"] = "fixed"
    filters: list[Filter] = Field(default_factory=list)
    tabs: list[NonBlank] = Field(default_factory=list)
    cards: list[AnyCard] = Field(min_length=1)

    @field_validator("collection")
    @classmethod
    def _collection_path(cls, value: str) -> str:
        parts = [p.strip() for p in value.split("/")]
        if any(not p for p in parts):
            raise ValueError("collection path has an empty part; write `Parent/Child`")
        return "/".join(parts)

    @property
    def collection_path(self) -> tuple[str, ...]:
        return tuple(self.collection.split("/"))

    def filter(self, key: str) -> Filter | None:
        return next((f for f in self.filters if f.key == key), None)

    def query_cards(self) -> list[QueryCard]:
        return [c for c in self.cards if isinstance(c, QueryCard)]


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a dashboard file, for editors (`dashboards/schema.json`)."""
    schema = DashboardSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
