"""Desired state: what the YAML asks Metabase to hold, with names resolved against its metadata."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from provisioner.errors import MetabaseNotFound, SpecError
from provisioner.identity import KEY_SETTING, card_identity, parameter_id
from provisioner.mbql.columns import Column
from provisioner.mbql.normal import NormalQuery, map_leaves
from provisioner.metabase.models import DatabaseMetadata, Parameter, TemplateTag
from provisioner.spec import LoadedFile
from provisioner.spec.layout import Placement, place
from provisioner.spec.models import (
    DISPLAYS,
    ColumnMeta,
    DashboardSpec,
    HeadingCard,
    LinkCard,
    QueryCard,
    Question,
    VirtualCard,
    Viz,
)
from provisioner.spec.question import CompiledQuestion, compile_questions
from provisioner.spec.sql import resolve_tags
from provisioner.translate import MetadataSchema


@dataclass
class DesiredCard:
    """A question, model or metric as the YAML wants it, with names (never ids) in its query."""

    file_key: str
    key: str
    ident: str  # "<file key>/<card key>"
    name: str
    description: str | None
    display: str
    type: str  # question, model or metric
    visualization_settings: dict[str, Any]
    collection_path: tuple[str, ...]
    database_id: int
    sql: str | None = None  # a native question
    template_tags: dict[str, TemplateTag] = field(default_factory=dict)
    query: NormalQuery | None = None  # a query-builder question, names only
    # base types of the columns each step refers to by name: (step, join alias or None) -> name -> type
    column_types: dict[tuple[int, str | None], dict[str, str]] = field(default_factory=dict)
    metadata: dict[str, ColumnMeta] = field(default_factory=dict)
    result_columns: list[Column] | None = None
    dashboard_key: str | None = None  # set for a dashboard question (a card saved inside its dashboard)
    on_dashboard: bool = False  # placed on a dashboard of the YAML (a dashboard question, or a model)

    @property
    def sources(self) -> list[str]:
        """The identities of the questions and models this one is built on."""
        if self.query is None:
            return []
        found: list[str] = []

        def visit(kind: str, value: Any, stage: dict[str, Any]) -> Any:
            if kind == "card" and isinstance(value, str) and value not in found:
                found.append(value)
            return value

        map_leaves(self.query, visit)
        return found


@dataclass
class DesiredDashcard:
    card_ident: str | None  # None for text and heading cards
    tab: str | None
    place: Placement
    visualization_settings: dict[str, Any]
    mappings: list[tuple[str, list[Any]]]  # (parameter id, target)


@dataclass
class DesiredDashboard:
    key: str
    name: str
    description: str | None
    collection_path: tuple[str, ...]
    width: str
    parameters: list[Parameter]
    tabs: list[str]
    dashcards: list[DesiredDashcard]


def card_visualization_settings(
    file_key: str, card: Question, column_of: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The card's `visualization_settings`: implied by `display`, then `viz`, then the identity key.

    `column_of` maps the names the YAML may use for a column (a summary's `name:`) to its column name.
    """
    _, implied = DISPLAYS[card.display]
    settings: dict[str, Any] = dict(implied)
    viz: Viz = card.viz
    rename = column_of or {}
    xs = [rename.get(x, x) for x in ([viz.x] if isinstance(viz.x, str) else list(viz.x or []))]
    ys = [rename.get(y, y) for y in ([viz.y] if isinstance(viz.y, str) else list(viz.y or []))]
    display = DISPLAYS[card.display][0]
    if display in ("pie",):
        if xs:
            settings["pie.dimension"] = xs[0] if len(xs) == 1 else xs
        if ys:
            settings["pie.metric"] = ys[0]
    elif display == "funnel":
        if xs:
            settings["funnel.dimension"] = xs[0]
        if ys:
            settings["funnel.metric"] = ys[0]
    elif display in ("scalar", "smartscalar", "gauge", "progress"):
        if ys:
            settings["scalar.field"] = ys[0]
    elif display == "map":
        if viz.latitude:
            settings["map.latitude_column"] = viz.latitude
        if viz.longitude:
            settings["map.longitude_column"] = viz.longitude
    elif display != "table" and display != "object":
        if xs:
            settings["graph.dimensions"] = xs
        if ys:
            settings["graph.metrics"] = ys
    if viz.stacked:
        settings["stackable.stack_type"] = "stacked"
    if viz.title:
        settings["card.title"] = viz.title
    settings.update(viz.settings)
    settings[KEY_SETTING] = card_identity(file_key, card.key)
    return settings


def _virtual_settings(card: VirtualCard) -> dict[str, Any]:
    display = "heading" if isinstance(card, HeadingCard) else "link" if isinstance(card, LinkCard) else "text"
    virtual: dict[str, Any] = {
        "name": None,
        "display": display,
        "visualization_settings": {},
        "dataset_query": {},
        "archived": False,
    }
    if isinstance(card, LinkCard):
        return {"virtual_card": virtual, "link": {"url": card.link}}
    text = card.heading if isinstance(card, HeadingCard) else card.text
    return {"virtual_card": virtual, "text": text, "dashcard.background": display != "heading"}


def parameter_default(value: Any, section: str) -> Any:
    """A filter default as Metabase stores it: a list of values, except for dates (`past30days`)."""
    if section == "date" or isinstance(value, list):
        return value
    return [value]


@dataclass
class DesiredState:
    """Everything the YAML asks for: dashboards, and every card (dashboard cards, then the others)."""

    dashboards: list[DesiredDashboard] = field(default_factory=list)
    cards: list[DesiredCard] = field(default_factory=list)
    errors: list[SpecError] = field(default_factory=list)


def desired_state(
    files: list[LoadedFile], database_ids: dict[str, int], metadata: dict[int, DatabaseMetadata]
) -> DesiredState:
    """The dashboards and cards the YAML asks for, checked against each file's database in Metabase.

    Unknown tables and columns, a summary that does not fit its column, a filter type that does not fit
    the column it filters: SpecErrors at their file and line, in `errors`.
    """
    schemas = {db_id: MetadataSchema(meta) for db_id, meta in metadata.items()}

    def schema_of(loaded: LoadedFile) -> MetadataSchema:
        return schemas[database_ids[loaded.spec.key]]

    compiled = compile_questions(files, schema_of)
    state = DesiredState(errors=list(compiled.errors))
    for loaded in files:
        db_id = database_ids[loaded.spec.key]
        schema = schemas[db_id]
        spec = loaded.spec
        for where, question in spec.located_questions():
            ident = card_identity(spec.key, question.key)
            on_dashboard = isinstance(spec, DashboardSpec) and where[0] == "cards"
            card = _desired_card(loaded, where, question, db_id, schema, compiled.questions.get(ident), state)
            if card is None:
                continue
            for source in card.sources:
                source_db = database_ids.get(source.split("/", 1)[0])
                if source_db is not None and source_db != db_id:
                    state.errors.append(
                        loaded.locator.error(
                            (*where, "query"),
                            f"`{source}` reads another database than this file's",
                            hint="a question and the model it is built on use the same database",
                        )
                    )
            card.on_dashboard = on_dashboard
            if on_dashboard and question.type == "question":
                card.dashboard_key = spec.key
            state.cards.append(card)
        if isinstance(spec, DashboardSpec):
            state.dashboards.append(_desired_dashboard(loaded, spec, compiled.questions))
    return state


def _desired_card(
    loaded: LoadedFile,
    where: tuple[Any, ...],
    question: Question,
    database_id: int,
    schema: MetadataSchema,
    compiled: CompiledQuestion | None,
    state: DesiredState,
) -> DesiredCard | None:
    spec = loaded.spec
    card = DesiredCard(
        file_key=spec.key,
        key=question.key,
        ident=card_identity(spec.key, question.key),
        name=question.name,
        description=question.description,
        display=DISPLAYS[question.display][0],
        type=question.type,
        visualization_settings=card_visualization_settings(spec.key, question),
        collection_path=spec.collection_path,
        database_id=database_id,
        metadata=dict(question.metadata),
    )
    if question.is_native:
        card.sql = loaded.sql[question.key].strip()
        card.template_tags = _template_tags(loaded, where, question, card.sql, schema, state)
        return card
    if compiled is None:
        return None  # its errors are in the compiled set
    card.query = compiled.query
    card.result_columns = compiled.columns
    if compiled.columns is not None:
        column_of = _summary_names(compiled)
        card.visualization_settings = card_visualization_settings(spec.key, question, column_of)
        state.errors += _viz_errors(loaded, where, question, compiled.columns, column_of)
    for index, scope in enumerate(compiled.scopes):
        card.column_types[(index, None)] = {n: c.base_type for n, c in (scope.columns or {}).items()}
        for alias, joined in scope.joins.items():
            card.column_types[(index, alias)] = {n: c.base_type for n, c in (joined.columns or {}).items()}
    columns = {c.name for c in compiled.columns or []}
    for name in question.metadata:
        if compiled.columns is not None and name not in columns:
            state.errors.append(
                loaded.locator.error(
                    (*where, "metadata", name),
                    f"the model has no column `{name}`",
                    hint=f"its columns: {', '.join(sorted(columns))}",
                    key=True,
                )
            )
    return card


def _summary_names(compiled: CompiledQuestion) -> dict[str, str]:
    """A named summary's `name:` -> its result column (`Exposure` -> `sum`)."""
    last = compiled.query["stages"][-1] if compiled.query.get("stages") else {}
    summaries = last.get("aggregation") or []
    columns = compiled.columns or []
    first = len(columns) - len(summaries)
    out: dict[str, str] = {}
    for index, clause in enumerate(summaries):
        options = clause[1] if isinstance(clause, list) and isinstance(clause[1], dict) else {}
        label = options.get("display-name")
        if isinstance(label, str) and 0 <= first + index < len(columns):
            out[label] = columns[first + index].name
    return out


def _viz_errors(
    loaded: LoadedFile,
    where: tuple[Any, ...],
    question: Question,
    columns: list[Column],
    column_of: Mapping[str, str],
) -> list[SpecError]:
    """A `viz` column the question does not return (checked when its columns are known)."""
    names = [c.name for c in columns]
    return [
        loaded.locator.error(
            (*where, "viz", key),
            f"column `{column}` is not returned by the question (it returns: {', '.join(names)})",
            hint="name a result column: a grouped column keeps its name, summaries are count, sum, ...",
        )
        for key, column in question.viz.columns()
        if column_of.get(column, column) not in names
    ]


def _template_tags(
    loaded: LoadedFile,
    where: tuple[Any, ...],
    question: Question,
    sql: str,
    schema: MetadataSchema,
    state: DesiredState,
) -> dict[str, TemplateTag]:
    """A SQL question's template tags, field filters resolved to this Metabase's field ids."""
    spec = loaded.spec
    ident = card_identity(spec.key, question.key)
    tags: dict[str, TemplateTag] = {}
    for tag in resolve_tags(spec, question, sql):
        tag_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ident}/{tag.name}"))
        values: dict[str, Any] = {"id": tag_id, "name": tag.name, "display-name": tag.label, "type": tag.kind}
        if tag.kind == "dimension":
            assert tag.field is not None
            table, _, column = tag.field.rpartition(".")
            try:
                field_id = schema.metadata.field_id(table, column)
            except MetabaseNotFound as exc:
                state.errors.append(
                    loaded.locator.error(
                        (*where, "tags", tag.name, "field"),
                        f"`{tag.field}` does not exist in Metabase database `{schema.metadata.name}`: "
                        f"{exc.message}",
                        hint="check the table and column names (views count as tables)",
                    )
                )
                field_id = 0
            values["dimension"] = ["field", field_id, None]
            values["widget-type"] = tag.widget
        else:
            values["required"] = tag.required
        wired = spec.filter(tag.filter_key) if tag.filter_key and isinstance(spec, DashboardSpec) else None
        default = tag.default if tag.default is not None else (wired.default if wired else None)
        if isinstance(default, list) and len(default) == 1:
            default = default[0]  # a filter's one-value list is the variable's value
        if default is not None and tag.kind != "dimension":
            # The card must also run alone (and in apply's check), not only on the dashboard.
            values["default"] = default
        elif tag.default is not None:
            values["default"] = tag.default
        tags[tag.name] = TemplateTag.model_validate(values)
    return tags


def _desired_dashboard(
    loaded: LoadedFile, spec: DashboardSpec, compiled: dict[str, CompiledQuestion]
) -> DesiredDashboard:
    params = [
        Parameter(
            id=parameter_id(spec.key, f.key),
            name=f.name,
            slug=f.key,
            type=f.parameter_type,
            sectionId=f.section,
            **({"default": parameter_default(f.default, f.section)} if f.default is not None else {}),
            **({"required": True} if f.required else {}),
        )
        for f in spec.filters
    ]
    dashcards: list[DesiredDashcard] = []
    placements = place(spec)
    for index, card in enumerate(spec.cards):
        where = placements[index]
        if not isinstance(card, QueryCard):
            dashcards.append(DesiredDashcard(None, where.tab, where, _virtual_settings(card), []))
            continue
        ident = card_identity(spec.key, card.key)
        mappings: list[tuple[str, list[Any]]] = []
        if card.is_native:
            for tag in resolve_tags(spec, card, loaded.sql[card.key]):
                if tag.filter_key and spec.filter(tag.filter_key):
                    kind = "dimension" if tag.kind == "dimension" else "variable"
                    target = [kind, ["template-tag", tag.name]]  # a variable of the SQL
                    mappings.append((parameter_id(spec.key, tag.filter_key), target))
        elif ident in compiled:
            for column, ref in compiled[ident].wiring.items():
                filter_key = card.filters[column]
                mappings.append((parameter_id(spec.key, filter_key), ["dimension", ref, {"stage-number": 0}]))
        dashcards.append(DesiredDashcard(ident, where.tab, where, {}, sorted(mappings, key=repr)))
    return DesiredDashboard(
        key=spec.key,
        name=spec.name,
        description=spec.description,
        collection_path=spec.collection_path,
        width=spec.width,
        parameters=params,
        tabs=list(spec.tabs),
        dashcards=dashcards,
    )
