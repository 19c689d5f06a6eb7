"""Desired state (from the YAML) against actual state (read from Metabase) -> a Plan of Actions.

No I/O here: `observe.py` reads Metabase, `apply.py` executes, `compare.py` names the differences.
Identity never depends on local state (see identity.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from provisioner.compare import Reader, card_differences, dashboard_differences
from provisioner.desired import DesiredCard, DesiredDashboard
from provisioner.observe import ActualState

ActionName = Literal["create", "update", "unchanged", "archive"]


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
    saved_to: str | None = None  # the file `plan --out` wrote

    @property
    def has_changes(self) -> bool:
        return any(a.action != "unchanged" for a in self.actions)

    def summary(self) -> dict[str, int]:
        counts = {"create": 0, "update": 0, "archive": 0, "unchanged": 0}
        for action in self.actions:
            counts[action.action] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "has_changes": self.has_changes,
            "summary": self.summary(),
            "actions": [a.to_dict() for a in self.actions],
        }
        if self.saved_to:
            out["saved_to"] = self.saved_to
        return out

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
        if self.saved_to:
            lines.append(
                f"plan saved to {self.saved_to}; `provision dashboards apply {self.saved_to}` applies it"
            )
        return "\n".join(lines)


# The id of a collection apply has yet to create: no existing object is in it, so all move there.
_NOT_CREATED_YET = -1


def _collection_id(actual: ActualState, path: tuple[str, ...]) -> int:
    found = actual.collections.get(path)
    return found.id if found is not None and isinstance(found.id, int) else _NOT_CREATED_YET


def ordered_cards(cards: list[DesiredCard]) -> list[DesiredCard]:
    """The cards with every model or question before the ones built on it (otherwise in YAML order)."""
    by_ident = {c.ident: c for c in cards}
    done: list[DesiredCard] = []
    seen: set[str] = set()

    def visit(card: DesiredCard) -> None:
        if card.ident in seen:
            return
        seen.add(card.ident)
        for source in card.sources:
            if source in by_ident:
                visit(by_ident[source])
        done.append(card)

    for card in cards:
        visit(card)
    return done


def build_plan(
    dashboards: list[DesiredDashboard],
    cards: list[DesiredCard],
    actual: ActualState,
    reader: Reader,
    *,
    prune: bool = False,
    prune_scope: set[str] | None = None,
) -> Plan:
    """What apply would do to reach the desired state from the actual one.

    `prune_scope` limits pruning to the managed objects of these file keys (None: all found).
    """
    actions: list[Action] = []
    paths: list[tuple[str, ...]] = []
    for wanted in [*(d.collection_path for d in dashboards), *(c.collection_path for c in cards)]:
        for depth in range(1, len(wanted) + 1):
            if wanted[:depth] not in paths:
                paths.append(wanted[:depth])
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
    for card in ordered_cards(cards):
        found = actual.cards.get(card.ident)
        if found is None:
            actions.append(Action("card", "create", card.ident, card.name, desired=card))
            continue
        coll_id = _collection_id(actual, card.collection_path)
        home = actual.dashboards.get(card.dashboard_key) if card.dashboard_key else None
        diffs = card_differences(card, found, coll_id, reader, home.id if home else None)
        actions.append(
            Action(
                "card",
                "update" if diffs else "unchanged",
                card.ident,
                card.name,
                id=found.id,
                changes=diffs,
                desired=card,
                actual=found,
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
        diffs = dashboard_differences(dash, existing_dash, coll_id, reader)
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
        for key, gone in sorted(actual.cards.items()):
            in_scope = prune_scope is None or key.split("/", 1)[0] in prune_scope
            if key not in wanted_cards and not gone.archived and in_scope:
                actions.append(Action("card", "archive", key, gone.name, id=gone.id, actual=gone))
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
