"""Desired against actual, field by field: the names of what differs (drift from UI edits included).

Only the fields the tool owns are compared; server-managed ones (ids, timestamps, hydrated objects) never
are.
"""

from __future__ import annotations

from typing import Any

from provisioner.desired import DesiredCard, DesiredDashboard
from provisioner.identity import identity_of
from provisioner.metabase.models import Card, Dashboard, Parameter, Tab, TemplateTag


def _tag_canon(tag: TemplateTag) -> dict[str, Any]:
    return {
        "name": tag.name,
        "display-name": tag.display_name,
        "type": tag.type,
        "field": tag.dimension_field_id,
        "widget-type": tag.widget_type if tag.type == "dimension" else None,
        "required": bool(tag.required) if tag.type != "dimension" else None,
        "default": tag.default,
    }


def card_differences(desired: DesiredCard, actual: Card, collection_id: int | None) -> list[str]:
    """Names of the card fields that differ (drift from UI edits included)."""
    diffs: list[str] = []
    if actual.name != desired.name:
        diffs.append("name")
    if (actual.description or None) != desired.description:
        diffs.append("description")
    if actual.display != desired.display:
        diffs.append("display")
    if (actual.native_sql or "").strip() != desired.sql:
        diffs.append("sql")
    actual_tags = {k: _tag_canon(v) for k, v in actual.template_tags.items()}
    if actual_tags != {k: _tag_canon(v) for k, v in desired.template_tags.items()}:
        diffs.append("template_tags")
    if actual.visualization_settings != desired.visualization_settings:
        diffs.append("visualization_settings")
    if collection_id is not None and actual.collection_id != collection_id:
        diffs.append("collection")
    if actual.archived:
        diffs.append("archived")
    if actual.database_id is not None and actual.database_id != desired.database_id:
        diffs.append("database")
    return diffs


def _param_canon(param: Parameter) -> dict[str, Any]:
    return {
        "id": param.id,
        "name": param.name,
        "slug": param.slug,
        "type": param.type,
        "sectionId": param.sectionId,
        "default": param.default,
        "required": bool(param.required),
    }


def _dashcard_canon(
    card_ident: str | None,
    tab: str | None,
    row: int,
    col: int,
    width: int,
    height: int,
    settings: dict[str, Any],
    mappings: list[tuple[str, list[Any]]],
) -> tuple[Any, ...]:
    return (
        card_ident,
        tab,
        row,
        col,
        width,
        height,
        repr(_settings_canon(settings)),
        repr(sorted(mappings)),
    )


def _settings_canon(settings: dict[str, Any]) -> Any:
    # A text or heading card is compared on what the YAML says (kind, text, background), not on the
    # scaffolding of `virtual_card`, which Metabase versions store differently.
    virtual = settings.get("virtual_card")
    if isinstance(virtual, dict):
        rest = {k: v for k, v in settings.items() if k not in ("virtual_card", "text", "dashcard.background")}
        return (
            virtual.get("display"),
            settings.get("text"),
            bool(settings.get("dashcard.background", True)),
            sorted(rest.items()),
        )
    return sorted(settings.items())


def _desired_dashcards(desired: DesiredDashboard) -> list[tuple[Any, ...]]:
    return sorted(
        (
            _dashcard_canon(
                d.card_ident,
                d.tab,
                d.place.row,
                d.place.col,
                d.place.width,
                d.place.height,
                d.visualization_settings,
                d.mappings,
            )
            for d in desired.dashcards
        ),
        key=repr,
    )


def kept_tab(desired: DesiredDashboard, actual: Dashboard | None) -> Tab | None:
    """The one tab kept when the YAML has no tabs but the dashboard has some.

    Metabase rejects a PUT that leaves a tabbed dashboard without tabs ("every card has a tab" is
    checked against the tabs it had), and its UI never goes back below one tab either: a single
    tab stands for "no tabs".
    """
    if desired.tabs or actual is None or not actual.tabs:
        return None
    first = sorted(actual.tabs, key=lambda t: (t.position or 0, t.id))[0]
    return Tab(id=first.id, name=first.name)


def _actual_tab_names(desired: DesiredDashboard, actual: Dashboard) -> dict[int, str | None]:
    kept = kept_tab(desired, actual)
    if kept is not None and len(actual.tabs) == 1:
        return {kept.id: None}
    return {t.id: t.name for t in actual.tabs}


def _actual_dashcards(desired: DesiredDashboard, actual: Dashboard) -> list[tuple[Any, ...]]:
    tab_names = _actual_tab_names(desired, actual)
    out = []
    for d in actual.dashcards:
        ident = (identity_of(d.card) or f"card:{d.card.id}") if d.card is not None else None
        mappings = [(m.parameter_id, _strip_target(m.target)) for m in d.parameter_mappings]
        out.append(
            _dashcard_canon(
                ident,
                tab_names.get(d.dashboard_tab_id) if d.dashboard_tab_id is not None else None,
                d.row,
                d.col,
                d.size_x,
                d.size_y,
                d.visualization_settings,
                mappings,
            )
        )
    return sorted(out, key=repr)


def _strip_target(target: list[Any]) -> list[Any]:
    # Newer servers add a third options element ({"stage-number": 0}); it means the same target.
    return list(target[:2]) if len(target) > 2 and isinstance(target[2], dict) else list(target)


def dashboard_differences(
    desired: DesiredDashboard, actual: Dashboard, collection_id: int | None
) -> list[str]:
    """Names of the dashboard fields that differ: name, description, filters, tabs, cards, ..."""
    diffs: list[str] = []
    if actual.name != desired.name:
        diffs.append("name")
    if (actual.description or None) != desired.description:
        diffs.append("description")
    if collection_id is not None and actual.collection_id != collection_id:
        diffs.append("collection")
    if (actual.width or "fixed") != desired.width:
        diffs.append("width")
    if [_param_canon(p) for p in actual.parameters] != [_param_canon(p) for p in desired.parameters]:
        diffs.append("filters")
    names = _actual_tab_names(desired, actual)
    ordered = sorted(actual.tabs, key=lambda t: (t.position or 0, t.id))
    if [names[t.id] for t in ordered if names[t.id] is not None] != desired.tabs:
        diffs.append("tabs")
    if _actual_dashcards(desired, actual) != _desired_dashcards(desired):
        diffs.append("cards")
    if actual.archived:
        diffs.append("archived")
    return diffs
