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
    "string/!=": ("string/!=", "string"),
    "string/does-not-contain": ("string/does-not-contain", "string"),
    "string/ends-with": ("string/ends-with", "string"),
    "number/!=": ("number/!=", "number"),
    "boolean": ("boolean/=", "boolean"),
    "boolean/=": ("boolean/=", "boolean"),
    "location/city": ("location/city", "location"),
    "location/state": ("location/state", "location"),
    "location/zip_code": ("location/zip_code", "location"),
    "location/country": ("location/country", "location"),
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
    "string/!=",
    "string/does-not-contain",
    "string/ends-with",
    "number/!=",
    "boolean",
    "boolean/=",
    "location/city",
    "location/state",
    "location/zip_code",
    "location/country",
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


TemporalUnit = Literal[
    "minute",
    "hour",
    "day",
    "week",
    "month",
    "quarter",
    "year",
    "minute-of-hour",
    "hour-of-day",
    "day-of-week",
    "day-of-month",
    "day-of-year",
    "week-of-year",
    "month-of-year",
    "quarter-of-year",
]
JoinStrategy = Literal["left", "inner", "right", "full"]
QuestionType = Literal["question", "model", "metric"]
# Semantic types a model column is given by a word; any Metabase `type/...` is accepted as written.
SEMANTIC_TYPES: dict[str, str] = {
    "currency": "type/Currency",
    "category": "type/Category",
    "latitude": "type/Latitude",
    "longitude": "type/Longitude",
    "name": "type/Name",
    "title": "type/Title",
    "description": "type/Description",
    "pk": "type/PK",
    "fk": "type/FK",
    "quantity": "type/Quantity",
    "score": "type/Score",
    "percentage": "type/Percentage",
    "email": "type/Email",
    "url": "type/URL",
    "city": "type/City",
    "state": "type/State",
    "country": "type/Country",
    "zip": "type/ZipCode",
    "creation date": "type/CreationDate",
    "creation timestamp": "type/CreationTimestamp",
}
SemanticName = Annotated[
    str,
    Field(
        pattern=r"^(type/[A-Za-z]+|" + "|".join(SEMANTIC_TYPES) + r")$",
        description="currency, category, latitude, longitude, name, pk, fk, ... or a Metabase `type/...`",
    ),
]
Expression = Annotated[str, Field(min_length=1, description="an expression, e.g. `days_past_due > 30`")]


class Source(SpecModel):
    """Where a query's rows come from: a table or view by name, or a model or question by key."""

    table: NonBlank | None = Field(default=None, description="table or view name (or `schema.table`)")
    model: NonBlank | None = Field(default=None, description="a model's key (`file-key/model-key`)")
    question: NonBlank | None = Field(default=None, description="a question's key")

    @model_validator(mode="after")
    def _exactly_one(self) -> Source:
        if sum(v is not None for v in (self.table, self.model, self.question)) != 1:
            raise ValueError("give exactly one of `table`, `model` or `question`")
        return self

    @property
    def card_key(self) -> str | None:
        return self.model or self.question


def as_source(value: str | Source) -> Source:
    """A bare string source is a table or view."""
    return Source(table=value) if isinstance(value, str) else value


class Join(SpecModel):
    """A join to a table, model or question, on conditions written as expressions."""

    source: NonBlank | Source = Field(description="a table name, or {table|model|question: ...}")
    alias: NonBlank | None = Field(
        default=None, description="how columns of the join are named; default: its source"
    )
    on: Expression | list[Expression] = Field(description="e.g. `customer_id = Customers.customer_id`")
    strategy: JoinStrategy = "left"
    columns: Literal["all", "none"] | list[NonBlank] = Field(
        default="all", description="the joined columns the result keeps"
    )

    @property
    def conditions(self) -> list[str]:
        return [self.on] if isinstance(self.on, str) else list(self.on)


class Group(SpecModel):
    """A grouping column, with a temporal unit or binning."""

    column: NonBlank = Field(description="a column: `due_date`, `Customers.region`, `customer_id -> name`")
    unit: TemporalUnit | None = Field(default=None, description="for dates: month, week, day-of-week ...")
    bins: int | Literal["auto"] | None = Field(default=None, description="for numbers: a number of bins")
    bin_width: float | None = Field(default=None, gt=0, description="for numbers: the width of each bin")

    @model_validator(mode="after")
    def _one_bucketing(self) -> Group:
        if sum(v is not None for v in (self.unit, self.bins, self.bin_width)) > 1:
            raise ValueError("give at most one of `unit`, `bins` or `bin_width`")
        if isinstance(self.bins, int) and self.bins < 1:
            raise ValueError("`bins` must be at least 1 (or `auto`)")
        return self


class Summary(SpecModel):
    """A named summary: `{expr: "sum(amount)", name: Total}`."""

    expr: Expression = Field(description="e.g. `sum(outstanding_balance)`, `count_where(days_past_due > 0)`")
    name: NonBlank | None = Field(default=None, description="the column's display name")


class Stage(SpecModel):
    """One step of a query-builder question; a later step works on the results of the one before."""

    source: NonBlank | Source | None = Field(
        default=None, description="first step only: a table name, or {table|model|question: ...}"
    )
    joins: list[Join] = Field(default_factory=list)
    expressions: dict[NonBlank, Expression] = Field(
        default_factory=dict, description="custom columns: name -> expression"
    )
    filter: Expression | list[Expression] | None = Field(
        default=None, description="conditions every row must meet (a list: all of them)"
    )
    columns: list[NonBlank] | None = Field(default=None, description="the columns to keep (default: all)")
    summarize: list[Expression | Summary] = Field(
        default_factory=list, description="count, sum(x), avg(x), distinct(x), count_where(...) ..."
    )
    group_by: list[NonBlank | Group] = Field(default_factory=list)
    order_by: list[NonBlank] = Field(
        default_factory=list, description="a column or summary, optionally followed by `desc`"
    )
    limit: int | None = Field(default=None, ge=1)

    @property
    def filters(self) -> list[str]:
        return (
            []
            if self.filter is None
            else [self.filter]
            if isinstance(self.filter, str)
            else list(self.filter)
        )


class ColumnMeta(SpecModel):
    """What a model says about one of its columns (Metabase shows it everywhere the column appears)."""

    display_name: NonBlank | None = None
    description: NonBlank | None = None
    semantic_type: SemanticName | None = None
    fk_target: Annotated[str, Field(pattern=FIELD_PATTERN)] | None = Field(
        default=None, description="for `semantic_type: fk`: the `table.column` it points to"
    )

    @property
    def semantic(self) -> str | None:
        if self.semantic_type is None:
            return None
        return SEMANTIC_TYPES.get(self.semantic_type, self.semantic_type)


class Question(SpecModel):
    """A saved question, model or metric: SQL (`sql`/`sql_file`) or built with the query builder (`query`)."""

    key: Key
    name: NonBlank
    type: QuestionType = Field(default="question", description="question, model or metric")
    description: NonBlank | None = None
    display: DisplayName = "table"
    sql: NonBlank | None = None
    sql_file: NonBlank | None = Field(default=None, description="path relative to this YAML file")
    tags: dict[str, TagSpec] = Field(default_factory=dict)
    query: Stage | list[Stage] | None = Field(
        default=None, description="a query-builder question: one step, or a list of steps"
    )
    mbql: dict[str, Any] | None = Field(
        default=None,
        description="raw MBQL (names instead of ids) for what `query` cannot express; written by export",
    )
    metadata: dict[NonBlank, ColumnMeta] = Field(
        default_factory=dict, description="models: display name, description and semantic type per column"
    )
    viz: Viz = Field(default_factory=Viz)

    @model_validator(mode="after")
    def _one_query(self) -> Question:
        given = [n for n in ("sql", "sql_file", "query", "mbql") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of `sql` (inline SQL), `sql_file` (a path), `query` (query builder) "
                "or `mbql`" + (f"; found {', '.join(given)}" if given else "")
            )
        if self.tags and self.sql is None and self.sql_file is None:
            raise ValueError("`tags` type the {{variables}} of SQL; a query-builder question has none")
        if self.metadata and self.type == "question":
            raise ValueError("`metadata` describes the columns of a model or metric: add `type: model`")
        return self

    @property
    def is_native(self) -> bool:
        return self.query is None and self.mbql is None

    @property
    def stages(self) -> list[Stage]:
        if self.query is None:
            return []
        return [self.query] if isinstance(self.query, Stage) else list(self.query)


class QueryCard(Question):
    """A question on the dashboard, wired to its filters and placed on the grid."""

    filters: dict[str, Key] = Field(
        default_factory=dict,
        description="SQL: template tag -> filter key; query builder: column -> filter key",
    )
    at: Place = Field(default_factory=Place)


class TextCard(SpecModel):
    """A markdown text card."""

    text: NonBlank
    at: Place = Field(default_factory=Place)


class HeadingCard(SpecModel):
    """A heading card."""

    heading: NonBlank
    at: Place = Field(default_factory=Place)


class LinkCard(SpecModel):
    """A link card: opens a web page (or a Metabase page by its address)."""

    link: NonBlank = Field(description="the address the card opens, e.g. https://example.com/runbook")
    at: Place = Field(default_factory=Place)


VirtualCard = TextCard | HeadingCard | LinkCard


def _card_kind(value: Any) -> str:
    if isinstance(value, Mapping):
        for kind in ("text", "heading", "link"):
            if kind in value:
                return kind
    return "query"


AnyCard = Annotated[
    Annotated[QueryCard, Tag("query")]
    | Annotated[TextCard, Tag("text")]
    | Annotated[HeadingCard, Tag("heading")]
    | Annotated[LinkCard, Tag("link")],
    Discriminator(_card_kind),
]
_UNION_TAGS = {"query", "text", "heading", "link"}


class DocumentSpec(SpecModel):
    """What every file has: its key, the collection it fills, the database and questions kept there."""

    key: Key = Field(description="stable identity: renaming `name` updates in place")
    collection: NonBlank = Field(
        description="collection path, e.g. `Asset Finance Demo/Risk`; created when missing"
    )
    description: NonBlank | None = None
    database: NonBlank | None = Field(
        default=None, description="Metabase database name; default: the only non-sample database"
    )
    questions: list[Question] = Field(
        default_factory=list, description="questions and models kept in the collection, not on a dashboard"
    )

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

    def all_questions(self) -> list[Question]:
        """Every question of the file: the dashboard's cards, then the collection's questions."""
        return [q for _, q in self.located_questions()]

    def located_questions(self) -> list[tuple[tuple[str | int, ...], Question]]:
        """Every question with where it is written (`("cards", 2)`, `("questions", 0)`)."""
        return [(("questions", i), q) for i, q in enumerate(self.questions)]


class QuestionsSpec(DocumentSpec):
    """A file of questions and models with no dashboard (for example the models a demo is built on)."""

    model_config = ConfigDict(
        extra="forbid",
        title="Questions",
        json_schema_extra={
            "description": "Metabase questions and models kept as code (metabase-provisioner)."
        },
    )

    questions: list[Question] = Field(min_length=1, description="questions and models kept in the collection")


class DashboardSpec(DocumentSpec):
    """One dashboard file."""

    model_config = ConfigDict(
        extra="forbid",
        title="Dashboard",
        json_schema_extra={"description": "A Metabase dashboard kept as code (metabase-provisioner)."},
    )

    name: NonBlank
    width: Literal["fixed", "full"] = "fixed"
    filters: list[Filter] = Field(default_factory=list)
    tabs: list[NonBlank] = Field(default_factory=list)
    cards: list[AnyCard] = Field(min_length=1)

    def filter(self, key: str) -> Filter | None:
        return next((f for f in self.filters if f.key == key), None)

    def query_cards(self) -> list[QueryCard]:
        return [c for c in self.cards if isinstance(c, QueryCard)]

    def located_questions(self) -> list[tuple[tuple[str | int, ...], Question]]:
        cards: list[tuple[tuple[str | int, ...], Question]] = [
            (("cards", i), c) for i, c in enumerate(self.cards) if isinstance(c, QueryCard)
        ]
        return [*cards, *super().located_questions()]


AnyDocument = DashboardSpec | QuestionsSpec


def document_kind(data: Any) -> type[DashboardSpec] | type[QuestionsSpec]:
    """The model a file's top-level mapping is read with: a dashboard when it has `cards`."""
    if isinstance(data, Mapping) and "cards" not in data and "questions" in data:
        return QuestionsSpec
    return DashboardSpec


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a file, for editors (`dashboards/schema.json`): a dashboard, or questions."""
    from pydantic import TypeAdapter

    schema = TypeAdapter(AnyDocument).json_schema()
    schema["title"] = "Dashboard or questions"
    schema["description"] = (
        "A Metabase dashboard, or questions and models, kept as code (metabase-provisioner)."
    )
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
