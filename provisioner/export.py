"""Metabase -> dashboard YAML: canonical key order, field ids back to `table.column`, stable round trip.

Keys come back from managed cards (`provisioner.key` in their settings); dashboards made in the UI
get keys from their names. Everything written is exactly what `plan` compares, so exporting a
managed dashboard and planning the result shows no changes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from provisioner.errors import ConfigError, MetabaseError, MetabaseNotFound
from provisioner.identity import KEY_SETTING
from provisioner.metabase.models import Card, Dashboard, DashCard, DatabaseMetadata
from provisioner.observe import collection_paths
from provisioner.progress import NullProgress, Progress
from provisioner.spec.models import DISPLAYS, FILTER_TYPES
from provisioner.spec.sql import sql_tags

if TYPE_CHECKING:
    from provisioner.metabase.client import MetabaseClient

_PARAMETER_TYPES = {mb_type for mb_type, _ in FILTER_TYPES.values()}


def slug(text: str) -> str:
    """A key from a name: lowercase words joined by `-`."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "dashboard"


@dataclass
class ExportResult:
    """Files written, one per dashboard, and what could not be expressed in YAML."""

    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": True, "files": self.files, "warnings": self.warnings}

    def describe(self) -> str:
        return "\n".join([f"wrote {f}" for f in self.files] + [f"warning: {w}" for w in self.warnings])


def export_dashboards(
    mb: MetabaseClient,
    dashboards: Sequence[str],
    *,
    out_dir: Path,
    progress: Progress | None = None,
) -> ExportResult:
    """Write each dashboard (by id or exact name) as `<out_dir>/<key>.yaml`.

    Raises MetabaseNotFound (no such dashboard), MetabaseError, ConfigError (`out_dir` not writable).
    """
    progress = progress or NullProgress()
    result = ExportResult()
    collections = mb.list_collections()
    paths_by_id = {c.id: path for path, c in collection_paths(collections).items()}
    databases = [d for d in mb.list_databases() if not d.is_sample and not d.is_audit]
    metadata: dict[int, DatabaseMetadata] = {}
    for wanted in dashboards:
        dashboard = mb.get_dashboard(_find_dashboard(mb, wanted, collections))
        progress.step(f"Exporting dashboard {dashboard.name!r} (id {dashboard.id})")
        for db_id in {d.card.database_id for d in dashboard.dashcards if d.card and d.card.database_id}:
            if db_id not in metadata:
                metadata[db_id] = mb.database_metadata(db_id)
        document, warnings = dashboard_document(
            dashboard,
            paths_by_id.get(dashboard.collection_id),
            metadata,
            several_databases=len(databases) > 1,
        )
        target = out_dir / f"{document['key']}.yaml"
        _write(target, render(document))
        result.files.append(str(target))
        result.warnings += warnings
    for warning in result.warnings:
        progress.warn(warning)
    return result


def _write(target: Path, text: str) -> None:
    """Write one exported file, creating its directory; raises ConfigError if that is impossible."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot write {target}: {(exc.strerror or type(exc).__name__).lower()}",
            hint="give --out a directory you can write to",
        ) from exc


def _find_dashboard(mb: MetabaseClient, wanted: str, collections: list[Any]) -> int:
    if wanted.isdigit():
        return int(wanted)
    found: list[int] = []
    for collection in collections:
        if collection.personal_owner_id is not None or collection.archived or collection.type == "trash":
            continue
        for item in mb.collection_items(collection.id, models=("dashboard",)):
            if item.model == "dashboard" and item.name == wanted:
                found.append(item.id)
    if not found:
        raise MetabaseNotFound(f"no dashboard named {wanted!r}", hint="give its exact name or its id")
    if len(found) > 1:
        raise MetabaseError(
            f"{len(found)} dashboards are named {wanted!r} (ids {', '.join(map(str, sorted(found)))})",
            hint="give the id instead of the name",
        )
    return found[0]


def _viz_from_settings(display: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The `viz:` mapping that `plan.card_visualization_settings` turns back into `settings`."""
    rest = {k: v for k, v in settings.items() if k != KEY_SETTING}
    viz: dict[str, Any] = {}
    if display == "map" and rest.get("map.type") == "pin":
        rest.pop("map.type")
        for name in ("latitude", "longitude"):
            if f"map.{name}_column" in rest:
                viz[name] = rest.pop(f"map.{name}_column")
    pairs = {
        "pie": ("pie.dimension", "pie.metric"),
        "funnel": ("funnel.dimension", "funnel.metric"),
        "scalar": (None, "scalar.field"),
        "smartscalar": (None, "scalar.field"),
        "gauge": (None, "scalar.field"),
        "progress": (None, "scalar.field"),
    }
    if display in pairs:
        x_key, y_key = pairs[display]
        if x_key and x_key in rest and (display != "funnel" or isinstance(rest[x_key], str)):
            viz["x"] = rest.pop(x_key)
        if y_key in rest and isinstance(rest[y_key], str):
            viz["y"] = rest.pop(y_key)
    elif display not in ("table", "object", "map"):
        for name, key in (("x", "graph.dimensions"), ("y", "graph.metrics")):
            if isinstance(rest.get(key), list) and rest[key]:
                viz[name] = rest.pop(key)
    if rest.get("stackable.stack_type") == "stacked":
        rest.pop("stackable.stack_type")
        viz["stacked"] = True
    if isinstance(rest.get("card.title"), str):
        viz["title"] = rest.pop("card.title")
    if rest:
        viz["settings"] = rest
    return viz


def _display_name(card: Card) -> str | None:
    display = card.display or "table"
    if display == "map":
        return "pin map" if card.visualization_settings.get("map.type") == "pin" else None
    return display if display in DISPLAYS else None


def dashboard_document(
    dashboard: Dashboard,
    collection_path: tuple[str, ...] | None,
    metadata: dict[int, DatabaseMetadata],
    *,
    several_databases: bool = False,
) -> tuple[dict[str, Any], list[str]]:
    """The YAML document of a dashboard (as plain data, canonical order) and any warnings."""
    warnings: list[str] = []
    managed = [
        str(d.card.visualization_settings[KEY_SETTING])
        for d in dashboard.dashcards
        if d.card is not None and isinstance(d.card.visualization_settings.get(KEY_SETTING), str)
    ]
    key = managed[0].split("/", 1)[0] if managed else slug(dashboard.name)
    doc: dict[str, Any] = {"key": key, "name": dashboard.name}
    if collection_path is None:
        where = "the root" if dashboard.collection_id is None else "a personal or archived"
        warnings.append(f"{dashboard.name!r} is in {where} collection; written under `Exported`")
        collection_path = ("Exported",)
    doc["collection"] = "/".join(collection_path)
    if dashboard.description:
        doc["description"] = dashboard.description
    if (dashboard.width or "fixed") != "fixed":
        doc["width"] = dashboard.width
    filter_keys: dict[str, str] = {}
    filters: list[dict[str, Any]] = []
    for param in dashboard.parameters:
        if param.type not in _PARAMETER_TYPES:
            warnings.append(
                f"filter {param.name!r} has type {param.type!r}, which YAML cannot express: skipped"
            )
            continue
        filter_key = param.slug or slug(param.name or param.id)
        filter_keys[param.id] = filter_key
        entry: dict[str, Any] = {"key": filter_key, "name": param.name or filter_key, "type": param.type}
        if param.default is not None:
            entry["default"] = param.default
        if param.required:
            entry["required"] = True
        filters.append(entry)
    filter_by_key = {f["key"]: f for f in filters}
    if filters:
        doc["filters"] = filters
    tabs = sorted(dashboard.tabs, key=lambda t: (t.position or 0, t.id))
    tab_names = {t.id: t.name for t in tabs}
    if tabs:
        doc["tabs"] = [t.name for t in tabs]
    tab_order = {t.id: i for i, t in enumerate(tabs)}
    cards: list[dict[str, Any]] = []
    used_keys: set[str] = set()
    for dashcard in sorted(
        dashboard.dashcards, key=lambda d: (tab_order.get(d.dashboard_tab_id, 0), d.row, d.col, d.id)
    ):
        at: dict[str, Any] = {}
        if dashcard.dashboard_tab_id in tab_names:
            at["tab"] = tab_names[dashcard.dashboard_tab_id]
        at.update(row=dashcard.row, col=dashcard.col, width=dashcard.size_x, height=dashcard.size_y)
        if dashcard.card is None:
            entry = _virtual_entry(dashcard)
            if entry is None:
                warnings.append(f"dashcard {dashcard.id} is neither a question, text nor heading: skipped")
                continue
            entry["at"] = at
            cards.append(entry)
            continue
        entry = _card_entry(dashcard, filter_keys, filter_by_key, metadata, used_keys, warnings)
        if entry is not None:
            entry["at"] = at
            cards.append(entry)
    doc["cards"] = cards
    if several_databases:
        db_ids = {d.card.database_id for d in dashboard.dashcards if d.card and d.card.database_id}
        if len(db_ids) == 1:
            doc = {**doc, "database": metadata[db_ids.pop()].name}
    return _ordered(doc), warnings


def _virtual_entry(dashcard: DashCard) -> dict[str, Any] | None:
    settings = dashcard.visualization_settings
    virtual = settings.get("virtual_card") or {}
    text = settings.get("text")
    if not isinstance(text, str) or not text:
        return None
    return {"heading": text} if virtual.get("display") == "heading" else {"text": text}


def _card_entry(
    dashcard: DashCard,
    filter_keys: dict[str, str],
    filter_by_key: dict[str, dict[str, Any]],
    metadata: dict[int, DatabaseMetadata],
    used_keys: set[str],
    warnings: list[str],
) -> dict[str, Any] | None:
    card = dashcard.card
    assert card is not None
    sql = card.native_sql
    if sql is None:
        warnings.append(f"card {card.name!r} (id {card.id}) is not a SQL question: skipped")
        return None
    display = _display_name(card)
    if display is None:
        warnings.append(f"card {card.name!r} has display {card.display!r}; written as `table`")
        display = "table"
    marked = card.visualization_settings.get(KEY_SETTING)
    card_key = marked.split("/", 1)[1] if isinstance(marked, str) and "/" in marked else slug(card.name)
    while card_key in used_keys:
        card_key += "-2"
    used_keys.add(card_key)
    entry: dict[str, Any] = {"key": card_key, "name": card.name}
    if card.description:
        entry["description"] = card.description
    entry["display"] = display
    entry["sql"] = sql.rstrip() + "\n"
    wiring: dict[str, str] = {}
    for mapping in dashcard.parameter_mappings:
        target = mapping.target
        if (
            len(target) >= 2
            and isinstance(target[1], list)
            and len(target[1]) == 2
            and target[1][0] == "template-tag"
            and mapping.parameter_id in filter_keys
        ):
            wiring[str(target[1][1])] = filter_keys[mapping.parameter_id]
    tags: dict[str, Any] = {}
    for name, tag in card.template_tags.items():
        if name not in sql_tags(sql):
            continue
        wired = filter_by_key.get(wiring.get(name, ""))
        spec_tag: dict[str, Any] = {}
        if tag.type == "dimension":
            field_id = tag.dimension_field_id
            db = metadata.get(card.database_id or -1)
            if field_id is None or db is None:
                warnings.append(f"card {card.name!r}: field filter {name!r} has no field: skipped")
                continue
            table, column = db.field_name(field_id)
            spec_tag["field"] = f"{table}.{column}"
            default_widget = wired["type"] if wired else "category"
            if tag.widget_type and FILTER_TYPES.get(default_widget, ("",))[0] != tag.widget_type:
                spec_tag["widget"] = tag.widget_type
        else:
            inferred = "text"
            if wired is not None:
                section = FILTER_TYPES[wired["type"]][1]
                inferred = (
                    "number" if section == "number" else "date" if wired["type"] == "date/single" else "text"
                )
            if tag.type != inferred:
                spec_tag["type"] = tag.type
        default_label = wired["name"] if wired else name.replace("_", " ").capitalize()
        if tag.display_name != default_label:
            spec_tag["label"] = tag.display_name
        inherited = wired.get("default") if wired else None
        if isinstance(inherited, list) and len(inherited) == 1:
            inherited = inherited[0]  # plan gives a raw variable its filter's single default value
        if tag.default is not None and not (inherited == tag.default and tag.type != "dimension"):
            spec_tag["default"] = tag.default
        if spec_tag:
            tags[name] = spec_tag
    if tags:
        entry["tags"] = tags
    if wiring:
        entry["filters"] = dict(sorted(wiring.items()))
    viz = _viz_from_settings(card.display or "table", card.visualization_settings)
    if viz:
        entry["viz"] = viz
    return entry


_ORDER = ["key", "name", "collection", "description", "database", "width", "filters", "tabs", "cards"]


def _ordered(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc[k] for k in _ORDER if k in doc}


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings (SQL, markdown); otherwise plain safe YAML."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _scalar(value: Any) -> bool:
    return not isinstance(value, dict | list) and not (isinstance(value, str) and "\n" in value)


def _flat(value: Any) -> bool:
    return _scalar(value) or (isinstance(value, list) and all(_scalar(v) for v in value))


def _dict_representer(dumper: yaml.SafeDumper, value: dict[str, Any]) -> yaml.Node:
    # Small flat mappings (`at:`, a filter, `viz:`) read best on one line, as people write them.
    flow = len(value) <= 6 and all(_flat(v) for v in value.values())
    return dumper.represent_mapping("tag:yaml.org,2002:map", value.items(), flow_style=flow)


def _list_representer(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.Node:
    return dumper.represent_sequence(
        "tag:yaml.org,2002:seq", value, flow_style=all(_scalar(v) for v in value)
    )


class _Document(dict[str, Any]):
    """The top-level mapping: always block style, however few and flat its values."""


def _document_representer(dumper: yaml.SafeDumper, value: _Document) -> yaml.Node:
    return dumper.represent_mapping("tag:yaml.org,2002:map", value.items(), flow_style=False)


_Dumper.add_representer(str, _str_representer)
_Dumper.add_representer(dict, _dict_representer)
_Dumper.add_representer(list, _list_representer)
_Dumper.add_representer(_Document, _document_representer)


def render(document: dict[str, Any]) -> str:
    """The YAML text of a dashboard document, with the schema comment editors read."""
    body = yaml.dump(
        _Document(document), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110, indent=2
    )
    return "# yaml-language-server: $schema=./schema.json\n" + body
