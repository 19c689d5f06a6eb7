"""Executes a Plan through the Metabase client, records each outcome, then verifies and runs cards.

Order matters for recovery: collections, then cards (found again by their key if a run dies), then
each dashboard (created with its filters, which identify it, then filled by one PUT of the whole
dashboard: tabs, dashcards and filters). Unchanged objects get no request at all. Writes that depend
on nothing still unwritten go out together (the cards of different dashboards, the PUTs of different
dashboards), up to the client's `concurrency` at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

from provisioner.compare import Reader, card_differences, dashboard_differences, kept_tab
from provisioner.desired import DesiredCard, DesiredDashboard
from provisioner.identity import identity_of
from provisioner.mbql.legacy import to_legacy
from provisioner.metabase.client import MetabaseClient
from provisioner.metabase.models import (
    Card,
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
    QueryDatasetQuery,
    ResultColumn,
    Tab,
)
from provisioner.parallel import map_ordered, run_each
from provisioner.plan import Action, Plan
from provisioner.progress import NullProgress, Progress
from provisioner.translate import MetadataSchema, to_ids

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
    backup: str | None = None  # where the previous state of what changed was saved

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
            "backup": self.backup,
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
        if self.backup:
            lines.append(
                f"previous state saved in {self.backup} (`provision dashboards restore` puts it back)"
            )
        return "\n".join(lines)


class _Writer:
    """What turning the YAML's names into this Metabase's ids takes while applying."""

    def __init__(self, reader: Reader, desired_cards: list[DesiredCard]) -> None:
        self.reader = reader
        self.desired_cards = {c.ident: c for c in desired_cards}
        self.card_ids: dict[str, int] = {}  # identity -> id, filled as cards are found or written
        self.dashboard_ids: dict[str, int] = {}

    def schema(self, card: DesiredCard) -> MetadataSchema:
        return self.reader.schemas[card.database_id]

    def dataset_query(self, card: DesiredCard) -> NativeDatasetQuery | QueryDatasetQuery:
        if card.query is None:
            assert card.sql is not None
            native = NativeQuery.model_validate({"query": card.sql, "template-tags": card.template_tags})
            return NativeDatasetQuery(database=card.database_id, native=native)
        with_ids = to_ids(card.query, self.schema(card), self.card_ids)

        def base_type(stage: int, name: str, alias: str | None) -> str:
            return card.column_types.get((stage, alias), {}).get(name, "type/*")

        legacy = to_legacy(with_ids, card.database_id, base_type)
        return QueryDatasetQuery(database=card.database_id, query=legacy["query"])

    def result_metadata(self, card: DesiredCard) -> list[ResultColumn] | None:
        """A model's described columns, for Metabase to keep on top of the metadata it computes."""
        if not card.metadata:
            return None
        schema = self.schema(card)
        types = {c.name: c.base_type for c in card.result_columns or []}
        sources = card.query["stages"][0] if card.query else {}
        table = sources.get("source-table")
        columns = schema.columns(table) if isinstance(table, str) else None
        defaults = {c.name: c.display_name for c in columns or []}
        out = []
        for name, meta in card.metadata.items():
            fk = schema.field_id(meta.fk_target.split(".")) if meta.fk_target else None
            out.append(
                ResultColumn(
                    name=name,
                    display_name=meta.display_name or defaults.get(name) or name,
                    base_type=types.get(name, "type/*"),
                    semantic_type=meta.semantic,
                    description=meta.description,
                    fk_target_field_id=fk,
                )
            )
        return out

    def _place(self, card: DesiredCard, collection_id: int | None) -> dict[str, int | None]:
        """Where the card lives: a dashboard question only names its dashboard (its collection is the
        dashboard's, and sending both must match); any other card names its collection."""
        if card.dashboard_key is not None:
            return {"dashboard_id": self.dashboard_ids[card.dashboard_key]}
        return {"collection_id": collection_id}

    def _fields(self, card: DesiredCard) -> dict[str, Any]:
        return {
            "name": card.name,
            "display": card.display,
            "description": card.description,
            "type": card.type,
            "dataset_query": self.dataset_query(card),
            "visualization_settings": card.visualization_settings,
            "result_metadata": self.result_metadata(card),
        }

    def create(self, card: DesiredCard, collection_id: int | None) -> CardCreate:
        """The POST body of a new card."""
        # Validated as a whole: where the card lives decides which of two keys is set at all.
        return CardCreate.model_validate({**self._fields(card), **self._place(card, collection_id)})

    def update(self, card: DesiredCard, collection_id: int | None, changes: list[str]) -> CardUpdate:
        """The PUT body that makes an existing card what the YAML says (unarchived, moved home)."""
        place = self._place(card, collection_id)
        if card.dashboard_key is None and "dashboard" in changes:
            place["dashboard_id"] = None  # out of its dashboard, into the collection
        archived = {"archived": False} if "archived" in changes else {}
        return CardUpdate.model_validate({**self._fields(card), **place, **archived})

    def target(self, card_ident: str | None, target: list[Any]) -> list[Any]:
        """A dashboard filter's target with ids: a column of a query-builder card as a legacy field ref."""
        if not (len(target) > 1 and isinstance(target[1], list) and target[1][:1] == ["field"]):
            return target
        ref = target[1]
        leaf = ref[-1]
        options = dict(ref[1])
        desired = self.desired_cards.get(card_ident or "")
        schema = self.schema(desired) if desired else None
        if schema is not None and isinstance(options.get("source-field"), list):
            options["source-field"] = schema.field_id(options["source-field"])
        if isinstance(leaf, list) and schema is not None:
            written: list[Any] = ["field", schema.field_id(leaf), options or None]
        else:
            types = desired.column_types.get((0, options.get("join-alias")), {}) if desired else {}
            written = ["field", leaf, {**options, "base-type": types.get(str(leaf), "type/*")}]
        return [target[0], written, *target[2:]]


def new_card_body(card: DesiredCard, reader: Reader, collection_id: int | None) -> CardCreate:
    """The POST /api/card body apply sends for `card` (a card on no dashboard); `metabase check` writes
    its scratch cards with it, so what it probes is what apply writes."""
    return _Writer(reader, [card]).create(card, collection_id)


def execute(
    plan: Plan,
    client: MetabaseClient,
    reader: Reader,
    *,
    metabase_url: str,
    progress: Progress | None = None,
    run_cards: bool = True,
    created: Callable[[Literal["collection", "card", "dashboard"], int, str, str], None] | None = None,
) -> ApplyResult:
    """Carry out the plan; raises MetabaseError when Metabase refuses a write (re-running resumes).

    `created(kind, id, key, name)` hears of each object as soon as it exists (the backup notes them).

    Order: collections, each after its parent; new dashboards (created with their filters, which identify
    them, so that their questions can be saved inside them); cards, every model or question after those it
    is built on; then one PUT per dashboard (tabs, placements, filter wiring); archives last. Within each
    step the writes that do not depend on each other are sent together, up to the client's `concurrency`
    at once (`_writes`); outcomes are recorded in plan order all the same.
    """
    progress = progress or NullProgress()
    start = client.request_count
    concurrency = client.concurrency
    collection_ids: dict[tuple[str, ...], int] = {}
    writer = _Writer(reader, [a.desired for a in plan.actions if a.kind == "card" and a.desired is not None])
    dashboards: dict[str, Dashboard] = {}
    url_of = f"{metabase_url.rstrip('/')}/dashboard/"
    # The outcome of each action (by its position in the plan): recorded in plan order at the end.
    outcomes: dict[int, Outcome] = {}

    def record(index: int, object_id: int | None, url: str | None = None) -> None:
        action = plan.actions[index]
        outcomes[index] = Outcome(
            action.kind, _DONE[action.action], action.key, action.name, object_id, action.changes, url
        )

    def noted(kind: Literal["collection", "card", "dashboard"], object_id: int, action: Action) -> None:
        if created is not None:
            created(kind, object_id, action.key, action.name)

    indexed = list(enumerate(plan.actions))

    # Collections: a new one waits for its parent only when that is new too.
    new_collections: list[tuple[int, Action]] = []
    for index, action in indexed:
        if action.kind != "collection":
            continue
        if action.action == "create":
            new_collections.append((index, action))
        else:
            assert action.id is not None
            collection_ids[action.desired] = action.id
            record(index, action.id)

    def create_collection(item: tuple[int, Action]) -> Collection:
        path: tuple[str, ...] = item[1].desired
        return client.create_collection(
            CollectionCreate(name=path[-1], parent_id=collection_ids.get(path[:-1]))
        )

    def collection_made(index: int, action: Action, made: Collection) -> None:
        assert isinstance(made.id, int)
        collection_ids[action.desired] = made.id
        noted("collection", made.id, action)
        record(index, made.id)

    _writes(
        new_collections,
        waits_for=lambda action, waiting: "/".join(action.desired[:-1]) in waiting,
        label=lambda action: f"creating collection {action.key}",
        write=create_collection,
        written=collection_made,
        concurrency=concurrency,
        progress=progress,
    )

    new_dashboards: list[tuple[int, Action]] = []
    for index, action in indexed:
        if action.kind != "dashboard" or action.action == "archive":
            continue
        if action.action == "create":
            new_dashboards.append((index, action))
        else:
            dashboards[action.desired.key] = action.actual
            writer.dashboard_ids[action.desired.key] = action.actual.id

    def create_dashboard(item: tuple[int, Action]) -> Dashboard:
        desired: DesiredDashboard = item[1].desired
        # Created with its filters: their deterministic ids identify it should a later write fail.
        return client.create_dashboard(
            DashboardCreate(
                name=desired.name,
                description=desired.description,
                collection_id=collection_ids.get(desired.collection_path),
                parameters=desired.parameters,
            )
        )

    def dashboard_made(_index: int, action: Action, made: Dashboard) -> None:
        dashboards[action.desired.key] = made
        writer.dashboard_ids[action.desired.key] = made.id
        noted("dashboard", made.id, action)

    _writes(
        new_dashboards,
        waits_for=lambda _action, _waiting: False,
        label=lambda action: f"creating dashboard {action.name}",
        write=create_dashboard,
        written=dashboard_made,
        concurrency=concurrency,
        progress=progress,
    )

    # Cards: one built on a model or question written by this apply waits until that one is written.
    for _index, action in indexed:  # the cards that exist already
        if action.kind == "card" and action.action != "archive" and action.id is not None:
            writer.card_ids[action.desired.ident] = action.id
    changed: dict[int, tuple[DesiredCard, Card]] = {}
    card_writes: list[tuple[int, Action]] = []
    for index, action in indexed:
        if action.kind != "card" or action.action == "archive":
            continue
        if action.action in ("create", "update"):
            card_writes.append((index, action))
        else:
            assert action.id is not None
            record(index, action.id)

    def write_card(item: tuple[int, Action]) -> Card:
        action = item[1]
        card: DesiredCard = action.desired
        collection_id = collection_ids.get(card.collection_path)
        if action.action == "create":
            return client.create_card(writer.create(card, collection_id))
        assert action.id is not None
        return client.update_card(action.id, writer.update(card, collection_id, action.changes))

    def card_written(index: int, action: Action, card: Card) -> None:
        desired: DesiredCard = action.desired
        if action.action == "create":
            noted("card", card.id, action)
            writer.card_ids[desired.ident] = card.id
            reader.card_keys[card.id] = desired.ident
        changed[index] = (desired, card)
        record(index, card.id if action.action == "create" else action.id)

    def card_label(action: Action) -> str:
        card: DesiredCard = action.desired
        if action.action == "create":
            return f"creating {card.type} {action.name}"
        return f"updating {card.type} {action.name}: {', '.join(action.changes)}"

    _writes(
        card_writes,
        waits_for=lambda action, waiting: any(source in waiting for source in action.desired.sources),
        label=card_label,
        write=write_card,
        written=card_written,
        concurrency=concurrency,
        progress=progress,
    )

    # One PUT per dashboard: the whole dashboard (tabs, dashcards, filters), each independent of the others.
    dashboard_writes: list[tuple[int, Action]] = []
    for index, action in indexed:
        if action.kind == "dashboard" and action.action == "unchanged":
            record(index, action.id, f"{url_of}{action.id}")
        elif action.kind == "dashboard" and action.action != "archive":
            dashboard_writes.append((index, action))

    def put_dashboard(item: tuple[int, Action]) -> Dashboard:
        action = item[1]
        desired: DesiredDashboard = action.desired
        actual = dashboards[desired.key]
        tabs, dashcards = dashcards_body(desired, actual, writer.card_ids, writer.target)
        return client.update_dashboard(
            actual.id,
            DashboardUpdate(
                name=desired.name,
                description=desired.description,
                collection_id=collection_ids.get(desired.collection_path),
                width=cast(Literal["fixed", "full"], desired.width),
                parameters=desired.parameters,
                tabs=tabs,
                dashcards=dashcards,
                **({"archived": False} if "archived" in action.changes else {}),
            ),
        )

    written_dashboards: dict[int, tuple[DesiredDashboard, int]] = {}

    def dashboard_put(index: int, action: Action, _answer: Dashboard) -> None:
        dashboard_id = dashboards[action.desired.key].id
        written_dashboards[index] = (action.desired, dashboard_id)
        record(index, dashboard_id, f"{url_of}{dashboard_id}")

    _writes(
        dashboard_writes,
        waits_for=lambda _action, _waiting: False,
        label=lambda action: (
            f"updating dashboard {action.name}: {', '.join(action.changes)}"
            if action.action == "update"
            else None
        ),
        write=put_dashboard,
        written=dashboard_put,
        concurrency=concurrency,
        progress=progress,
    )

    def archive(item: tuple[int, Action]) -> object:
        action = item[1]
        assert action.id is not None
        if action.kind == "card":
            return client.update_card(action.id, CardUpdate(archived=True))
        return client.update_dashboard(action.id, DashboardUpdate(archived=True))

    _writes(
        [(index, action) for index, action in indexed if action.action == "archive"],
        waits_for=lambda _action, _waiting: False,
        label=lambda action: f"archiving {action.kind} {action.name}",
        write=archive,
        written=lambda index, action, _answer: record(index, action.id),
        concurrency=concurrency,
        progress=progress,
    )

    result = ApplyResult([outcomes[i] for i in sorted(outcomes)])
    changed_cards = [changed[i] for i in sorted(changed)]
    for card, written in changed_cards:
        collection_id = collection_ids.get(card.collection_path)
        home = writer.dashboard_ids.get(card.dashboard_key) if card.dashboard_key else None
        for diff in card_differences(card, written, collection_id, reader, home):
            result.verify_problems.append(f"card {card.name!r} (id {written.id}) differs after apply: {diff}")
    read_back = map_ordered(
        lambda written: _verify(client, *written, collection_ids, reader),
        [written_dashboards[i] for i in sorted(written_dashboards)],
        concurrency,
    )
    for problems in read_back:
        result.verify_problems += problems
    if run_cards:
        answers = map_ordered(lambda changed: client.run_card(changed[1].id), changed_cards, concurrency)
        for (card, written), answer in zip(changed_cards, answers, strict=True):
            if not answer.ok:
                said = (answer.error or "").strip().splitlines() or [answer.status or "failed"]
                result.failed_queries.append(FailedQuery(card.ident, card.name, written.id, said[0][:300]))
    result.requests = client.request_count - start
    return result


W = TypeVar("W")


def _writes(
    actions: list[tuple[int, Action]],
    *,
    waits_for: Callable[[Action, set[str]], bool],
    label: Callable[[Action], str | None],
    write: Callable[[tuple[int, Action]], W],
    written: Callable[[int, Action, W], None],
    concurrency: int,
    progress: Progress,
) -> None:
    """Send the writes of `actions` in waves: each wave holds every write that does not wait for another
    still to be sent (`waits_for(action, the keys of those waiting)`), sent together; with a concurrency of
    1, one write at a time in plan order, as before there were waves. Each write's `label` is reported
    as it goes out.

    `written` hears of each write that succeeded, in plan order, before the error of the first that failed
    (in plan order) is raised: what exists is noted for the backup, and no further wave starts. A POST is
    never sent twice; re-running finds what was written (observe.py) and converges.
    """

    def send(item: tuple[int, Action]) -> W:
        said = label(item[1])
        if said:
            progress.info(said)  # from the write's own thread, as it goes out
        return write(item)

    pending = list(actions)
    while pending:
        waiting = {action.key for _index, action in pending}
        wave = [item for item in pending if not waits_for(item[1], waiting - {item[1].key})]
        # Plan order already puts every write after those it waits for: one at a time, that order is kept
        # (and a cycle the plan should never hold is written as it comes).
        if concurrency == 1 or not wave:
            wave = pending[:1]
        sent = {index for index, _action in wave}
        pending = [item for item in pending if item[0] not in sent]
        first_error: Exception | None = None
        for (index, action), done in zip(wave, run_each(send, wave, concurrency), strict=True):
            if done is None:
                continue
            if done.error is not None:
                first_error = first_error or done.error
                continue
            written(index, action, done.value)  # type: ignore[arg-type]
        if first_error is not None:
            raise first_error


def _verify(
    client: MetabaseClient,
    desired: DesiredDashboard,
    dashboard_id: int,
    collection_ids: dict[tuple[str, ...], int],
    reader: Reader,
) -> list[str]:
    """Read the dashboard back: what Metabase stored must equal what was written."""
    got = client.get_dashboard(dashboard_id)
    return [
        f"dashboard {desired.name!r} (id {dashboard_id}) differs after apply: {diff}"
        for diff in dashboard_differences(desired, got, collection_ids.get(desired.collection_path), reader)
    ]


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
    desired: DesiredDashboard,
    actual: Dashboard | None,
    card_ids: dict[str, int],
    target: Callable[[str | None, list[Any]], list[Any]] = lambda _ident, t: t,
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
                    ParameterMapping(parameter_id=pid, card_id=card_id, target=target(d.card_ident, t))
                    for pid, t in d.mappings
                ],
                visualization_settings=d.visualization_settings,
                series=[],
            )
        )
    return tabs, dashcards
