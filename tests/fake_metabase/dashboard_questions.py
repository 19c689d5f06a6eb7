"""Dashboard questions (v0.53+): cards saved into one dashboard, placed on it and living and dying with it.

Verified in Metabase's source:
- `POST /api/card` with `dashboard_id` places a dashcard for the new card (`queries/models/card.clj`
  `autoplace-dashcard-for-card!`): on the tab `dashboard_tab_id` names, else the first tab (all dashcards when
  the dashboard has no tabs), at the first free spot scanning rows then columns of the 24-wide grid
  (`dashboards/autoplace.clj`), sized by the card's display (`dashboards/constants.clj` `card-size-defaults`,
  4x4 for a display it does not list). Its collection is the dashboard's; a model or metric, or a
  `collection_position`, is "Invalid dashboard-internal card" (400).
- Archiving the card removes its dashcards from its dashboard, unarchiving places it again
  (`autoplace-or-remove-dashcards-for-card!`).
- `PUT /api/dashboard/:id` with `dashcards` archives (directly) the dashboard's questions no dashcard shows
  any more and unarchives those shown (`dashboards/models/dashboard.clj`
  `archive-or-unarchive-internal-dashboard-questions!`).
- Archiving the dashboard archives its questions (`archived_directly` false), unarchiving restores those;
  moving the dashboard to another collection moves them (`dashboards/api.clj` `update-dashboard!`).
"""

from __future__ import annotations

from tests.fake_metabase.handlers import nano_id
from tests.fake_metabase.state import FakeState

GRID_WIDTH = 24
FALLBACK_SIZE = (4, 4)
# `card-size-defaults` `:default` width and height per display.
DEFAULT_SIZES: dict[str, tuple[int, int]] = {
    "table": (12, 9), "list": (12, 9), "gauge": (12, 6), "bar": (12, 6), "pie": (12, 8),
    "scatter": (12, 6), "boxplot": (12, 6), "waterfall": (14, 6), "combo": (12, 6), "sankey": (16, 10),
    "scalar": (6, 3), "line": (12, 6), "link": (8, 1), "iframe": (12, 8), "action": (4, 1), "area": (12, 6),
    "pivot": (12, 9), "funnel": (12, 6), "progress": (12, 6), "smartscalar": (6, 3), "map": (12, 6),
    "object": (12, 9), "row": (12, 6), "heading": (24, 1), "text": (12, 3),
}  # fmt: skip


def _intersects(a: dict, b: dict) -> bool:
    return not (
        b["col"] >= a["col"] + a["size_x"]
        or b["col"] + b["size_x"] <= a["col"]
        or b["row"] >= a["row"] + a["size_y"]
        or b["row"] + b["size_y"] <= a["row"]
    )


def free_position(dashcards: list[dict], size_x: int, size_y: int) -> tuple[int, int]:
    """Return (row, col) of the first spot where a `size_x` by `size_y` card overlaps none of `dashcards`."""
    for row in range(1000):
        for col in range(GRID_WIDTH - size_x + 1):
            spot = {"row": row, "col": col, "size_x": size_x, "size_y": size_y}
            if not any(_intersects(spot, dc) for dc in dashcards):
                return row, col
    raise RuntimeError("no free spot on the dashboard grid")


def _shown(state: FakeState, dashcard: dict) -> bool:
    card = state.cards.get(dashcard.get("card_id") or 0)
    return card is None or not card["archived"]


def autoplace(state: FakeState, dashboard: dict, card: dict, tab_id: int | None, timestamp: str) -> None:
    """Add a dashcard for `card` to `dashboard` unless one shows it already."""
    shown = [dc for dc in dashboard["dashcards"] if _shown(state, dc)]
    if any(dc.get("card_id") == card["id"] for dc in shown):
        return
    tabs = [t for t in dashboard["tabs"] if tab_id is None or t["id"] == tab_id]
    first_tab = tabs[0]["id"] if tabs else None
    on_tab = [dc for dc in shown if dc["dashboard_tab_id"] == first_tab] if first_tab is not None else shown
    size_x, size_y = DEFAULT_SIZES.get(card["display"], FALLBACK_SIZE)
    row, col = free_position(on_tab, size_x, size_y)
    dashboard["dashcards"].append(
        {
            "id": state.next_id("dashcard"),
            "entity_id": nano_id(),
            "created_at": timestamp,
            "updated_at": timestamp,
            "card_id": card["id"],
            "dashboard_tab_id": first_tab,
            "row": row,
            "col": col,
            "size_x": size_x,
            "size_y": size_y,
            "parameter_mappings": [],
            "visualization_settings": {},
            "series": [],
            "action_id": None,
            "inline_parameters": None,
        }
    )


def autoremove(state: FakeState, card_id: int, dashboard_id: int) -> None:
    """Delete the dashcards (and series entries) showing `card_id` on dashboard `dashboard_id`."""
    dashboard = state.dashboards.get(dashboard_id)
    if dashboard is None:
        return
    dashboard["dashcards"] = [dc for dc in dashboard["dashcards"] if dc.get("card_id") != card_id]
    for dashcard in dashboard["dashcards"]:
        dashcard["series"] = [s for s in dashcard.get("series", []) if s != card_id]


def set_archived_by_dashcards(
    state: FakeState, dashboard_id: int, shown: set[int], *, archived: bool
) -> None:
    """Archive the dashboard's questions not in `shown` (`archived=True`), or unarchive those in it.

    Metabase does both at once after diffing the dashcards; the fake unarchives before replacing the dashcards
    (so a re-added question passes the "not archived" check) and archives after (so its dashcard is deleted).
    """
    for card in state.cards.values():
        if card.get("dashboard_id") == dashboard_id and (card["id"] in shown) != archived:
            card["archived"] = archived
            card["archived_directly"] = archived


def follow_dashboard_archiving(state: FakeState, dashboard_id: int, archived: bool) -> None:
    """Archive (not directly) or restore the questions of a dashboard being archived or restored."""
    for card in state.cards.values():
        if card.get("dashboard_id") != dashboard_id:
            continue
        if archived and not card["archived"]:
            card.update(archived=True, archived_directly=False)
        elif not archived and card["archived"] and not card["archived_directly"]:
            card["archived"] = False


def follow_dashboard_move(state: FakeState, dashboard_id: int, collection_id: int | None) -> None:
    """Move the questions of a dashboard moving to `collection_id` along with it."""
    for card in state.cards.values():
        if card.get("dashboard_id") == dashboard_id:
            card["collection_id"] = collection_id


def on_other_dashboards(state: FakeState, card_id: int, except_ids: set[int | None]) -> list[int]:
    """Return the ids of dashboards other than `except_ids` with a dashcard (or series) showing `card_id`."""
    return sorted(
        d["id"]
        for d in state.dashboards.values()
        if d["id"] not in except_ids
        and any(dc.get("card_id") == card_id or card_id in dc.get("series", []) for dc in d["dashcards"])
    )
