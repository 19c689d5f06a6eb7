"""Desired state (from the YAML) against actual state (read from Metabase) -> a Plan of Actions.

No I/O here: `observe.py` reads Metabase, `apply.py` executes. Identity never depends on local
state: a managed card carries its dashboard and card keys in its `visualization_settings`
(`provisioner.key`, invisible in the UI and kept by Metabase); a dashboard is recognised by the
managed cards on it and by its deterministic filter ids, whatever its name. (Metabase ignores an
`entity_id` sent on `POST /api/card` and generates its own, so entity ids cannot carry identity.)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from provisioner.errors import MetabaseNotFound, SpecError
from provisioner.layout import Placement, place
from provisioner.metabase.models import (
    Card,
    Collection,
    Dashboard,
    DashCard,
    DatabaseMetadata,
    Parameter,
    ParameterMapping,
    Tab,
    TemplateTag,
)
from provisioner.spec import (
    DISPLAYS,
    KEY_SETTING,
    DashboardSpec,
    HeadingCard,
    LoadedDashboard,
    QueryCard,
    TextCard,
    Viz,
    card_identity,
    identity_of,
    parameter_id,
    resolve_tags,
)

ActionName = Literal["create", "update", "unchanged", "archive"]


# ---------------------------------------------------------------------------------------------
# Desired state.


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


# ---------------------------------------------------------------------------------------------
# Actual state (filled by observe.py).


@dataclass
class ActualState:
    """What Metabase holds for the collections the YAML names."""

    collections: dict[tuple[str, ...], Collection] = field(default_factory=dict)
    cards: dict[str, Card] = field(default_factory=dict)  # managed cards by identity
    dashboards: dict[str, Dashboard] = field(default_factory=dict)  # managed dashboards by key
    requests: int = 0
    # False when read through the remembered ids (observe.py): only those dashboards and their cards
    # were looked at, so a missing object may exist elsewhere and nothing may be created from it.
    complete: bool = True


def dashboard_key_of(dashboard: Dashboard, keys_by_parameter_id: dict[str, str]) -> str | None:
    """The key of a managed dashboard: from its managed cards, else from its filter ids; None if not ours."""
    for dashcard in dashboard.dashcards:
        card = dashcard.card
        ident = identity_of(card)
        if ident is not None:
            return ident.split("/", 1)[0]
    for param in dashboard.parameters:
        if param.id in keys_by_parameter_id:
            return keys_by_parameter_id[param.id]
    return None


# ---------------------------------------------------------------------------------------------
# Comparison: only the fields we own; server-managed ones (ids, timestamps, hydrated objects) are
# never compared.


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


# ---------------------------------------------------------------------------------------------
# The plan.


@dataclass
class Action:
    """One object and what apply does to it."""

    kind: Literal["collection", "card", "dashboard"]
    action: ActionName
    key: str
    name: str
    id: int | None = None
    changes: list[str] = field(default_factory=list)
    desired: Any = None  # DesiredCard / DesiredDashboard / collection path
    actual: Any = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "action": self.action, "key": self.key, "name": self.name}
        if self.id is not None:
            out["id"] = self.id
        if self.changes:
            out["changes"] = self.changes
        return out


@dataclass
class Plan:
    """Every managed object with its action; `has_changes` when apply would write."""

    actions: list[Action]
    requests: int = 0

    @property
    def has_changes(self) -> bool:
        return any(a.action != "unchanged" for a in self.actions)

    def summary(self) -> dict[str, int]:
        counts = {"create": 0, "update": 0, "archive": 0, "unchanged": 0}
        for action in self.actions:
            counts[action.action] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "has_changes": self.has_changes,
            "summary": self.summary(),
            "actions": [a.to_dict() for a in self.actions],
        }

    def describe(self) -> str:
        """The plan as lines for people."""
        symbols = {"create": "+", "update": "~", "archive": "-", "unchanged": "="}
        lines = []
        for a in self.actions:
            detail = f" ({', '.join(a.changes)})" if a.changes else ""
            lines.append(f"{symbols[a.action]} {a.action:<9} {a.kind:<10} {a.name}{detail}")
        s = self.summary()
        lines.append(
            f"{s['create']} to create, {s['update']} to update, "
            f"{s['archive']} to archive, {s['unchanged']} unchanged"
        )
        return "\n".join(lines)


# The id of a collection apply has yet to create: no existing object is in it, so all move there.
_NOT_CREATED_YET = -1


def _collection_id(actual: ActualState, path: tuple[str, ...]) -> int:
    found = actual.collections.get(path)
    return found.id if found is not None and isinstance(found.id, int) else _NOT_CREATED_YET


def build_plan(
    dashboards: list[DesiredDashboard],
    cards: list[DesiredCard],
    actual: ActualState,
    *,
    prune: bool = False,
    prune_scope: set[str] | None = None,
) -> Plan:
    """What apply would do to reach the desired state from the actual one.

    `prune_scope` limits pruning to the managed objects of these dashboard keys (None: all found).
    """
    actions: list[Action] = []
    paths: list[tuple[str, ...]] = []
    for d in dashboards:
        for depth in range(1, len(d.collection_path) + 1):
            if d.collection_path[:depth] not in paths:
                paths.append(d.collection_path[:depth])
    for path in paths:
        existing = actual.collections.get(path)
        actions.append(
            Action(
                "collection",
                "unchanged" if existing else "create",
                "/".join(path),
                "/".join(path),
                id=existing.id if existing and isinstance(existing.id, int) else None,
                desired=path,
                actual=existing,
            )
        )
    for card in cards:
        existing = actual.cards.get(card.ident)
        key = f"{card.dashboard_key}/{card.key}"
        if existing is None:
            actions.append(Action("card", "create", key, card.name, desired=card))
            continue
        coll_id = _collection_id(actual, card.collection_path)
        diffs = card_differences(card, existing, coll_id)
        actions.append(
            Action(
                "card",
                "update" if diffs else "unchanged",
                key,
                card.name,
                id=existing.id,
                changes=diffs,
                desired=card,
                actual=existing,
            )
        )
    for dash in dashboards:
        existing_dash = actual.dashboards.get(dash.key)
        if existing_dash is None:
            actions.append(Action("dashboard", "create", dash.key, dash.name, desired=dash))
            continue
        coll_id = _collection_id(actual, dash.collection_path)
        # A card still to be created is missing from the actual dashcards, so `cards` differs here
        # and the dashboard's PUT places it: no separate bookkeeping of new cards is needed.
        diffs = dashboard_differences(dash, existing_dash, coll_id)
        actions.append(
            Action(
                "dashboard",
                "update" if diffs else "unchanged",
                dash.key,
                dash.name,
                id=existing_dash.id,
                changes=diffs,
                desired=dash,
                actual=existing_dash,
            )
        )
    if prune:
        wanted_cards = {c.ident for c in cards}
        for key, existing in sorted(actual.cards.items()):
            in_scope = prune_scope is None or key.split("/", 1)[0] in prune_scope
            if key not in wanted_cards and not existing.archived and in_scope:
                actions.append(Action("card", "archive", key, existing.name, id=existing.id, actual=existing))
        wanted_dashboards = {d.key for d in dashboards}
        for key, existing_dash in sorted(actual.dashboards.items()):
            in_scope = prune_scope is None or key in prune_scope
            if key not in wanted_dashboards and not existing_dash.archived and in_scope:
                actions.append(
                    Action(
                        "dashboard",
                        "archive",
                        key,
                        existing_dash.name,
                        id=existing_dash.id,
                        actual=existing_dash,
                    )
                )
    return Plan(actions, requests=actual.requests)


def existing_dashcard_ids(actual: Dashboard) -> dict[Any, int]:
    """Ids of the actual dashcards by identity (the card's key, or ("text", n) in reading order)."""
    out: dict[Any, int] = {}
    text_index = 0
    for d in sorted(actual.dashcards, key=lambda d: (d.row, d.col, d.id)):
        if d.card is not None:
            out.setdefault(identity_of(d.card) or f"card:{d.card.id}", d.id)
        elif d.card_id is None:
            out[("text", text_index)] = d.id
            text_index += 1
    return out


def _existing_tab_ids(desired: list[str], actual: list[Tab]) -> dict[str, int]:
    """The actual tab id to keep for each desired tab name.

    By name first; then the desired tabs left over take the actual tabs left over in order, so a tab
    renamed in the YAML keeps its id (Metabase's tab links carry it: `?tab=12-detail`).
    """
    ordered = sorted(actual, key=lambda t: (t.position or 0, t.id))
    by_name = {t.name: t.id for t in reversed(ordered)}  # a duplicated name: the first tab wins
    kept = {name: by_name[name] for name in desired if name in by_name}
    spare = [t.id for t in ordered if t.id not in kept.values()]
    for name in (n for n in desired if n not in kept):
        if not spare:
            break
        kept[name] = spare.pop(0)
    return kept


def dashcards_body(
    desired: DesiredDashboard, actual: Dashboard | None, card_ids: dict[str, int]
) -> tuple[list[Tab], list[DashCard]]:
    """Tabs and dashcards for the one PUT: existing ids kept (links survive), new ones negative."""
    existing_tabs = _existing_tab_ids(desired.tabs, actual.tabs if actual else [])
    tab_ids = {name: existing_tabs.get(name, -(i + 1)) for i, name in enumerate(desired.tabs)}
    tabs = [Tab(id=tab_ids[name], name=name) for name in desired.tabs]
    kept = kept_tab(desired, actual)
    if kept is not None:
        tabs = [kept]
    known = existing_dashcard_ids(actual) if actual else {}
    dashcards: list[DashCard] = []
    next_new = -1
    text_index = 0
    for d in sorted(desired.dashcards, key=lambda d: (d.place.row, d.place.col)):
        if d.card_ident is None:
            ident: Any = ("text", text_index)
            text_index += 1
        else:
            ident = d.card_ident
        dashcard_id = known.pop(ident, None)
        if dashcard_id is None:
            dashcard_id, next_new = next_new, next_new - 1
        card_id = card_ids.get(d.card_ident) if d.card_ident else None
        dashcards.append(
            DashCard(
                id=dashcard_id,
                card_id=card_id,
                dashboard_tab_id=kept.id if kept is not None else (tab_ids.get(d.tab) if d.tab else None),
                row=d.place.row,
                col=d.place.col,
                size_x=d.place.width,
                size_y=d.place.height,
                parameter_mappings=[
                    ParameterMapping(parameter_id=pid, card_id=card_id, target=target)
                    for pid, target in d.mappings
                ],
                visualization_settings=d.visualization_settings,
                series=[],
            )
        )
    return tabs, dashcards
