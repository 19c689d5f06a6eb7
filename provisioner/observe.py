"""Reads what Metabase holds for the dashboards in the YAML: the only reads plan and apply make.

Cost per run: one list of databases, one metadata per database, one list of collections, one
items list per collection under the top-level collections the YAML names, and one GET per
dashboard there (dashboards come back with their cards hydrated, so their cards need no request
of their own). Never per field, nor per card on a managed dashboard; only a card in those
collections that sits on no managed dashboard (a person's, or one left by an interrupted run or
removed from the YAML) costs one GET, since a collection item does not show the card's mark.

With the ids the last apply used (id_cache.py) and no pruning, it first tries a shortcut: the list of
collections and one GET per dashboard, each checked to be unarchived, in a collection under the
YAML's top-level ones and still carrying its key. The shortcut sees only those dashboards and their
cards, so its state is marked partial, and a plan from it that would create anything (where the full
read might adopt what an interrupted run left) is computed again from the full read.

Reads that do not depend on each other are made together, up to the client's `concurrency` at once
(parallel.py): the dashboards, the items of each collection, the cards, each database's metadata. The
list of collections and the remembered dashboards need nothing from the YAML's desired state, so planning
starts them before it reads the databases' metadata and builds that state (`EarlyReads`). What is read,
and the state made of it, is the same at any concurrency.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import TypeVar

from provisioner.desired import DesiredDashboard
from provisioner.errors import MetabaseError, MetabaseNotFound, SpecError, SpecErrors
from provisioner.identity import dashboard_key_of, identity_of
from provisioner.metabase.client import MetabaseClient
from provisioner.metabase.models import Card, Collection, Dashboard, Database, DatabaseMetadata
from provisioner.parallel import map_ordered, run_each
from provisioner.spec import LoadedFile

T = TypeVar("T")
R = TypeVar("R")


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


def collection_paths(collections: Iterable[Collection]) -> dict[tuple[str, ...], Collection]:
    """Shared (non-personal, non-trash, unarchived) collections by their name path; lowest id wins."""
    usable = [
        c
        for c in collections
        if isinstance(c.id, int)
        and not c.archived
        and c.personal_owner_id is None
        and c.type != "trash"
        and c.namespace is None
    ]
    by_id = {c.id: c for c in usable}
    out: dict[tuple[str, ...], Collection] = {}
    for c in sorted(usable, key=lambda c: c.id):
        ancestors = [int(p) for p in (c.location or "/").split("/") if p]
        if any(a not in by_id for a in ancestors):
            continue  # below a personal or archived collection
        path = (*(by_id[a].name for a in ancestors), c.name)
        out.setdefault(path, c)
    return out


def resolve_databases(
    client: MetabaseClient, loaded: list[LoadedFile], known: Sequence[DatabaseMetadata] = ()
) -> tuple[dict[str, int], dict[int, DatabaseMetadata]]:
    """Database id per dashboard key, and each database's metadata; raises SpecErrors, MetabaseError.

    `known` is metadata read moments ago (by the demo's connect step): when every file names one of
    those databases, neither the list of databases nor their metadata is read again.
    """
    by_name = {m.name: m for m in sorted(known, key=lambda m: m.id, reverse=True)}  # oldest wins
    if loaded and all(item.spec.database in by_name for item in loaded):
        remembered = {item.spec.key: by_name[str(item.spec.database)].id for item in loaded}
        return remembered, {m.id: m for m in known if m.id in remembered.values()}
    databases = [d for d in client.list_databases() if not d.is_sample and not d.is_audit]
    ids: dict[str, int] = {}
    errors: list[SpecError] = []
    for item in loaded:
        found: Database | None = None
        if item.spec.database:
            found = next((d for d in databases if d.name == item.spec.database), None)
            if found is None:
                names = ", ".join(d.name for d in databases) or "none"
                errors.append(
                    item.locator.error(
                        ("database",),
                        f"Metabase has no database named `{item.spec.database}`",
                        hint=f"databases in Metabase: {names}",
                    )
                )
                continue
        elif len(databases) == 1:
            found = databases[0]
        else:
            raise MetabaseError(
                f"Metabase has {len(databases)} databases; {item.path} does not say which to use",
                hint="add `database: <name>` to the dashboard file, or run `provision metabase connect`",
            )
        ids[item.spec.key] = found.id
    if errors:
        raise SpecErrors(errors)
    known_by_id = {m.id: m for m in known}
    db_ids = sorted(set(ids.values()))
    read = map_ordered(
        lambda db_id: known_by_id.get(db_id) or client.database_metadata(db_id), db_ids, client.concurrency
    )
    return ids, dict(zip(db_ids, read, strict=True))


@dataclass(frozen=True)
class Wanted:
    """What the YAML names: its dashboards, the cards on no dashboard, and every collection path."""

    dashboards: list[DesiredDashboard]
    standalone_cards: list[str]  # identities of the models and questions on no dashboard
    collection_paths: list[tuple[str, ...]]

    @property
    def roots(self) -> set[str]:
        return {p[0] for p in self.collection_paths}


class EarlyReads:
    """The first reads of `observe`, started before they are needed: the list of collections, and the
    dashboards and cards by their remembered ids, on threads of their own while the caller reads the
    databases' metadata and builds the desired state. Each answer is used once (a later ask reads again);
    what is not used by the end costs only its request. With a concurrency of 1 (or `start=False`)
    nothing is read early: each read is made when asked for.
    """

    def __init__(
        self,
        client: MetabaseClient,
        dashboard_ids: Sequence[int] = (),
        card_ids: Sequence[int] = (),
        *,
        start: bool = True,
    ) -> None:
        self._client = client
        self._pool: ThreadPoolExecutor | None = None
        self._collections: Future[list[Collection]] | None = None
        self._dashboards: dict[int, Future[Dashboard]] = {}
        self._cards: dict[int, Future[Card]] = {}
        if start and client.concurrency > 1:
            self._pool = ThreadPoolExecutor(client.concurrency, thread_name_prefix="provision-early")
            self._collections = self._pool.submit(client.list_collections)
            for dashboard_id in dict.fromkeys(dashboard_ids):
                self._dashboards[dashboard_id] = self._pool.submit(client.get_dashboard, dashboard_id)
            for card_id in dict.fromkeys(card_ids):
                self._cards[card_id] = self._pool.submit(client.get_card, card_id)

    def collections(self) -> list[Collection]:
        """Every collection, as `MetabaseClient.list_collections`."""
        early, self._collections = self._collections, None
        return early.result() if early is not None else self._client.list_collections()

    def dashboard(self, dashboard_id: int) -> Dashboard:
        """One dashboard, as `MetabaseClient.get_dashboard` (MetabaseNotFound included)."""
        early = self._dashboards.pop(dashboard_id, None)
        return early.result() if early is not None else self._client.get_dashboard(dashboard_id)

    def card(self, card_id: int) -> Card:
        """One card, as `MetabaseClient.get_card` (MetabaseNotFound included)."""
        early = self._cards.pop(card_id, None)
        return early.result() if early is not None else self._client.get_card(card_id)

    def stop(self) -> None:
        """Start no further read, and wait for those under way."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> EarlyReads:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def observe(
    client: MetabaseClient,
    wanted: Wanted,
    known_ids: Mapping[str, int] | None = None,
    known_cards: Mapping[str, int] | None = None,
    early: EarlyReads | None = None,
) -> ActualState:
    """The managed collections, cards and dashboards that exist now (no writes).

    `known_ids` (dashboard id by key) and `known_cards` (standalone card id by identity) allow the
    shortcut described above; they are never trusted unchecked, and the full read is made whenever the
    shortcut does not hold. `early` holds reads started beforehand.
    """
    start = client.request_count
    early = early if early is not None else EarlyReads(client, start=False)
    paths = collection_paths(early.collections())
    within: set[tuple[str, ...]] = set()
    for path in wanted.collection_paths:
        for depth in range(1, len(path) + 1):
            within.add(path[:depth])
    keys_by_param = {p.id: d.key for d in wanted.dashboards for p in d.parameters}
    state = None
    known_ids, known_cards = known_ids or {}, known_cards or {}
    if all(d.key in known_ids for d in wanted.dashboards) and all(
        c in known_cards for c in wanted.standalone_cards
    ):
        state = _observe_known(client, wanted, paths, keys_by_param, known_ids, known_cards, early)
    if state is None:
        early.stop()  # what the shortcut would have read: the full read reads for itself
        state = _observe_all(client, wanted, paths, keys_by_param)
    state.collections = {p: c for p, c in paths.items() if p in within}
    state.requests = client.request_count - start
    return state


def _managed_collection_ids(wanted: Wanted, paths: Mapping[tuple[str, ...], Collection]) -> set[int]:
    """Ids of every collection under the top-level collections the YAML names."""
    return {c.id for path, c in paths.items() if path[0] in wanted.roots and isinstance(c.id, int)}


def _observe_known(
    client: MetabaseClient,
    wanted: Wanted,
    paths: Mapping[tuple[str, ...], Collection],
    keys_by_param: dict[str, str],
    known_ids: Mapping[str, int],
    known_cards: Mapping[str, int],
    early: EarlyReads,
) -> ActualState | None:
    """The remembered dashboards, their cards and the standalone cards, or None as soon as one is not
    what it was."""
    managed = _managed_collection_ids(wanted, paths)
    state = ActualState(complete=False)

    def dashboard(d: DesiredDashboard) -> Dashboard:
        found = early.dashboard(known_ids[d.key])
        if (
            found.archived
            or found.collection_id not in managed
            or dashboard_key_of(found, keys_by_param) != d.key
        ):
            raise _NotAsRemembered
        return found

    dashboards = _all_as_remembered(dashboard, wanted.dashboards, client.concurrency)
    if dashboards is None:
        return None
    for d, found in zip(wanted.dashboards, dashboards, strict=True):
        state.dashboards[d.key] = found
        _add_cards(state, found)

    def card(ident: str) -> Card:
        found = early.card(known_cards[ident])
        if found.archived or found.collection_id not in managed or identity_of(found) != ident:
            raise _NotAsRemembered
        return found

    idents = [ident for ident in wanted.standalone_cards if ident not in state.cards]
    cards = _all_as_remembered(card, idents, client.concurrency)
    if cards is None:
        return None
    state.cards.update(zip(idents, cards, strict=True))
    return state


class _NotAsRemembered(Exception):
    """A remembered object is gone, archived, moved out of the managed collections or no longer ours."""


def _all_as_remembered(read: Callable[[T], R], items: Sequence[T], concurrency: int) -> list[R] | None:
    """`read(item)` for each item, or None as soon as one is not as remembered (the rest is not read)."""
    found: list[R] = []
    for done in run_each(read, items, concurrency):
        if done is None or isinstance(done.error, _NotAsRemembered | MetabaseNotFound):
            return None
        if done.error is not None:
            raise done.error
        found.append(done.value)  # type: ignore[arg-type]
    return found


def _add_cards(state: ActualState, dashboard: Dashboard) -> set[int]:
    """Record the managed cards on `dashboard`; return their ids."""
    ids: set[int] = set()
    for dashcard in dashboard.dashcards:
        ident = identity_of(dashcard.card)
        if dashcard.card is not None and ident is not None:
            ids.add(dashcard.card.id)
            state.cards.setdefault(ident, dashcard.card)
    return ids


def _observe_all(
    client: MetabaseClient,
    wanted: Wanted,
    paths: Mapping[tuple[str, ...], Collection],
    keys_by_param: dict[str, str],
) -> ActualState:
    """Everything managed under the top-level collections the YAML names."""
    state = ActualState()
    card_item_ids: list[int] = []
    seen_card_ids: set[int] = set()
    empty: list[tuple[tuple[str, ...], Dashboard]] = []
    # Every collection under the top-level collections the YAML names: a dashboard moved to a sibling
    # collection (in the YAML or by a person) is still found, and prune sees what left the YAML.
    managed = _managed_collection_ids(wanted, paths)
    collections = [
        (path, coll.id)
        for path, coll in sorted(paths.items(), key=lambda item: item[0])
        if coll.id in managed and isinstance(coll.id, int)
    ]
    items = map_ordered(
        lambda coll_id: client.collection_items(coll_id, models=("card", "dataset", "metric", "dashboard")),
        [coll_id for _path, coll_id in collections],
        client.concurrency,
    )
    dashboard_ids: list[tuple[tuple[str, ...], int]] = []
    for (path, _coll_id), listed in zip(collections, items, strict=True):
        for item in listed:
            if item.model in ("card", "dataset", "metric"):
                card_item_ids.append(item.id)
            elif item.model == "dashboard":
                dashboard_ids.append((path, item.id))
    dashboards = map_ordered(client.get_dashboard, [i for _path, i in dashboard_ids], client.concurrency)
    for (path, _id), dashboard in zip(dashboard_ids, dashboards, strict=True):
        key = dashboard_key_of(dashboard, keys_by_param)
        seen_card_ids |= _add_cards(state, dashboard)
        if key is None:
            if not dashboard.dashcards:
                empty.append((path, dashboard))
        elif key not in state.dashboards or dashboard.id < state.dashboards[key].id:
            state.dashboards[key] = dashboard
    # A run interrupted between creating a dashboard and filling it leaves it empty and unmarked:
    # adopt it by name and collection rather than create a duplicate.
    for d in wanted.dashboards:
        if d.key in state.dashboards:
            continue
        match = next(
            (dash for path, dash in empty if path == d.collection_path and dash.name == d.name), None
        )
        if match is not None:
            state.dashboards[d.key] = match
    # Cards in our collections that are on no managed dashboard: read each once to see whether it is
    # ours (a run interrupted before its dashboard was filled, or a card removed from the YAML).
    unseen = [card_id for card_id in card_item_ids if card_id not in seen_card_ids]
    for card in map_ordered(client.get_card, unseen, client.concurrency):
        ident = identity_of(card)
        if ident is not None:
            state.cards.setdefault(ident, card)
    return state
