"""Checks across fields of one file: what pydantic cannot see (keys, wiring, tags, tabs, layout).

Checks that need every file (a question built on a model of another file) or the database (columns and
their types) are made when the questions are compiled (`question.py`).
"""

from __future__ import annotations

from typing import Any

from provisioner.errors import SpecError
from provisioner.spec.document import LoadedFile
from provisioner.spec.layout import check as check_layout
from provisioner.spec.models import FILTER_TYPES, DashboardSpec, QueryCard, Question
from provisioner.spec.sql import resolve_tags, sql_tags

_VARIABLE_FILTERS = {
    "text": {"category", "string/=", "string/contains", "string/starts-with", "id"},
    "number": {"number/=", "category", "id"},
    "date": {"date/single"},
}

Loc = tuple[Any, ...]


def check_document(loaded: LoadedFile) -> list[SpecError]:
    """Consistency problems across the fields of one file."""
    errors: list[SpecError] = []
    first: dict[str, Loc] = {}
    for where, question in loaded.spec.located_questions():
        if question.key in first:
            line = loaded.locator.mark((*first[question.key], "key")).line
            errors.append(
                loaded.locator.error(
                    (*where, "key"),
                    f"duplicate card key `{question.key}` (first at line {line})",
                    hint="cards and questions of a file share one set of keys",
                )
            )
        first.setdefault(question.key, where)
        if question.key in loaded.sql:
            errors += _check_sql(loaded, where, question)
    if isinstance(loaded.spec, DashboardSpec):
        errors += _check_dashboard(loaded, loaded.spec)
    return errors


def _check_sql(loaded: LoadedFile, base: Loc, question: Question) -> list[SpecError]:
    """A SQL question's template tags: typed where written, wired to filters that exist, defaults."""
    spec, loc = loaded.spec, loaded.locator
    sql = loaded.sql[question.key]
    tags = sql_tags(sql)
    errors: list[SpecError] = []
    wiring = question.filters if isinstance(question, QueryCard) else {}
    filters = spec.filters if isinstance(spec, DashboardSpec) else []
    filter_keys = ", ".join(f.key for f in filters) or "(none defined)"
    for tag_name, filter_key in wiring.items():
        if tag_name not in tags:
            errors.append(
                loc.error(
                    (*base, "filters", tag_name),
                    f"the SQL has no template tag `{{{{{tag_name}}}}}`",
                    key=True,
                    hint=f"add `{{{{{tag_name}}}}}` to the SQL or remove this wiring",
                )
            )
        if not any(f.key == filter_key for f in filters):
            errors.append(
                loc.error(
                    (*base, "filters", tag_name),
                    f"no dashboard filter with key `{filter_key}`",
                    hint=f"filters defined: {filter_keys}",
                )
            )
    for tag_name in question.tags:
        if tag_name not in tags:
            errors.append(
                loc.error(
                    (*base, "tags", tag_name),
                    f"the SQL has no template tag `{{{{{tag_name}}}}}`",
                    key=True,
                    hint="remove this entry or use the tag in the SQL",
                )
            )
    for tag in resolve_tags(spec, question, sql):
        where = (*base, "tags", tag.name) if tag.name in question.tags else (*base, "sql")
        wired = next((f for f in filters if f.key == tag.filter_key), None)
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
                        f"widget `{tag.widget}` does not match filter `{wired.key}` of type `{wired.type}`",
                    )
                )
        elif wired.parameter_type not in _VARIABLE_FILTERS[tag.kind]:
            errors.append(
                loc.error(
                    (*base, "filters", tag.name),
                    f"filter `{wired.key}` of type `{wired.type}` cannot feed a {tag.kind} variable",
                    hint=f"make `{tag.name}` a field filter: `tags: {{{tag.name}: {{field: table.column}}}}`",
                )
            )
    return errors


def _check_dashboard(loaded: LoadedFile, spec: DashboardSpec) -> list[SpecError]:
    """Filters, tabs and wiring of a dashboard, and its layout."""
    loc = loaded.locator
    errors: list[SpecError] = []

    def unique(items: list[str], where: Loc, attr: str | None, what: str) -> None:
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item in seen:
                path = (*where, i, attr) if attr else (*where, i)
                errors.append(loc.error(path, f"duplicate {what} `{item}`"))
            seen.add(item)

    unique([f.key for f in spec.filters], ("filters",), "key", "filter key")
    unique(list(spec.tabs), ("tabs",), None, "tab name")
    filter_keys = ", ".join(f.key for f in spec.filters) or "(none defined)"
    wired_filters: set[str] = set()
    for index, card in enumerate(spec.cards):
        at = ("cards", index, "at")
        if card.at.tab is not None and card.at.tab not in spec.tabs:
            problem = (
                f"tab `{card.at.tab}` is not in `tabs:`" if spec.tabs else "the dashboard has no `tabs:`"
            )
            errors.append(
                loc.error((*at, "tab"), problem, hint=f"use one of: {', '.join(spec.tabs) or 'add tabs'}")
            )
        if not isinstance(card, QueryCard):
            continue
        wired_filters |= set(card.filters.values())
        if card.is_native:
            continue
        for column, filter_key in card.filters.items():
            if spec.filter(filter_key) is None:
                errors.append(
                    loc.error(
                        ("cards", index, "filters", column),
                        f"no dashboard filter with key `{filter_key}`",
                        hint=f"filters defined: {filter_keys}",
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
                "a dashboard needs at least one question card or filter",
                hint="the tool recognises its dashboards in Metabase by their managed cards and filter ids",
            )
        )
    errors += check_layout(spec, loc)
    return errors
