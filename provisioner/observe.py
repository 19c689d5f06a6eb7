"""Reads what Metabase holds for the dashboards in the YAML: the only reads plan and apply make.

Cost per run: one list of databases, one metadata per database, one list of collections, one
items list per collection under the top-level collections the YAML names, and one GET per
dashboard there (dashboards come back with their cards hydrated, so their cards need no request
of their own). Never per field, nor per card on a managed dashboard; only a card in those
collections that sits on no managed dashboard (a person's, or one left by an interrupted run or
removed from the YAML) costs one GET, since a collection item does not show the card's mark.
"""

from __future__ import annotations

from collections.abc import Iterable

from provisioner.errors import MetabaseError, SpecError, SpecErrors
from provisioner.metabase.client import MetabaseClient
from provisioner.metabase.models import Collection, Dashboard, Database, DatabaseMetadata
from provisioner.plan import ActualState, DesiredDashboard, dashboard_key_of
from provisioner.spec import LoadedDashboard, identity_of


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
    client: MetabaseClient, loaded: list[LoadedDashboard]
) -> tuple[dict[str, int], dict[int, DatabaseMetadata]]:
    """Database id per dashboard key, and each database's metadata; raises SpecErrors, MetabaseError."""
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
    metadata = {db_id: client.database_metadata(db_id) for db_id in sorted(set(ids.values()))}
    return ids, metadata


def observe(client: MetabaseClient, dashboards: list[DesiredDashboard]) -> ActualState:
    """The managed collections, cards and dashboards that exist now (no writes)."""
    start = client.request_count
    state = ActualState()
    paths = collection_paths(client.list_collections())
    wanted: set[tuple[str, ...]] = set()
    for d in dashboards:
        for depth in range(1, len(d.collection_path) + 1):
            wanted.add(d.collection_path[:depth])
    state.collections = {p: c for p, c in paths.items() if p in wanted}
    keys_by_param = {p.id: d.key for d in dashboards for p in d.parameters}
    card_item_ids: list[int] = []
    seen_card_ids: set[int] = set()
    empty: list[tuple[tuple[str, ...], Dashboard]] = []
    # Every collection under the top-level collections the YAML names: a dashboard moved to a sibling
    # collection (in the YAML or by a person) is still found, and prune sees what left the YAML.
    roots = {d.collection_path[0] for d in dashboards}
    for path, coll in sorted(paths.items(), key=lambda item: item[0]):
        if path[0] not in roots or not isinstance(coll.id, int):
            continue
        for item in client.collection_items(coll.id, models=("card", "dashboard")):
            if item.model == "card":
                card_item_ids.append(item.id)
            elif item.model == "dashboard":
                dashboard = client.get_dashboard(item.id)
                key = dashboard_key_of(dashboard, keys_by_param)
                for dashcard in dashboard.dashcards:
                    ident = identity_of(dashcard.card)
                    if dashcard.card is not None and ident is not None:
                        seen_card_ids.add(dashcard.card.id)
                        state.cards.setdefault(ident, dashcard.card)
                if key is None:
                    if not dashboard.dashcards:
                        empty.append((path, dashboard))
                elif key not in state.dashboards or dashboard.id < state.dashboards[key].id:
                    state.dashboards[key] = dashboard
    # A run interrupted between creating a dashboard and filling it leaves it empty and unmarked:
    # adopt it by name and collection rather than create a duplicate.
    for d in dashboards:
        if d.key in state.dashboards:
            continue
        match = next(
            (dash for path, dash in empty if path == d.collection_path and dash.name == d.name), None
        )
        if match is not None:
            state.dashboards[d.key] = match
    # Cards in our collections that are on no managed dashboard: read each once to see whether it is
    # ours (a run interrupted before its dashboard was filled, or a card removed from the YAML).
    for card_id in card_item_ids:
        if card_id not in seen_card_ids:
            card = client.get_card(card_id)
            ident = identity_of(card)
            if ident is not None:
                state.cards.setdefault(ident, card)
    state.requests = client.request_count - start
    return state
