"""Desired state: what the YAML asks Metabase to hold, with names resolved against its metadata."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from provisioner.errors import MetabaseNotFound, SpecError
from provisioner.identity import KEY_SETTING, card_identity, parameter_id
from provisioner.metabase.models import DatabaseMetadata, Parameter, TemplateTag
from provisioner.spec import LoadedDashboard
from provisioner.spec.layout import Placement, place
from provisioner.spec.models import DISPLAYS, DashboardSpec, HeadingCard, QueryCard, TextCard, Viz
from provisioner.spec.sql import resolve_tags


@dataclass
class DesiredCard:
    dashboard_key: str
    key: str
    ident: str  # "<dashboard key>/<card key>"
    name: str
    description: str | None
    display: str
    sql: str
    template_tags: dict[str, TemplateTag]
    visualization_settings: dict[str, Any]
    collection_path: tuple[str, ...]
    database_id: int


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


def card_visualization_settings(dashboard_key: str, card: QueryCard) -> dict[str, Any]:
    """The card's `visualization_settings`: implied by `display`, then `viz`, then the identity key."""
    _, implied = DISPLAYS[card.display]
    settings: dict[str, Any] = dict(implied)
    viz: Viz = card.viz
    xs = [viz.x] if isinstance(viz.x, str) else list(viz.x or [])
    ys = [viz.y] if isinstance(viz.y, str) else list(viz.y or [])
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
    settings[KEY_SETTING] = card_identity(dashboard_key, card.key)
    return settings


def _virtual_settings(card: TextCard | HeadingCard) -> dict[str, Any]:
    display = "heading" if isinstance(card, HeadingCard) else "text"
    text = card.heading if isinstance(card, HeadingCard) else card.text
    return {
        "virtual_card": {
            "name": None,
            "display": display,
            "visualization_settings": {},
            "dataset_query": {},
            "archived": False,
        },
        "text": text,
        "dashcard.background": display != "heading",
    }


def parameter_default(value: Any, section: str) -> Any:
    """A filter default as Metabase stores it: a list of values, except for dates (`past30days`)."""
    if section == "date" or isinstance(value, list):
        return value
    return [value]


def desired_state(
    loaded: LoadedDashboard, database_id: int, metadata: DatabaseMetadata
) -> tuple[DesiredDashboard, list[DesiredCard], list[SpecError]]:
    """The dashboard and cards the YAML asks for; field filters resolved to Metabase field ids."""
    spec: DashboardSpec = loaded.spec
    errors: list[SpecError] = []
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
    cards: list[DesiredCard] = []
    dashcards: list[DesiredDashcard] = []
    placements = place(spec)
    for index, card in enumerate(spec.cards):
        where = placements[index]
        if not isinstance(card, QueryCard):
            dashcards.append(DesiredDashcard(None, where.tab, where, _virtual_settings(card), []))
            continue
        sql = loaded.sql[card.key].strip()
        ident = card_identity(spec.key, card.key)
        tags: dict[str, TemplateTag] = {}
        mappings: list[tuple[str, list[Any]]] = []
        for tag in resolve_tags(spec, card, sql):
            tag_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ident}/{tag.name}"))
            values: dict[str, Any] = {
                "id": tag_id,
                "name": tag.name,
                "display-name": tag.label,
                "type": tag.kind,
            }
            if tag.kind == "dimension":
                assert tag.field is not None
                table, _, column = tag.field.rpartition(".")
                try:
                    field_id = metadata.field_id(table, column)
                except MetabaseNotFound as exc:
                    errors.append(
                        loaded.locator.error(
                            ("cards", index, "tags", tag.name, "field"),
                            f"`{tag.field}` does not exist in Metabase database `{metadata.name}`: "
                            f"{exc.message}",
                            hint="check the table and column names (views count as tables)",
                        )
                    )
                    field_id = 0
                values["dimension"] = ["field", field_id, None]
                values["widget-type"] = tag.widget
            else:
                values["required"] = tag.required
            wired = spec.filter(tag.filter_key) if tag.filter_key else None
            default = tag.default if tag.default is not None else (wired.default if wired else None)
            if isinstance(default, list) and len(default) == 1:
                default = default[0]  # a filter's one-value list is the variable's value
            if default is not None and tag.kind != "dimension":
                # The card must also run alone (and in apply's check), not only on the dashboard.
                values["default"] = default
            elif tag.default is not None:
                values["default"] = tag.default
            tags[tag.name] = TemplateTag.model_validate(values)
            if tag.filter_key and spec.filter(tag.filter_key):
                kind = "dimension" if tag.kind == "dimension" else "variable"
                mappings.append((parameter_id(spec.key, tag.filter_key), [kind, ["template-tag", tag.name]]))
        cards.append(
            DesiredCard(
                dashboard_key=spec.key,
                key=card.key,
                ident=ident,
                name=card.name,
                description=card.description,
                display=DISPLAYS[card.display][0],
                sql=sql,
                template_tags=tags,
                visualization_settings=card_visualization_settings(spec.key, card),
                collection_path=spec.collection_path,
                database_id=database_id,
            )
        )
        dashcards.append(DesiredDashcard(ident, where.tab, where, {}, sorted(mappings)))
    dashboard = DesiredDashboard(
        key=spec.key,
        name=spec.name,
        description=spec.description,
        collection_path=spec.collection_path,
        width=spec.width,
        parameters=params,
        tabs=list(spec.tabs),
        dashcards=dashcards,
    )
    return dashboard, cards, errors
