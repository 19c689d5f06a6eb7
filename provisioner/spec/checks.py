"""Checks across fields: what pydantic cannot see (wiring, tags, tabs, keys, layout)."""

from __future__ import annotations

from typing import Any

from provisioner.errors import SpecError
from provisioner.spec.document import LoadedDashboard
from provisioner.spec.layout import check as check_layout
from provisioner.spec.models import FILTER_TYPES, QueryCard
from provisioner.spec.sql import resolve_tags, sql_tags

_VARIABLE_FILTERS = {
    "text": {"category", "string/=", "string/contains", "string/starts-with", "id"},
    "number": {"number/=", "category", "id"},
    "date": {"date/single"},
}


def check_dashboard(loaded: LoadedDashboard) -> list[SpecError]:
    """Consistency problems across fields: wiring, tags, tabs, keys and layout."""
    spec, loc = loaded.spec, loaded.locator
    errors: list[SpecError] = []

    def unique(items: list[str], where: tuple[Any, ...], attr: str | None, what: str) -> None:
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item in seen:
                path = (*where, i, attr) if attr else (*where, i)
                errors.append(loc.error(path, f"duplicate {what} `{item}`"))
            seen.add(item)

    unique([f.key for f in spec.filters], ("filters",), "key", "filter key")
    unique(list(spec.tabs), ("tabs",), None, "tab name")
    card_keys = [c.key if isinstance(c, QueryCard) else f"#{i}" for i, c in enumerate(spec.cards)]
    unique(card_keys, ("cards",), "key", "card key")

    wired_filters: set[str] = set()
    filter_keys = ", ".join(f.key for f in spec.filters) or "(none defined)"
    for index, card in enumerate(spec.cards):
        at = ("cards", index, "at")
        if card.at.tab is not None and card.at.tab not in spec.tabs:
            problem = (
                f"tab `{card.at.tab}` is not in `tabs:`" if spec.tabs else "the dashboard has no `tabs:`"
            )
            errors.append(
                loc.error((*at, "tab"), problem, hint=f"use one of: {', '.join(spec.tabs) or 'add tabs'}")
            )
        if not isinstance(card, QueryCard) or card.key not in loaded.sql:
            continue
        sql = loaded.sql[card.key]
        tags = sql_tags(sql)
        base = ("cards", index)
        for tag_name, filter_key in card.filters.items():
            wired_filters.add(filter_key)
            if tag_name not in tags:
                errors.append(
                    loc.error(
                        (*base, "filters", tag_name),
                        f"the SQL has no template tag `{{{{{tag_name}}}}}`",
                        key=True,
                        hint=f"add `{{{{{tag_name}}}}}` to the SQL or remove this wiring",
                    )
                )
            if spec.filter(filter_key) is None:
                errors.append(
                    loc.error(
                        (*base, "filters", tag_name),
                        f"no dashboard filter with key `{filter_key}`",
                        hint=f"filters defined: {filter_keys}",
                    )
                )
        for tag_name in card.tags:
            if tag_name not in tags:
                errors.append(
                    loc.error(
                        (*base, "tags", tag_name),
                        f"the SQL has no template tag `{{{{{tag_name}}}}}`",
                        key=True,
                        hint="remove this entry or use the tag in the SQL",
                    )
                )
        for tag in resolve_tags(spec, card, sql):
            where = (*base, "tags", tag.name) if tag.name in card.tags else (*base, "sql")
            wired = spec.filter(tag.filter_key) if tag.filter_key else None
            no_default = tag.default is None and (wired is None or wired.default is None)
            if tag.kind != "dimension" and tag.required and no_default:
                problem = (
                    f"required template tag `{{{{{tag.name}}}}}` is not wired to a filter and has no default"
                    if wired is None
                    else f"required template tag `{{{{{tag.name}}}}}` has no default "
                    f"(nor has filter `{wired.key}`)"
                )
                errors.append(
                    loc.error(
                        where,
                        problem,
                        hint=f"give `tags: {{{tag.name}: {{default: ...}}}}`, a filter default, "
                        "or wrap its clause in [[ ]]",
                    )
                )
            if wired is None:
                continue
            if tag.kind == "dimension":
                if tag.widget and FILTER_TYPES[tag.widget][1] != wired.section:
                    errors.append(
                        loc.error(
                            (*base, "tags", tag.name, "widget"),
                            f"widget `{tag.widget}` does not match filter `{wired.key}` "
                            f"of type `{wired.type}`",
                        )
                    )
            elif wired.parameter_type not in _VARIABLE_FILTERS[tag.kind]:
                errors.append(
                    loc.error(
                        (*base, "filters", tag.name),
                        f"filter `{wired.key}` of type `{wired.type}` cannot feed a {tag.kind} variable",
                        hint=f"make `{tag.name}` a field filter: "
                        f"`tags: {{{tag.name}: {{field: table.column}}}}`",
                    )
                )
    for index, flt in enumerate(spec.filters):
        if flt.key not in wired_filters:
            errors.append(
                loc.error(
                    ("filters", index, "key"),
                    f"filter `{flt.key}` is wired to no card",
                    hint="wire it in a card's `filters:` or remove it",
                )
            )
    if not spec.query_cards() and not spec.filters:
        errors.append(
            loc.error(
                ("cards",),
                "a dashboard needs at least one SQL card or filter",
                hint="the tool recognises its dashboards in Metabase by their managed cards and filter ids",
            )
        )
    errors += check_layout(loaded)
    return errors
