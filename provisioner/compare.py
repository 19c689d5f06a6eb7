"""Desired against actual, field by field: the names of what differs (drift from UI edits included).

Only the fields the tool owns are compared; server-managed ones (ids, timestamps, hydrated objects) never
are.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from provisioner.desired import DesiredCard, DesiredDashboard
from provisioner.identity import identity_of
from provisioner.mbql.normal import NormalizeError, NormalQuery, canonical, from_wire, normal_ref
from provisioner.metabase.models import Card, Dashboard, Parameter, Tab, TemplateTag
from provisioner.translate import MetadataSchema, TranslateError, field_to_names, to_names

UNREADABLE = "(unreadable)"


@dataclass
class Reader:
    """What reading Metabase's ids as the YAML's names takes: each database's schema, managed cards' keys."""

    schemas: dict[int, MetadataSchema] = field(default_factory=dict)
    card_keys: dict[int, str] = field(default_factory=dict)

    def query(self, card: Card) -> NormalQuery | str | None:
        """A query-builder card's query with names; None for SQL; UNREADABLE when it cannot be read."""
        try:
            normal = from_wire(card.dataset_query)
        except NormalizeError:
            return UNREADABLE
        if normal is None:
            return None
        schema = self.schemas.get(card.database_id or -1)
        if schema is None:
            return UNREADABLE
        try:
            return canonical(to_names(normal, schema, self.card_keys))
        except TranslateError:
            return UNREADABLE

    def targets(self, targets: list[list[Any]], card: Card | None) -> list[list[Any]]:
        """Dashboard filters' targets on one card with names (and without the default stage number)."""
        schema = self.schemas.get(card.database_id or -1) if card is not None else None
        stage: Any = None  # the card's first stage, read once for all its targets (reading it is the cost)
        out = []
        for target in targets:
            stage_number = (
                target[2].get("stage-number", 0) if len(target) > 2 and isinstance(target[2], dict) else 0
            )
            ref = target[1] if len(target) > 1 else None
            if not (isinstance(ref, list) and ref and ref[0] == "field"):
                out.append(
                    [target[0], ref]
                    if stage_number == 0
                    else [target[0], ref, {"stage-number": stage_number}]
                )
                continue
            normal = normal_ref(ref)
            if stage is None:
                query = self.query(card) if card is not None else None
                stage = query["stages"][0] if isinstance(query, dict) and query.get("stages") else {}
            if schema is not None:
                with contextlib.suppress(TranslateError):  # a field gone from the metadata reads as a change
                    normal = field_to_names(normal, schema, stage)
            out.append(
                ["dimension", normal]
                if stage_number == 0
                else ["dimension", normal, {"stage-number": stage_number}]
            )
        return out


def tag_canon(tag: TemplateTag) -> dict[str, Any]:
    """What plan compares of a template tag (`field` is the id a field filter points at)."""
    return {
        "name": tag.name,
        "display-name": tag.display_name,
        "type": tag.type,
        "field": tag.dimension_field_id,
        "widget-type": tag.widget_type if tag.type == "dimension" else None,
        "required": bool(tag.required) if tag.type != "dimension" else None,
        "default": tag.default,
    }


def card_differences(
    desired: DesiredCard,
    actual: Card,
    collection_id: int | None,
    reader: Reader,
    dashboard_id: int | None = None,
) -> list[str]:
    """Names of the card fields that differ (drift from UI edits included); a query names its clause.

    `dashboard_id` is the id of the dashboard a dashboard question belongs in, when it exists.
    """
    diffs: list[str] = []
    if actual.name != desired.name:
        diffs.append("name")
    if (actual.description or None) != desired.description:
        diffs.append("description")
    if actual.display != desired.display:
        diffs.append("display")
    if (actual.type or "question") != desired.type:
        diffs.append("type")
    if desired.query is None:
        if (actual.native_sql or "").strip() != desired.sql:
            diffs.append("sql")
        actual_tags = {k: tag_canon(v) for k, v in actual.template_tags.items()}
        if actual_tags != {k: tag_canon(v) for k, v in desired.template_tags.items()}:
            diffs.append("template_tags")
    else:
        diffs += query_differences(desired.query, reader.query(actual))
    diffs += _metadata_differences(desired, actual, reader)
    if desired.dashboard_key is not None and dashboard_id is not None and actual.dashboard_id != dashboard_id:
        diffs.append("dashboard")
    if desired.dashboard_key is None and actual.dashboard_id is not None:
        diffs.append("dashboard")
    if actual.visualization_settings != desired.visualization_settings:
        diffs.append("visualization_settings")
    if collection_id is not None and actual.collection_id != collection_id:
        diffs.append("collection")
    if actual.archived:
        diffs.append("archived")
    if actual.database_id is not None and actual.database_id != desired.database_id:
        diffs.append("database")
    return diffs


# The YAML's names for the clauses of a step, to say which one differs.
_CLAUSE_NAMES = {
    "source-table": "source",
    "source-card": "source",
    "joins": "joins",
    "expressions": "expressions",
    "filters": "filter",
    "aggregation": "summarize",
    "breakout": "group_by",
    "fields": "columns",
    "order-by": "order_by",
    "limit": "limit",
}


def query_differences(desired: NormalQuery, actual: NormalQuery | str | None) -> list[str]:
    """`query.<clause>` for each clause that differs (`query[1].<clause>` in a later step)."""
    if not isinstance(actual, dict):
        return ["query"]
    want, have = desired.get("stages") or [], actual.get("stages") or []
    if len(want) != len(have):
        return ["query.steps"]
    diffs: list[str] = []
    for index, (a, b) in enumerate(zip(want, have, strict=True)):
        prefix = "query" if len(want) == 1 else f"query[{index}]"
        for key in sorted(
            set(a) | set(b), key=lambda k: list(_CLAUSE_NAMES).index(k) if k in _CLAUSE_NAMES else 99
        ):
            if a.get(key) != b.get(key):
                name = f"{prefix}.{_CLAUSE_NAMES.get(key, key)}"
                if name not in diffs:
                    diffs.append(name)
    return diffs


def _metadata_differences(desired: DesiredCard, actual: Card, reader: Reader) -> list[str]:
    """`metadata.<column>` for each described model column whose display name, description or type differ."""
    have = {c.get("name"): c for c in actual.result_metadata or [] if isinstance(c, dict)}
    schema = reader.schemas.get(desired.database_id)
    diffs = []
    for name, meta in desired.metadata.items():
        column = have.get(name, {})
        target = column.get("fk_target_field_id")
        fk_target = None
        if isinstance(target, int) and schema is not None:
            try:
                fk_target = ".".join(schema.field_path(target))
            except TranslateError:
                fk_target = str(target)
        if (
            (meta.display_name is not None and column.get("display_name") != meta.display_name)
            or (meta.description is not None and column.get("description") != meta.description)
            or (meta.semantic is not None and column.get("semantic_type") != meta.semantic)
            or (meta.fk_target is not None and fk_target != meta.fk_target)
        ):
            diffs.append(f"metadata.{name}")
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
        repr(sorted(mappings, key=repr)),
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
                [(pid, desired_target(t)) for pid, t in d.mappings],
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


def _actual_dashcards(desired: DesiredDashboard, actual: Dashboard, reader: Reader) -> list[tuple[Any, ...]]:
    tab_names = _actual_tab_names(desired, actual)
    out = []
    for d in actual.dashcards:
        ident = (identity_of(d.card) or f"card:{d.card.id}") if d.card is not None else None
        targets = reader.targets([m.target for m in d.parameter_mappings], d.card)
        mappings = [(m.parameter_id, t) for m, t in zip(d.parameter_mappings, targets, strict=True)]
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


def desired_target(target: list[Any]) -> list[Any]:
    """A target as the YAML wants it, in the shape `Reader.target` reads Metabase's."""
    if len(target) > 2 and isinstance(target[2], dict):
        stage_number = target[2].get("stage-number", 0)
        return list(target[:2]) if stage_number == 0 else list(target)
    return list(target)


def dashboard_differences(
    desired: DesiredDashboard, actual: Dashboard, collection_id: int | None, reader: Reader
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
    if _actual_dashcards(desired, actual, reader) != _desired_dashcards(desired):
        diffs.append("cards")
    if actual.archived:
        diffs.append("archived")
    return diffs
