"""SQL cards: the `{{tags}}` of their SQL and how each is typed (field filter or raw value)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from provisioner.spec.models import DashboardSpec, DocumentSpec, QueryCard, Question, TagSpec

TAG_PATTERN = re.compile(r"{{\s*([A-Za-z_][A-Za-z0-9_]*)\s*}}")
OPTIONAL_CLAUSE = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)


def sql_tags(sql: str) -> dict[str, bool]:
    """Each `{{tag}}` in the SQL -> True when it is required (appears outside every `[[ ]]`)."""
    required = {m.group(1) for m in TAG_PATTERN.finditer(OPTIONAL_CLAUSE.sub("", sql))}
    return {m.group(1): m.group(1) in required for m in TAG_PATTERN.finditer(sql)}


@dataclass(frozen=True)
class ResolvedTag:
    """A template tag as Metabase will get it."""

    name: str
    required: bool
    kind: str  # "dimension" or a raw type: text, number, date
    field: str | None
    widget: str | None
    filter_key: str | None
    label: str
    default: Any


def resolve_tags(spec: DocumentSpec, card: Question, sql: str) -> list[ResolvedTag]:
    """The question's template tags with their types, widgets and wired filters (a dashboard's cards)."""
    out: list[ResolvedTag] = []
    wiring = card.filters if isinstance(card, QueryCard) else {}
    for name, required in sql_tags(sql).items():
        tag = card.tags.get(name) or TagSpec()
        filter_key = wiring.get(name)
        wired = spec.filter(filter_key) if filter_key and isinstance(spec, DashboardSpec) else None
        label = tag.label or (wired.name if wired else name.replace("_", " ").capitalize())
        if tag.field:
            widget = tag.widget or (wired.parameter_type if wired else "category")
            out.append(
                ResolvedTag(name, required, "dimension", tag.field, widget, filter_key, label, tag.default)
            )
            continue
        kind = tag.type
        if kind is None and wired is not None:
            section = wired.section
            kind = "number" if section == "number" else "date" if wired.type == "date/single" else "text"
        out.append(ResolvedTag(name, required, kind or "text", None, None, filter_key, label, tag.default))
    return out
