"""Executes a Plan through the Metabase client, records each outcome, then verifies and runs cards.

Order matters for recovery: collections, then cards (found again by their key if a run dies), then
each dashboard (created with its filters, which identify it, then filled by one PUT of the whole
dashboard: tabs, dashcards and filters). Unchanged objects get no request at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from provisioner.compare import card_differences, dashboard_differences, kept_tab
from provisioner.desired import DesiredCard, DesiredDashboard
from provisioner.identity import identity_of
from provisioner.metabase.client import MetabaseClient
from provisioner.metabase.models import (
    CardCreate,
    CardUpdate,
    Collection,
    CollectionCreate,
    Dashboard,
    DashboardCreate,
    DashboardUpdate,
    DashCard,
    NativeDatasetQuery,
    NativeQuery,
    ParameterMapping,
    Tab,
)
from provisioner.plan import Action, Plan
from provisioner.progress import NullProgress, Progress

_DONE = {"create": "created", "update": "updated", "unchanged": "unchanged", "archive": "archived"}


@dataclass
class Outcome:
    """What happened to one object: created, updated, unchanged or archived."""

    kind: str
    action: str
    key: str
    name: str
    id: int | None
    changes: list[str] = field(default_factory=list)
    url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "action": self.action, "key": self.key, "name": self.name}
        for name in ("id", "url"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.changes:
            out["changes"] = self.changes
        return out


@dataclass
class FailedQuery:
    """A card whose SQL Metabase could not run after apply."""

    key: str
    name: str
    card_id: int
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "name": self.name, "card_id": self.card_id, "error": self.error}


@dataclass
class ApplyResult:
    """Every object's outcome, dashboard URLs, queries that failed, and read-back mismatches."""

    outcomes: list[Outcome]
    failed_queries: list[FailedQuery] = field(default_factory=list)
    verify_problems: list[str] = field(default_factory=list)
    requests: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed_queries and not self.verify_problems

    @property
    def dashboard_urls(self) -> dict[str, str]:
        return {
            o.key: o.url for o in self.outcomes if o.kind == "dashboard" and o.url and o.action != "archived"
        }

    def summary(self) -> dict[str, int]:
        counts = {"created": 0, "updated": 0, "archived": 0, "unchanged": 0}
        for outcome in self.outcomes:
            counts[outcome.action] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "summary": self.summary(),
            "objects": [o.to_dict() for o in self.outcomes],
            "dashboards": self.dashboard_urls,
            "failed_queries": [f.to_dict() for f in self.failed_queries],
            "verify_problems": self.verify_problems,
        }

    def describe(self) -> str:
        """The result as lines for people."""
        lines = []
        for o in self.outcomes:
            detail = f" ({', '.join(o.changes)})" if o.changes else ""
            lines.append(f"{o.action:<9} {o.kind:<10} {o.name}{detail}" + (f"  {o.url}" if o.url else ""))
        for f in self.failed_queries:
            lines.append(f"query failed: {f.name} (card {f.card_id}): {f.error}")
        lines += [f"verify: {p}" for p in self.verify_problems]
        s = self.summary()
        lines.append(
            f"{s['created']} created, {s['updated']} updated, "
            f"{s['archived']} archived, {s['unchanged']} unchanged"
        )
        return "\n".join(lines)


def _card_body(card: DesiredCard, collection_id: int | None) -> dict[str, Any]:
    return {
        "name": card.name,
        "display": card.display,
        "description": card.description,
        "dataset_query": NativeDatasetQuery(
            database=card.database_id, native=NativeQuery(query=card.sql, template_tags=card.template_tags)
        ),
        "visualization_settings": card.visualization_settings,
        "collection_id": collection_id,
    }


def execute(
    plan: Plan,
    client: MetabaseClient,
    *,
    metabase_url: str,
    progress: Progress | None = None,
    run_cards: bool = True,
) -> ApplyResult:
    """Carry out the plan; raises MetabaseError when Metabase refuses a write (re-running resumes)."""
    progress = progress or NullProgress()
    start = client.request_count
    outcomes: list[Outcome] = []
    collection_ids: dict[tuple[str, ...], int] = {}
    card_ids: dict[str, int] = {}
    changed_cards: list[tuple[DesiredCard, int]] = []
    written_dashboards: list[tuple[DesiredDashboard, int]] = []

    def record(action: Action, object_id: int | None, url: str | None = None) -> None:
        outcomes.append(
            Outcome(
                action.kind, _DONE[action.action], action.key, action.name, object_id, action.changes, url
            )
        )

    for action in plan.actions:
        if action.kind != "collection":
            continue
        path: tuple[str, ...] = action.desired
        if action.action == "create":
            progress.info(f"creating collection {action.key}")
            created: Collection = client.create_collection(
                CollectionCreate(name=path[-1], parent_id=collection_ids.get(path[:-1]))
            )
            assert isinstance(created.id, int)
            collection_ids[path] = created.id
            record(action, created.id)
        else:
            assert action.id is not None
            collection_ids[path] = action.id
            record(action, action.id)

    for action in plan.actions:
        if action.kind != "card" or action.action == "archive":
            continue
        card: DesiredCard = action.desired
        collection_id = collection_ids.get(card.collection_path)
        if action.action == "create":
            progress.info(f"creating card {action.name}")
            made = client.create_card(CardCreate(**_card_body(card, collection_id)))
            card_ids[card.ident] = made.id
            changed_cards.append((card, made.id))
            record(action, made.id)
        elif action.action == "update":
            assert action.id is not None
            progress.info(f"updating card {action.name}: {', '.join(action.changes)}")
            extra = {"archived": False} if "archived" in action.changes else {}
            client.update_card(action.id, CardUpdate(**_card_body(card, collection_id), **extra))
            card_ids[card.ident] = action.id
            changed_cards.append((card, action.id))
            record(action, action.id)
        else:
            assert action.id is not None
            card_ids[card.ident] = action.id
            record(action, action.id)

    for action in plan.actions:
        if action.kind != "dashboard" or action.action == "archive":
            continue
        desired: DesiredDashboard = action.desired
        collection_id = collection_ids.get(desired.collection_path)
        url_of = f"{metabase_url.rstrip('/')}/dashboard/"
        if action.action == "unchanged":
            record(action, action.id, f"{url_of}{action.id}")
            continue
        actual: Dashboard | None = action.actual
        if action.action == "create":
            progress.info(f"creating dashboard {action.name}")
            # Created with its filters: their deterministic ids identify it should the PUT below fail.
            actual = client.create_dashboard(
                DashboardCreate(
                    name=desired.name,
                    description=desired.description,
                    collection_id=collection_id,
                    parameters=desired.parameters,
                )
            )
        else:
            progress.info(f"updating dashboard {action.name}: {', '.join(action.changes)}")
        assert actual is not None
        tabs, dashcards = dashcards_body(desired, actual, card_ids)
        client.update_dashboard(
            actual.id,
            DashboardUpdate(
                name=desired.name,
                description=desired.description,
                collection_id=collection_id,
                width=desired.width,  # type: ignore[arg-type]
                parameters=desired.parameters,
                tabs=tabs,
                dashcards=dashcards,
                **({"archived": False} if "archived" in action.changes else {}),
            ),
        )
        written_dashboards.append((desired, actual.id))
        record(action, actual.id, f"{url_of}{actual.id}")

    for action in plan.actions:
        if action.action != "archive":
            continue
        assert action.id is not None
        progress.info(f"archiving {action.kind} {action.name}")
        if action.kind == "card":
            client.update_card(action.id, CardUpdate(archived=True))
        else:
            client.update_dashboard(action.id, DashboardUpdate(archived=True))
        record(action, action.id)

    result = ApplyResult(outcomes)
    desired_cards = {c.ident: c for c, _ in changed_cards}
    for desired, dashboard_id in written_dashboards:
        result.verify_problems += _verify(client, desired, dashboard_id, collection_ids, desired_cards)
    if run_cards:
        for card, card_id in changed_cards:
            answer = client.run_card(card_id)
            if not answer.ok:
                said = (answer.error or "").strip().splitlines() or [answer.status or "failed"]
                error = said[0][:300]
                result.failed_queries.append(
                    FailedQuery(f"{card.dashboard_key}/{card.key}", card.name, card_id, error)
                )
    result.requests = client.request_count - start
    return result


def _verify(
    client: MetabaseClient,
    desired: DesiredDashboard,
    dashboard_id: int,
    collection_ids: dict[tuple[str, ...], int],
    desired_cards: dict[str, DesiredCard],
) -> list[str]:
    """Read the dashboard back: what Metabase stored must equal what was written."""
    got = client.get_dashboard(dashboard_id)
    problems = [
        f"dashboard {desired.name!r} (id {dashboard_id}) differs after apply: {diff}"
        for diff in dashboard_differences(desired, got, collection_ids.get(desired.collection_path))
    ]
    for dashcard in got.dashcards:
        card = dashcard.card
        ident = identity_of(card)
        if card is None or ident not in desired_cards:
            continue
        wanted = desired_cards[ident]
        for diff in card_differences(wanted, card, collection_ids.get(wanted.collection_path)):
            problems.append(f"card {wanted.name!r} (id {card.id}) differs after apply: {diff}")
    return problems


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
