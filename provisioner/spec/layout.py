"""Card placement on Metabase's 24-column grid: explicit `at:` positions are kept, the rest are packed.

Auto-placed cards keep the order of the YAML: each goes to the first free spot at or below the row of
the previous auto-placed card, so the dashboard reads top to bottom the way the file does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from provisioner.errors import SpecError
from provisioner.spec.models import GRID_COLUMNS, HeadingCard, LinkCard, QueryCard, TextCard

if TYPE_CHECKING:
    from provisioner.spec.document import Locator
    from provisioner.spec.models import DashboardSpec

# Default sizes (width, height) in grid units, from what Metabase itself gives new cards.
_SIZES: dict[str, tuple[int, int]] = {
    "scalar": (6, 3),
    "smartscalar": (6, 3),
    "gauge": (6, 4),
    "progress": (6, 4),
    "table": (12, 8),
    "pin map": (12, 8),
    "object": (12, 8),
    "pie": (8, 6),
}
_CHART_SIZE = (12, 6)


@dataclass(frozen=True)
class Placement:
    """Where one card sits: its tab (None without tabs), row, col, width and height."""

    tab: str | None
    row: int
    col: int
    width: int
    height: int

    def overlaps(self, other: Placement) -> bool:
        return (
            self.tab == other.tab
            and self.col < other.col + other.width
            and other.col < self.col + self.width
            and self.row < other.row + other.height
            and other.row < self.row + self.height
        )


def default_size(card: QueryCard | TextCard | HeadingCard | LinkCard) -> tuple[int, int]:
    """The (width, height) a card gets when `at:` does not say."""
    if isinstance(card, HeadingCard):
        return (GRID_COLUMNS, 1)
    if isinstance(card, TextCard):
        return (GRID_COLUMNS, 2)
    if isinstance(card, LinkCard):
        return (8, 1)
    return _SIZES.get(card.display, _CHART_SIZE)


def _tab_of(spec: DashboardSpec, card: QueryCard | TextCard | HeadingCard | LinkCard) -> str | None:
    if not spec.tabs:
        return None
    return card.at.tab if card.at.tab in spec.tabs else spec.tabs[0]


def place(spec: DashboardSpec) -> list[Placement]:
    """A placement for every card, in card order (explicit positions as written)."""
    placed: dict[int, Placement] = {}
    for index, card in enumerate(spec.cards):
        at = card.at
        if at.row is not None and at.col is not None:
            width, height = default_size(card)
            placed[index] = Placement(
                _tab_of(spec, card), at.row, at.col, at.width or width, at.height or height
            )
    cursor: dict[str | None, int] = {}
    for index, card in enumerate(spec.cards):
        if index in placed:
            continue
        tab = _tab_of(spec, card)
        width, height = default_size(card)
        width, height = card.at.width or width, card.at.height or height
        others = [p for p in placed.values() if p.tab == tab]
        row = card.at.row if card.at.row is not None else cursor.get(tab, 0)
        cols = [card.at.col] if card.at.col is not None else list(range(GRID_COLUMNS - width + 1))
        spot = None
        while spot is None:
            for col in cols:
                candidate = Placement(tab, row, col, width, height)
                if not any(candidate.overlaps(p) for p in others):
                    spot = candidate
                    break
            else:
                row += 1
        placed[index] = spot
        cursor[tab] = spot.row
    return [placed[i] for i in range(len(spec.cards))]


def check(spec: DashboardSpec, locator: Locator) -> list[SpecError]:
    """Cards wider than the grid, or overlapping another card; one error per problem."""
    errors: list[SpecError] = []
    for index, card in enumerate(spec.cards):
        at = card.at
        width = at.width or default_size(card)[0]
        if at.col is not None and at.col + width > GRID_COLUMNS:
            errors.append(
                locator.error(
                    ("cards", index, "at", "width" if at.width else "col"),
                    f"col {at.col} + width {width} = {at.col + width} is wider than the "
                    f"{GRID_COLUMNS}-column grid",
                    hint=f"make col + width at most {GRID_COLUMNS}",
                )
            )
    if errors:
        return errors
    placements = place(spec)
    for index, here in enumerate(placements):
        for other_index in range(index):
            there = placements[other_index]
            if here.overlaps(there):
                errors.append(
                    locator.error(
                        ("cards", index, "at"),
                        f"this card ({_extent(here)}) overlaps {describe(spec, other_index)} "
                        f"({_extent(there)})",
                        hint="move one of them (row/col) or shrink it (width/height)",
                    )
                )
                break
    return errors


def _extent(placement: Placement) -> str:
    """Where a card sits, as rows and columns (first-last, 0-based as in `at:`)."""
    return (
        f"rows {placement.row}-{placement.row + placement.height - 1}, "
        f"cols {placement.col}-{placement.col + placement.width - 1}"
    )


def describe(spec: DashboardSpec, index: int) -> str:
    """A person's name for card `index`: its key, or its kind and position."""
    card = spec.cards[index]
    if isinstance(card, QueryCard):
        return f"card `{card.key}`"
    kind = "heading" if isinstance(card, HeadingCard) else "link" if isinstance(card, LinkCard) else "text"
    return f"{kind} card #{index}"
