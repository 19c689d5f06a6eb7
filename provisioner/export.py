"""Metabase -> YAML: any dashboard, as built in the UI, with every id turned into a name.

Covered: SQL questions (their template tags and field filters), query-builder questions (the readable
`query:` form when it says exactly the same query, else a faithful `mbql:` block), questions they are
built on (written under `questions:`, or referred to by key when the tool already manages them), models
with their column metadata, text and heading cards, tabs and filters. Keys come back from managed cards
(`provisioner.key`); a dashboard made in the UI gets keys from its names. Exporting a managed dashboard
and planning the result shows no changes.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from provisioner.errors import ConfigError, MetabaseError, MetabaseNotFound
from provisioner.identity import KEY_SETTING, identity_of
from provisioner.mbql.normal import NormalizeError, canonical, from_wire, map_leaves, normal_ref
from provisioner.metabase.models import Card, Dashboard, DashCard, DatabaseMetadata
from provisioner.observe import collection_paths
from provisioner.progress import NullProgress, Progress
from provisioner.spec.document import Locator
from provisioner.spec.models import DISPLAYS, FILTER_TYPES, SEMANTIC_TYPES, Question
from provisioner.spec.question import CardSource, QuestionCompiler
from provisioner.spec.raw import encode as encode_raw
from provisioner.spec.readable import column_text, to_readable
from provisioner.spec.sql import sql_tags
from provisioner.translate import MetadataSchema, TranslateError, field_to_names, to_names

if TYPE_CHECKING:
    from provisioner.metabase.client import MetabaseClient

_PARAMETER_TYPES = {mb_type: name for name, (mb_type, _) in reversed(FILTER_TYPES.items())}
_SEMANTIC_WORDS = {v: k for k, v in SEMANTIC_TYPES.items()}


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
    force: bool = False,
    progress: Progress | None = None,
) -> ExportResult:
    """Write each dashboard (by id or exact name) as `<out_dir>/<key>.yaml`.

    Raises MetabaseNotFound (no such dashboard), MetabaseError, ConfigError (`out_dir` not writable, or a
    file or key there that the export would overwrite without `force`).
    """
    progress = progress or NullProgress()
    result = ExportResult()
    collections = mb.list_collections()
    paths_by_id = {c.id: path for path, c in collection_paths(collections).items()}
    databases = {d.id: d for d in mb.list_databases() if not d.is_sample and not d.is_audit}
    metadata: dict[int, DatabaseMetadata] = {}
    taken = _keys_in(out_dir)
    for wanted in dashboards:
        dashboard = mb.get_dashboard(_find_dashboard(mb, wanted, collections))
        progress.step(f"Exporting dashboard {dashboard.name!r} (id {dashboard.id})")
        exporter = _Exporter(mb, dashboard, metadata)
        home = paths_by_id.get(dashboard.collection_id) if dashboard.collection_id is not None else None
        document = exporter.document(home, databases)
        key = document["key"]
        target = out_dir / f"{key}.yaml"
        if not force and (target.exists() or key in taken):
            where = target if target.exists() else taken[key]
            raise ConfigError(
                f"exporting {dashboard.name!r} would overwrite {where} (key `{key}`)",
                hint="choose another --out directory, or pass --force to overwrite",
            )
        _write(target, render(document))
        taken[key] = target
        result.files.append(str(target))
        result.warnings += exporter.warnings
    for warning in result.warnings:
        progress.warn(warning)
    return result


def _keys_in(directory: Path) -> dict[str, Path]:
    """The `key:` of each YAML file already in `directory` (what an export must not collide with)."""
    keys: dict[str, Path] = {}
    if not directory.is_dir():
        return keys
    for path in sorted(directory.glob("*.y*ml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and isinstance(data.get("key"), str):
            keys[data["key"]] = path
    return keys


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


def _virtual_entry(dashcard: DashCard, warnings: list[str]) -> dict[str, Any] | None:
    settings = dashcard.visualization_settings
    virtual = settings.get("virtual_card") or {}
    link = settings.get("link")
    if virtual.get("display") == "link" and isinstance(link, dict):
        if isinstance(link.get("url"), str) and link["url"]:
            return {"link": link["url"]}
        entity = link.get("entity")
        if isinstance(entity, dict) and entity.get("model") and entity.get("id") is not None:
            model = {"dataset": "model", "card": "question"}.get(str(entity["model"]), str(entity["model"]))
            path = f"/{model}/{entity['id']}"
            warnings.append(f"link card to {model} {entity.get('name')!r} written as its address {path}")
            return {"link": path}
        return None
    text = settings.get("text")
    if not isinstance(text, str) or not text:
        return None
    return {"heading": text} if virtual.get("display") == "heading" else {"text": text}


class _Exporter:
    """One dashboard as a YAML document, with the cards it is built on."""

    def __init__(
        self, mb: MetabaseClient, dashboard: Dashboard, metadata: dict[int, DatabaseMetadata]
    ) -> None:
        self.mb, self.dashboard, self.metadata = mb, dashboard, metadata
        self.warnings: list[str] = []
        marked = [identity_of(d.card) for d in dashboard.dashcards if d.card is not None]
        own = [m.split("/", 1)[0] for m in marked if m is not None]
        self.key = own[0] if own else slug(dashboard.name)
        self.cards: dict[int, Card] = {}  # every card exported or referred to, by id
        self.keys: dict[int, str] = {}  # card id -> key as the file refers to it (bare when in this file)
        self.extra: list[int] = []  # cards written under `questions:`
        self.used: set[str] = set()

    # -- keys ---------------------------------------------------------------------------------

    def _local_key(self, card: Card) -> str:
        ident = identity_of(card)
        key = ident.split("/", 1)[1] if ident and ident.split("/", 1)[0] == self.key else slug(card.name)
        while key in self.used:
            key += "-2"
        self.used.add(key)
        return key

    def _collect_sources(self, card: Card) -> None:
        """Find (reading them once) the cards `card` is built on, and give each a key."""
        try:
            normal = from_wire(card.dataset_query)
        except NormalizeError:
            return
        if normal is None:
            return
        found: list[int] = []

        def visit(kind: str, value: Any, stage: dict[str, Any]) -> Any:
            if kind == "card" and isinstance(value, int):
                found.append(value)
            return value

        map_leaves(normal, visit)
        for source_id in found:
            if source_id in self.keys:
                continue
            source = self.mb.get_card(source_id)
            self.cards[source_id] = source
            ident = identity_of(source)
            if ident is not None and ident.split("/", 1)[0] != self.key:
                self.keys[source_id] = ident  # managed elsewhere: referred to by its identity
                continue
            self.keys[source_id] = self._local_key(source)
            self.extra.append(source_id)
            self._collect_sources(source)

    def _schema(self, card: Card) -> MetadataSchema | None:
        db_id = card.database_id
        if db_id is None:
            return None
        if db_id not in self.metadata:
            self.metadata[db_id] = self.mb.database_metadata(db_id)
        return MetadataSchema(self.metadata[db_id])

    # -- the document -------------------------------------------------------------------------

    def document(self, collection_path: tuple[str, ...] | None, databases: dict[int, Any]) -> dict[str, Any]:
        dashboard = self.dashboard
        on_board = [d.card for d in dashboard.dashcards if d.card is not None]
        for card in on_board:
            if card.id not in self.keys:
                self.cards[card.id] = card
                self.keys[card.id] = self._local_key(card)
        for card in on_board:
            self._collect_sources(card)
        doc: dict[str, Any] = {"key": self.key, "name": dashboard.name}
        if collection_path is None:
            where = "the root" if dashboard.collection_id is None else "a personal or archived"
            self.warnings.append(f"{dashboard.name!r} is in {where} collection; written under `Exported`")
            collection_path = ("Exported",)
        doc["collection"] = "/".join(collection_path)
        if dashboard.description:
            doc["description"] = dashboard.description
        db_ids = sorted({c.database_id for c in self.cards.values() if c.database_id is not None})
        if db_ids:
            if len(db_ids) > 1:
                self.warnings.append(
                    f"{dashboard.name!r} reads {len(db_ids)} databases; the file names the first, "
                    "split it to apply it elsewhere"
                )
            name = databases[db_ids[0]].name if db_ids[0] in databases else self._schema_name(db_ids[0])
            doc["database"] = name
        if (dashboard.width or "fixed") != "fixed":
            doc["width"] = dashboard.width
        filter_keys, filters = self._filters()
        if filters:
            doc["filters"] = filters
        tabs = sorted(dashboard.tabs, key=lambda t: (t.position or 0, t.id))
        tab_names = {t.id: t.name for t in tabs}
        if tabs:
            doc["tabs"] = [t.name for t in tabs]
        tab_order = {t.id: i for i, t in enumerate(tabs)}
        cards: list[dict[str, Any]] = []

        def reading_order(d: DashCard) -> tuple[int, int, int, int]:
            return (tab_order.get(d.dashboard_tab_id or -1, 0), d.row, d.col, d.id)

        for dashcard in sorted(dashboard.dashcards, key=reading_order):
            at: dict[str, Any] = {}
            if dashcard.dashboard_tab_id in tab_names:
                at["tab"] = tab_names[dashcard.dashboard_tab_id]
            at.update(row=dashcard.row, col=dashcard.col, width=dashcard.size_x, height=dashcard.size_y)
            if dashcard.card is None:
                entry = _virtual_entry(dashcard, self.warnings)
                if entry is None:
                    self.warnings.append(
                        f"dashcard {dashcard.id} is neither a question, text, heading nor link: skipped"
                    )
                    continue
            else:
                entry = self._question(dashcard.card, dashcard, filter_keys, {f["key"]: f for f in filters})
            entry["at"] = at
            cards.append(entry)
        doc["cards"] = cards
        wired = {key for entry in cards for key in (entry.get("filters") or {}).values()}
        for unwired in [f["key"] for f in filters if f["key"] not in wired]:
            # Kept (an export leaves nothing out), but `validate` refuses it: say so now.
            self.warnings.append(
                f"{dashboard.name!r}: filter `{unwired}` is wired to no card, which validate refuses; wire "
                "it in a card's `filters:` or remove it"
            )
        questions = [self._question(self.cards[i], None, {}, {}) for i in self.extra]
        if questions:
            doc["questions"] = questions
        return _ordered(doc)

    def _schema_name(self, db_id: int) -> str:
        meta = self.metadata.get(db_id) or self.mb.database_metadata(db_id)
        return meta.name

    def _filters(self) -> tuple[dict[str, str], list[dict[str, Any]]]:
        filter_keys: dict[str, str] = {}
        filters: list[dict[str, Any]] = []
        for param in self.dashboard.parameters:
            name = _PARAMETER_TYPES.get(param.type)
            if name is None:
                self.warnings.append(
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
        return filter_keys, filters

    def _question(
        self,
        card: Card,
        dashcard: DashCard | None,
        filter_keys: dict[str, str],
        filter_by_key: dict[str, dict[str, Any]],
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {"key": self.keys[card.id], "name": card.name}
        if card.type in ("model", "metric"):
            entry["type"] = card.type
        if card.description:
            entry["description"] = card.description
        display = _display_name(card)
        if display is None:
            self.warnings.append(f"card {card.name!r} has display {card.display!r}; written as `table`")
            display = "table"
        entry["display"] = display
        sql = card.native_sql
        wiring: dict[str, str] = {}
        self._schema(card)  # reads the card's database metadata once
        if sql is not None:
            entry["sql"] = sql.rstrip() + "\n"
            if dashcard is not None:
                wiring = _tag_wiring(dashcard, filter_keys)
            tags = _tags(card, sql, wiring, filter_by_key, self.metadata, self.warnings)
            if tags:
                entry["tags"] = tags
        else:
            stage0 = self._query(card, entry)
            if dashcard is not None and stage0 is not None:
                wiring = self._column_wiring(card, dashcard, filter_keys, stage0)
        if wiring:
            entry["filters"] = dict(sorted(wiring.items()))
        metadata = self._metadata(card, entry)
        if metadata:
            entry["metadata"] = metadata
        viz = _viz_from_settings(card.display or "table", card.visualization_settings)
        if viz:
            entry["viz"] = viz
        return entry

    def _query(self, card: Card, entry: dict[str, Any]) -> dict[str, Any] | None:
        """Write `query:` (or `mbql:`) into the entry; the first stage with names, for the filter wiring."""
        schema = self._schema(card)
        try:
            normal = from_wire(card.dataset_query)
            assert normal is not None and schema is not None
            names = canonical(to_names(normal, schema, self.keys))
        except (NormalizeError, TranslateError, AssertionError) as exc:
            raise MetabaseError(
                f"card {card.name!r} (id {card.id}) has a query this tool cannot read: {exc}",
                hint="open it in Metabase and save it again, or leave it out of the export",
            ) from exc

        def card_type(key: str) -> str:
            found = next((c for i, c in self.cards.items() if self.keys.get(i) == key), None)
            return "model" if found is not None and found.type == "model" else "question"

        readable = to_readable(names, card_type)
        if readable is not None and self._same(card, readable, names, schema, card_type):
            entry["query"] = _blocks(readable)
        else:
            entry["mbql"] = _raw_layout(encode_raw(names))
        stages = names.get("stages") or [{}]
        return dict(stages[0])

    def _same(
        self, card: Card, readable: Any, names: dict[str, Any], schema: MetadataSchema, card_type: Any
    ) -> bool:
        """Whether the readable form compiles back to exactly the query Metabase holds."""
        kind = "model" if card.type == "model" else "metric" if card.type == "metric" else "question"
        try:
            question = Question.model_validate({"key": "x", "name": "x", "type": kind, "query": readable})
        except ValueError:
            return False

        def lookup(key: str, loc: tuple[Any, ...]) -> CardSource:
            return CardSource(key, card_type(key), None)

        compiler = QuestionCompiler(Locator(Path("export")), (), schema, lookup)
        compiled = compiler.compile(question)
        return compiled is not None and not compiler.errors and compiled.query == names

    def _column_wiring(
        self, card: Card, dashcard: DashCard, filter_keys: dict[str, str], stage0: dict[str, Any]
    ) -> dict[str, str]:
        schema = self._schema(card)
        wiring: dict[str, str] = {}
        for mapping in dashcard.parameter_mappings:
            target = mapping.target
            if mapping.parameter_id not in filter_keys or len(target) < 2 or not isinstance(target[1], list):
                continue
            options = target[2] if len(target) > 2 and isinstance(target[2], dict) else {}
            text = None
            if schema is not None and target[1][:1] == ["field"] and options.get("stage-number", 0) == 0:
                try:
                    ref = field_to_names(normal_ref(target[1]), schema, stage0)
                except TranslateError:
                    ref = None
                text = column_text(stage0, ref) if ref is not None else None
            if text is None:
                self.warnings.append(
                    f"card {card.name!r}: filter `{filter_keys[mapping.parameter_id]}` targets {target!r}, "
                    "which YAML cannot name: that wiring is left out"
                )
                continue
            wiring[text] = filter_keys[mapping.parameter_id]
        return wiring

    def _metadata(self, card: Card, entry: dict[str, Any]) -> dict[str, Any]:
        """A model's column metadata that differs from its fields' own."""
        if card.type not in ("model", "metric") or not card.result_metadata:
            return {}
        schema = self._schema(card)
        out: dict[str, Any] = {}
        for column in card.result_metadata:
            name = column.get("name")
            if not isinstance(name, str):
                continue
            field_id = column.get("id")
            field = schema.field_by_id(field_id) if schema is not None and isinstance(field_id, int) else None
            meta: dict[str, Any] = {}
            default_name = field.display_name if field is not None else None
            if column.get("display_name") and column["display_name"] != default_name and field is not None:
                meta["display_name"] = column["display_name"]
            if column.get("description") and column["description"] != getattr(field, "description", None):
                meta["description"] = column["description"]
            semantic = column.get("semantic_type")
            if semantic and (field is None or semantic != field.semantic_type):
                meta["semantic_type"] = _SEMANTIC_WORDS.get(semantic, semantic)
            target = column.get("fk_target_field_id")
            own_target = field.fk_target_field_id if field is not None else None
            if isinstance(target, int) and schema is not None and target != own_target:
                with contextlib.suppress(TranslateError):  # a target gone from the metadata is left out
                    meta["fk_target"] = ".".join(schema.field_path(target))
            if meta:
                out[name] = meta
        return out


def _tag_wiring(dashcard: DashCard, filter_keys: dict[str, str]) -> dict[str, str]:
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
    return wiring


def _tags(
    card: Card,
    sql: str,
    wiring: dict[str, str],
    filter_by_key: dict[str, dict[str, Any]],
    metadata: dict[int, DatabaseMetadata],
    warnings: list[str],
) -> dict[str, Any]:
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
    return tags


_ORDER = [
    "key", "name", "collection", "description", "database", "width", "filters", "tabs", "cards", "questions"
]  # fmt: skip


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
    """A mapping always written in block style, however few and flat its values (the file, a query step)."""


class _Clause(list[Any]):
    """An MBQL clause of a raw block: always on one line, `[">", [field, v.amount], 100]`."""


def _clause_representer(dumper: yaml.SafeDumper, value: _Clause) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=True)


def _blocks(query: Any) -> Any:
    """A readable `query:` with each step in block style (one clause per line)."""
    if isinstance(query, list):
        return [_Document(step) for step in query]
    return _Document(query)


def _raw_layout(value: Any, depth: int = 0) -> Any:
    """A raw block laid out for reading: mappings in block style, every clause on one line."""
    if isinstance(value, dict):
        return _Document({k: _raw_layout(v, depth + 1) for k, v in value.items()})
    if isinstance(value, list):
        if value and isinstance(value[0], str):
            return _Clause(value)
        return [_raw_layout(v, depth + 1) for v in value]
    return value


def _document_representer(dumper: yaml.SafeDumper, value: _Document) -> yaml.Node:
    return dumper.represent_mapping("tag:yaml.org,2002:map", value.items(), flow_style=False)


_Dumper.add_representer(str, _str_representer)
_Dumper.add_representer(dict, _dict_representer)
_Dumper.add_representer(list, _list_representer)
_Dumper.add_representer(_Document, _document_representer)
_Dumper.add_representer(_Clause, _clause_representer)


def render(document: dict[str, Any]) -> str:
    """The YAML text of a dashboard document, with the schema comment editors read."""
    body = yaml.dump(
        _Document(document), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110, indent=2
    )
    return "# yaml-language-server: $schema=./schema.json\n" + body
