"""Dashboard YAML: the pydantic models, and loading files with file:line:column for every problem.

The YAML is composed into nodes first (not `safe_load`) so that every key and value keeps its mark:
pydantic's error `loc` is mapped back to the line and column a person has to edit. Duplicate keys,
which `safe_load` silently merges, are rejected here. `${VAR}` / `${VAR:-default}` in string values
are expanded from the environment so one file serves every environment.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from provisioner.errors import SpecError, SpecErrors

GRID_COLUMNS = 24
KEY_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
FIELD_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){1,2}$"

# YAML filter type -> (Metabase parameter type, sectionId). Plain words are aliases people reach for.
FILTER_TYPES: dict[str, tuple[str, str]] = {
    "category": ("category", "string"),
    "text": ("string/=", "string"),
    "string/=": ("string/=", "string"),
    "string/contains": ("string/contains", "string"),
    "string/starts-with": ("string/starts-with", "string"),
    "number": ("number/=", "number"),
    "number/=": ("number/=", "number"),
    "number/between": ("number/between", "number"),
    "number/>=": ("number/>=", "number"),
    "number/<=": ("number/<=", "number"),
    "id": ("id", "id"),
    "date/single": ("date/single", "date"),
    "date/range": ("date/range", "date"),
    "date/relative": ("date/relative", "date"),
    "date/month-year": ("date/month-year", "date"),
    "date/quarter-year": ("date/quarter-year", "date"),
    "date/all-options": ("date/all-options", "date"),
}

# YAML display -> (Metabase display, settings it implies).
DISPLAYS: dict[str, tuple[str, dict[str, Any]]] = {
    "table": ("table", {}),
    "scalar": ("scalar", {}),
    "smartscalar": ("smartscalar", {}),
    "bar": ("bar", {}),
    "row": ("row", {}),
    "line": ("line", {}),
    "area": ("area", {}),
    "combo": ("combo", {}),
    "scatter": ("scatter", {}),
    "pie": ("pie", {}),
    "funnel": ("funnel", {}),
    "gauge": ("gauge", {}),
    "progress": ("progress", {}),
    "waterfall": ("waterfall", {}),
    "pin map": ("map", {"map.type": "pin"}),
    "object": ("object", {}),
}

FilterTypeName = Literal[
    "category",
    "text",
    "string/=",
    "string/contains",
    "string/starts-with",
    "number",
    "number/=",
    "number/between",
    "number/>=",
    "number/<=",
    "id",
    "date/single",
    "date/range",
    "date/relative",
    "date/month-year",
    "date/quarter-year",
    "date/all-options",
]
DisplayName = Literal[
    "table",
    "scalar",
    "smartscalar",
    "bar",
    "row",
    "line",
    "area",
    "combo",
    "scatter",
    "pie",
    "funnel",
    "gauge",
    "progress",
    "waterfall",
    "pin map",
    "object",
]
Key = Annotated[str, Field(pattern=KEY_PATTERN, description="lowercase letters, digits, - and _")]
NonBlank = Annotated[str, Field(min_length=1)]


class SpecModel(BaseModel):
    """Strict: an unknown key is a typo the author must hear about."""

    model_config = ConfigDict(extra="forbid")


class Filter(SpecModel):
    """A dashboard filter, wired to cards by its `key`."""

    key: Key
    name: NonBlank
    type: FilterTypeName = Field(description="Metabase parameter type; `text`/`number` are aliases")
    default: Any = Field(default=None, description="value applied when the dashboard opens")
    required: bool = False

    @property
    def parameter_type(self) -> str:
        return FILTER_TYPES[self.type][0]

    @property
    def section(self) -> str:
        return FILTER_TYPES[self.type][1]


class TagSpec(SpecModel):
    """How one `{{tag}}` of the SQL is typed: a field filter (`field`) or a raw value (`type`)."""

    field: Annotated[str, Field(pattern=FIELD_PATTERN)] | None = Field(
        default=None, description="field filter on table.column (or schema.table.column)"
    )
    type: Literal["text", "number", "date"] | None = Field(
        default=None, description="raw value type; inferred from the wired filter when omitted"
    )
    widget: FilterTypeName | None = Field(
        default=None, description="field filter widget; default: the filter's type"
    )
    label: NonBlank | None = Field(default=None, description="display name of the variable")
    default: Any = None

    @model_validator(mode="after")
    def _field_or_type(self) -> TagSpec:
        if self.field and self.type:
            raise ValueError("give `field` (a field filter) or `type` (a raw value), not both")
        return self


class Viz(SpecModel):
    """Visualisation by column name; `settings` passes raw Metabase settings through."""

    x: str | list[str] | None = Field(default=None, description="dimension column(s)")
    y: str | list[str] | None = Field(default=None, description="metric column(s)")
    latitude: str | None = None
    longitude: str | None = None
    stacked: bool | None = None
    title: str | None = None
    settings: dict[str, Any] = Field(
        default_factory=dict, description="raw visualization_settings, merged last"
    )

    def columns(self) -> list[tuple[str, str]]:
        """Every (viz key, column name) this viz refers to."""
        out: list[tuple[str, str]] = []
        for name in ("x", "y"):
            value = getattr(self, name)
            for column in [value] if isinstance(value, str) else value or []:
                out.append((name, column))
        out += [(n, getattr(self, n)) for n in ("latitude", "longitude") if getattr(self, n)]
        return out


class Place(SpecModel):
    """Where a card sits; omitted parts are chosen by the layout engine."""

    tab: NonBlank | None = None
    row: int | None = Field(default=None, ge=0)
    col: int | None = Field(default=None, ge=0, lt=GRID_COLUMNS)
    width: int | None = Field(default=None, ge=1, le=GRID_COLUMNS)
    height: int | None = Field(default=None, ge=1)


class QueryCard(SpecModel):
    """A native SQL question on the dashboard."""

    key: Key
    name: NonBlank
    description: NonBlank | None = None
    display: DisplayName = "table"
    sql: NonBlank | None = None
    sql_file: NonBlank | None = Field(default=None, description="path relative to this YAML file")
    tags: dict[str, TagSpec] = Field(default_factory=dict)
    filters: dict[str, Key] = Field(default_factory=dict, description="template tag -> dashboard filter key")
    viz: Viz = Field(default_factory=Viz)
    at: Place = Field(default_factory=Place)

    @model_validator(mode="after")
    def _one_sql_source(self) -> QueryCard:
        if (self.sql is None) == (self.sql_file is None):
            raise ValueError("give exactly one of `sql` (inline) or `sql_file` (a path)")
        return self


class TextCard(SpecModel):
    """A markdown text card."""

    text: NonBlank
    at: Place = Field(default_factory=Place)


class HeadingCard(SpecModel):
    """A heading card."""

    heading: NonBlank
    at: Place = Field(default_factory=Place)


def _card_kind(value: Any) -> str:
    if isinstance(value, Mapping):
        if "text" in value:
            return "text"
        if "heading" in value:
            return "heading"
    return "query"


AnyCard = Annotated[
    Annotated[QueryCard, Tag("query")]
    | Annotated[TextCard, Tag("text")]
    | Annotated[HeadingCard, Tag("heading")],
    Discriminator(_card_kind),
]
_UNION_TAGS = {"query", "text", "heading"}


class DashboardSpec(SpecModel):
    """One dashboard file."""

    model_config = ConfigDict(
        extra="forbid",
        title="Dashboard",
        json_schema_extra={"description": "A Metabase dashboard kept as code (metabase-provisioner)."},
    )

    key: Key = Field(description="stable identity: renaming `name` updates in place")
    name: NonBlank
    collection: NonBlank = Field(
        description="collection path, e.g. `Asset Finance Demo/Risk`; created when missing"
    )
    description: NonBlank | None = None
    database: NonBlank | None = Field(
        default=None, description="Metabase database name; default: the only non-sample database"
    )
    width: Literal["fixed", "full"] = "fixed"
    filters: list[Filter] = Field(default_factory=list)
    tabs: list[NonBlank] = Field(default_factory=list)
    cards: list[AnyCard] = Field(min_length=1)

    @field_validator("collection")
    @classmethod
    def _collection_path(cls, value: str) -> str:
        parts = [p.strip() for p in value.split("/")]
        if any(not p for p in parts):
            raise ValueError("collection path has an empty part; write `Parent/Child`")
        return "/".join(parts)

    @property
    def collection_path(self) -> tuple[str, ...]:
        return tuple(self.collection.split("/"))

    def filter(self, key: str) -> Filter | None:
        return next((f for f in self.filters if f.key == key), None)

    def query_cards(self) -> list[QueryCard]:
        return [c for c in self.cards if isinstance(c, QueryCard)]


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a dashboard file, for editors (`dashboards/schema.json`)."""
    schema = DashboardSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


# ---------------------------------------------------------------------------------------------
# Identities derived from keys: the same YAML yields the same ids on every machine.

KEY_SETTING = "provisioner.key"  # in a managed card's visualization_settings: "<dashboard key>/<card key>"


def card_identity(dashboard_key: str, card_key: str) -> str:
    """The identity a managed card carries in Metabase (`visualization_settings["provisioner.key"]`)."""
    return f"{dashboard_key}/{card_key}"


def identity_of(card: Any) -> str | None:
    """The identity of a Metabase card this tool manages; None for cards people made."""
    settings = getattr(card, "visualization_settings", None) or {}
    value = settings.get(KEY_SETTING)
    return value if isinstance(value, str) and "/" in value else None


def parameter_id(dashboard_key: str, filter_key: str) -> str:
    """The deterministic dashboard parameter id of a filter."""
    return hashlib.sha256(f"filter:{dashboard_key}/{filter_key}".encode()).hexdigest()[:8]


# ---------------------------------------------------------------------------------------------
# Template tags in SQL.

TAG_PATTERN = re.compile(r"{{\s*([A-Za-z_][A-Za-z0-9_]*)\s*}}")
OPTIONAL_CLAUSE = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)


def sql_tags(sql: str) -> dict[str, bool]:
    """Each `{{tag}}` in the SQL -> True when it is required (appears outside every `[[ ]]`)."""
    required = {m.group(1) for m in TAG_PATTERN.finditer(OPTIONAL_CLAUSE.sub("", sql))}
    return {m.group(1): m.group(1) in required for m in TAG_PATTERN.finditer(sql)}


# ---------------------------------------------------------------------------------------------
# Loading.


@dataclass(frozen=True)
class Mark:
    line: int
    column: int


@dataclass
class Locator:
    """Marks of every key and value of one file, by path (`("cards", 0, "sql")`)."""

    path: Path
    values: dict[tuple[Any, ...], Mark] = field(default_factory=dict)
    keys: dict[tuple[Any, ...], Mark] = field(default_factory=dict)

    def mark(self, loc: tuple[Any, ...], *, key: bool = False) -> Mark:
        """The mark of `loc`, or of its nearest ancestor that has one."""
        loc = tuple(loc)
        while loc:
            found = (self.keys if key else self.values).get(loc) or self.values.get(loc)
            if found:
                return found
            loc = loc[:-1]
        return self.values.get((), Mark(1, 1))

    def error(
        self, loc: tuple[Any, ...], problem: str, *, key: bool = False, hint: str | None = None
    ) -> SpecError:
        """A SpecError naming this file, the line and column of `loc`, and the field path."""
        mark = self.mark(loc, key=key)
        return SpecError(self.path, mark.line, field_path(loc), problem, column=mark.column, hint=hint)


def field_path(loc: Iterable[Any]) -> str:
    """`("cards", 2, "tags", "x")` -> `cards[2].tags.x`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(file)"


_UNREADABLE = object()  # a node YAML cannot turn into a value; its error is recorded
_ENV = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Composer:
    """Turns YAML nodes into plain Python, recording marks and rejecting duplicate keys."""

    def __init__(self, locator: Locator, environ: Mapping[str, str]) -> None:
        self.locator = locator
        self.environ = environ
        self.errors: list[SpecError] = []
        self._constructor = yaml.SafeLoader("")
        self._open: set[int] = set()  # the mappings and lists being built: an alias to one recurses
        self.unreadable: set[str] = set()  # field paths already reported as unreadable

    def build(self, node: yaml.Node, loc: tuple[Any, ...]) -> Any:
        self.locator.values[loc] = Mark(node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            if id(node) in self._open:
                self._unreadable(node, loc, "an alias (`*name`) refers to the mapping or list holding it")
                return None
            self._open.add(id(node))
            try:
                return self._build_collection(node, loc)
            finally:
                self._open.discard(id(node))
        value = self._construct(node, loc)
        if isinstance(value, str):
            value = self._expand(value, loc)
        return value

    def _build_collection(self, node: yaml.MappingNode | yaml.SequenceNode, loc: tuple[Any, ...]) -> Any:
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self._construct(key_node, loc)
                if key is _UNREADABLE:
                    continue
                if not isinstance(key, str | int | float | bool) or key is None:
                    key = str(key)
                child = (*loc, key)
                if key in out:
                    first = self.locator.keys[child]
                    self.errors.append(
                        SpecError(
                            self.locator.path,
                            key_node.start_mark.line + 1,
                            field_path(child),
                            f"duplicate key `{key}` (first at line {first.line}); "
                            "YAML would keep only the last",
                            column=key_node.start_mark.column + 1,
                            hint="remove or rename one of the two",
                        )
                    )
                    continue
                self.locator.keys[child] = Mark(key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                out[key] = self.build(value_node, child)
            return out
        return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]

    def _construct(self, node: yaml.Node, loc: tuple[Any, ...]) -> Any:
        """The Python value of a scalar or key node; `_UNREADABLE` (and an error) if YAML cannot give one."""
        try:
            return self._constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError) as exc:
            # `!tags` the safe loader does not know, `!!int x`, `<<` merge keys: a file problem, not a crash.
            problem = getattr(exc, "problem", None) or str(exc)
            self._unreadable(node, loc, f"cannot read this value: {problem}")
            return _UNREADABLE

    def _unreadable(self, node: yaml.Node, loc: tuple[Any, ...], problem: str) -> None:
        self.unreadable.add(field_path(loc))
        self.errors.append(
            SpecError(
                self.locator.path,
                node.start_mark.line + 1,
                field_path(loc),
                problem,
                column=node.start_mark.column + 1,
                hint="write plain YAML: no `!tags`, `<<` merge keys or self-referring aliases",
            )
        )

    def _expand(self, value: str, loc: tuple[Any, ...]) -> str:
        def replace(match: re.Match[str]) -> str:
            escaped, name, default = match.groups()
            if escaped:  # `$${X}` is a literal `${X}`
                return match.group(0)[1:]
            if name in self.environ and self.environ[name] != "":
                return self.environ[name]
            if default is not None:
                return default
            self.errors.append(
                self.locator.error(
                    loc,
                    f"environment variable `{name}` is not set",
                    hint=f"export {name}=... or write `${{{name}:-default}}`",
                )
            )
            return match.group(0)

        return _ENV.sub(replace, value)


def _pydantic_errors(exc: ValidationError, locator: Locator, data: Any) -> list[SpecError]:
    errors: list[SpecError] = []
    for err in exc.errors():
        loc = _without_union_tag(tuple(err["loc"]))
        kind = err["type"]
        msg = err["msg"].removeprefix("Value error, ")
        hint = None
        if kind == "extra_forbidden":
            parent = _model_at(loc[:-1], data)
            allowed = ", ".join(parent.model_fields) if parent else ""
            problem = f"unknown key `{loc[-1]}`" + (f"; allowed here: {allowed}" if allowed else "")
            hint = "remove the key or fix its spelling"
            errors.append(locator.error(loc, problem, key=True, hint=hint))
            continue
        if kind == "missing":
            problem = f"required key `{loc[-1]}` is missing"
            hint = f"add `{loc[-1]}:`"
            errors.append(locator.error(loc[:-1], problem, hint=hint))
            continue
        if kind == "string_pattern_mismatch":
            if str(loc[-1]) == "field" or (len(loc) > 1 and loc[-2] == "field"):
                msg = "must be `table.column` (or `schema.table.column`)"
            else:
                msg = "must be lowercase letters, digits, `-` or `_` (a stable key)"
        if kind == "literal_error":
            msg = f"`{err['input']}` is not allowed; use one of: {err['ctx']['expected']}"
        errors.append(locator.error(loc, msg, hint=hint))
    return errors


def _without_union_tag(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """`loc` without the card kind pydantic inserts after `cards[i]` (`text` may also be a real key)."""
    if len(loc) > 2 and loc[0] == "cards" and isinstance(loc[1], int) and loc[2] in _UNION_TAGS:
        return (*loc[:2], *loc[3:])
    return loc


def _model_at(loc: tuple[Any, ...], data: Any) -> type[BaseModel] | None:
    """The spec model that owns the mapping at `loc` (to list the keys allowed there)."""
    model: type[BaseModel] | None = DashboardSpec
    i = 0
    while i < len(loc) and model is not None:
        part = loc[i]
        if model is DashboardSpec and part == "cards" and i + 1 < len(loc):
            kinds = {"text": TextCard, "heading": HeadingCard, "query": QueryCard}
            try:
                model = kinds[_card_kind(data["cards"][loc[i + 1]])]
            except (KeyError, IndexError, TypeError):
                return None
            i += 2
        elif model is DashboardSpec and part == "filters":
            model, i = Filter, i + 2
        elif model is QueryCard and part == "tags":
            model, i = TagSpec, i + 2
        elif part in ("viz", "at"):
            model, i = (Viz if part == "viz" else Place), i + 1
        else:
            return None
    return model


@dataclass
class LoadedDashboard:
    """A validated dashboard file: the model, where each part is written, and each card's SQL."""

    path: Path
    spec: DashboardSpec
    locator: Locator
    sql: dict[str, str] = field(default_factory=dict)


def load_file(path: Path, environ: Mapping[str, str] | None = None) -> LoadedDashboard:
    """One dashboard file, parsed and checked; raises SpecErrors listing every problem found."""
    environ = os.environ if environ is None else environ
    locator = Locator(path)
    text, unreadable = _read_text(path)
    if text is None:
        raise SpecErrors([SpecError(path, 1, "(file)", f"cannot read: {unreadable}")])
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 0)
        problem = f"not valid YAML: {getattr(exc, 'problem', None) or exc}"
        raise SpecErrors([SpecError(path, line, "(file)", problem, column=column)]) from exc
    if node is None:
        raise SpecErrors(
            [SpecError(path, 1, "(file)", "the file is empty", hint="start from dashboards/*.yaml")]
        )
    composer = _Composer(locator, environ)
    data = composer.build(node, ())
    errors = composer.errors
    if not isinstance(data, dict):
        raise SpecErrors([locator.error((), "a dashboard file must be a mapping (key: value)")])
    try:
        spec = DashboardSpec.model_validate(data)
    except ValidationError as exc:
        # A value YAML could not read is reported once, not again as pydantic's "invalid string".
        found = [e for e in _pydantic_errors(exc, locator, data) if e.field not in composer.unreadable]
        raise SpecErrors(sorted(errors + found, key=lambda e: (e.line, e.column))) from exc
    loaded = LoadedDashboard(path, spec, locator)
    errors += _read_sql(loaded)
    errors += check_dashboard(loaded)
    if errors:
        raise SpecErrors(sorted(errors, key=lambda e: (e.line, e.column)))
    return loaded


def dashboard_files(paths: Iterable[Path]) -> list[Path]:
    """The YAML files named, directories expanded to their `*.yaml`/`*.yml` (sorted)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        else:
            files.append(path)
    return files


def load_paths(paths: Iterable[Path], environ: Mapping[str, str] | None = None) -> list[LoadedDashboard]:
    """Every dashboard under `paths`; raises SpecErrors with the problems of all files at once."""
    files = dashboard_files(paths)
    if not files:
        raise SpecErrors([SpecError(Path("."), 0, "(paths)", "no dashboard files (*.yaml) found")])
    loaded: list[LoadedDashboard] = []
    errors: list[SpecError] = []
    for path in files:
        if not path.exists():
            errors.append(SpecError(path, 0, "(file)", "no such file"))
            continue
        try:
            loaded.append(load_file(path, environ))
        except SpecErrors as exc:
            errors += exc.errors
    seen: dict[str, LoadedDashboard] = {}
    for item in loaded:
        first = seen.setdefault(item.spec.key, item)
        if first is not item:
            errors.append(
                item.locator.error(
                    ("key",),
                    f"dashboard key `{item.spec.key}` is also used by {first.path}",
                    hint="each dashboard needs its own key",
                )
            )
    if errors:
        raise SpecErrors(errors)
    return loaded


def _read_sql(loaded: LoadedDashboard) -> list[SpecError]:
    errors: list[SpecError] = []
    for index, card in enumerate(loaded.spec.cards):
        if not isinstance(card, QueryCard):
            continue
        if card.sql is not None:
            loaded.sql[card.key] = card.sql
            continue
        assert card.sql_file is not None
        target = (loaded.path.parent / card.sql_file).resolve()
        text, unreadable = _read_text(target)
        if text is None:
            errors.append(
                loaded.locator.error(
                    ("cards", index, "sql_file"),
                    f"{unreadable}: {target}",
                    hint="sql_file is relative to the YAML file",
                )
            )
        else:
            loaded.sql[card.key] = text
    return errors


def _read_text(path: Path) -> tuple[str | None, str | None]:
    """(the file's text, None), or (None, why it cannot be read)."""
    try:
        return path.read_text(encoding="utf-8"), None
    except FileNotFoundError:
        return None, "file not found"
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text (byte {exc.start} cannot be decoded)"
    except OSError as exc:
        return None, (exc.strerror or type(exc).__name__).lower()


# ---------------------------------------------------------------------------------------------
# Checks across fields: what pydantic cannot see.

_VARIABLE_FILTERS = {
    "text": {"category", "string/=", "string/contains", "string/starts-with", "id"},
    "number": {"number/=", "category", "id"},
    "date": {"date/single"},
}


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


def resolve_tags(spec: DashboardSpec, card: QueryCard, sql: str) -> list[ResolvedTag]:
    """The card's template tags with their types, widgets and wired filters."""
    out: list[ResolvedTag] = []
    for name, required in sql_tags(sql).items():
        tag = card.tags.get(name) or TagSpec()
        filter_key = card.filters.get(name)
        wired = spec.filter(filter_key) if filter_key else None
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


def check_dashboard(loaded: LoadedDashboard) -> list[SpecError]:
    """Consistency problems across fields: wiring, tags, tabs, keys and layout."""
    from provisioner import layout  # layout imports this module's models

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
    errors += layout.check(loaded)
    return errors
