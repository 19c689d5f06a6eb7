"""Auto placement on the 24-column grid."""

from __future__ import annotations

from provisioner.spec import DashboardSpec
from provisioner.spec.layout import Placement, place


def _spec(cards: list[dict], tabs: list[str] | None = None) -> DashboardSpec:
    return DashboardSpec.model_validate(
        {"key": "d", "name": "D", "collection": "C", "tabs": tabs or [], "cards": cards}
    )


def _card(key: str, display: str = "bar", **at: int | str) -> dict:
    return {"key": key, "name": key, "display": display, "sql": "select 1", "at": at}


def test_auto_cards_fill_rows_left_to_right_in_file_order() -> None:
    spec = _spec([{"heading": "Top"}, _card("a", "scalar"), _card("b", "scalar"), _card("c"), _card("d")])
    got = place(spec)
    assert got[0] == Placement(None, 0, 0, 24, 1)
    assert (got[1].row, got[1].col, got[2].row, got[2].col) == (1, 0, 1, 6)
    assert (got[3].row, got[3].col) == (1, 12)
    assert (got[4].row, got[4].col) == (4, 0)  # under the two 6x3 scalars, not overlapping the 12x6 chart


def test_auto_cards_never_overlap_explicit_ones() -> None:
    spec = _spec([_card("fixed", row=0, col=0, width=24, height=4), _card("auto")])
    fixed, auto = place(spec)
    assert not fixed.overlaps(auto)
    assert auto.row == 4


def test_each_tab_has_its_own_grid() -> None:
    spec = _spec([_card("a", tab="One"), _card("b", tab="Two")], tabs=["One", "Two"])
    a, b = place(spec)
    assert (a.tab, a.row, b.tab, b.row) == ("One", 0, "Two", 0)
