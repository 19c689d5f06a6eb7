"""Loading dashboard files: YAML composed into nodes so every key and value keeps its mark.

pydantic's error `loc` is mapped back to the line and column a person has to edit. Duplicate keys,
which `safe_load` silently merges, are rejected here. `${VAR}` / `${VAR:-default}` in string values
are expanded from the environment so one file serves every environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from provisioner.errors import SpecError, SpecErrors
from provisioner.spec.checks import check_document
from provisioner.spec.document import LoadedFile, Locator, Mark, field_path
from provisioner.spec.models import (
    _UNION_TAGS,
    SEMANTIC_TYPES,
    DashboardSpec,
    HeadingCard,
    LinkCard,
    QueryCard,
    TextCard,
    _card_kind,
    document_kind,
)
from provisioner.spec.question import compile_questions

_UNREADABLE = object()  # a node YAML cannot turn into a value; its error is recorded
# libyaml's parser when PyYAML was built with it (the wheels are): it composes the same nodes with the same
# line and column marks, about six times faster than PyYAML's pure-Python parser.
_PARSER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR_TAG = "tag:yaml.org,2002:str"
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
                # Keys are names, read as written: YAML 1.1 would make `on:` (a join's) the boolean true.
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:bool":
                    key: Any = key_node.value
                else:
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
        if node.tag == _STR_TAG and isinstance(node, yaml.ScalarNode):
            return node.value  # what SafeConstructor gives a string, without its bookkeeping per node
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
    for err in _matching_union_members(exc.errors(), data):
        loc = tuple(err["loc"])
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
            if str(loc[-1]) in ("field", "fk_target") or (len(loc) > 1 and loc[-2] == "field"):
                msg = "must be `table.column` (or `schema.table.column`)"
            elif str(loc[-1]) == "semantic_type":
                words = ", ".join(SEMANTIC_TYPES)
                msg = f"`{err['input']}` is not a semantic type; use one of: {words}, or a `type/...`"
            else:
                msg = "must be lowercase letters, digits, `-` or `_` (a stable key)"
        if kind == "literal_error":
            msg = f"`{err['input']}` is not allowed; use one of: {err['ctx']['expected']}"
        errors.append(locator.error(loc, msg, hint=hint))
    return errors


# What a union member pydantic names in an error `loc` accepts: `constrained-str`, `list[Stage]`,
# `function-after[_exactly_one(), Source]`, `Stage` ... (a model is written as a mapping).
def _member_kind(marker: str) -> str:
    if marker in ("str", "constrained-str") or marker.startswith("literal["):
        return "a string"
    if marker.startswith(("list[", "tuple[")):
        return "a list"
    if marker in ("int", "float", "constrained-int", "constrained-float"):
        return "a number"
    if marker == "bool":
        return "true or false"
    return "a mapping"


def _steps_into(value: Any, part: Any) -> bool:
    """Whether `part` indexes into `value` (a list position, or a key of the mapping)."""
    if isinstance(part, int) and not isinstance(part, bool):
        return isinstance(value, list) and 0 <= part < len(value)
    return isinstance(value, dict) and part in value


def _is_member_marker(part: str) -> bool:
    """Whether a `loc` part names a union member (`list[Stage]`, `constrained-str`, `Source`), not a key."""
    return (
        "[" in part
        or part[:1].isupper()
        or part in ("str", "int", "float", "bool", "constrained-str", "constrained-int", "constrained-float")
    )


def _kind_of(value: Any) -> str:
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    return "a mapping" if isinstance(value, dict) else "null"


def _matching_union_members(errors: list[Any], data: Any) -> list[Any]:
    """Errors with pydantic's union member names taken out of `loc`, keeping the member that fits the value.

    A union such as `str | Source` reports one error per member; only the member of the value's own kind
    (a mapping for a model, a list, a string) says something useful. When no member fits, one error
    names the kinds allowed.
    """
    kept: list[Any] = []
    unfit: dict[tuple[Any, ...], set[str]] = {}
    for err in errors:
        loc = _without_union_tag(tuple(err["loc"]))
        value: Any = data
        real: list[Any] = []
        fits = True
        for part in loc:
            if _steps_into(value, part):
                real.append(part)
                value = value[part]
            elif isinstance(part, str) and _is_member_marker(part):
                if _member_kind(part) != _kind_of(value):
                    fits = False
                    unfit.setdefault(tuple(real), set()).add(_member_kind(part))
                    break
            else:
                real.append(part)
                value = None
        if fits:
            kept.append({**err, "loc": tuple(real)})
    fitted = {tuple(e["loc"][: len(where)]) for e in kept for where in unfit}
    for where, kinds in unfit.items():
        if where in fitted or any(tuple(e["loc"])[: len(where)] == where for e in kept):
            continue
        kept.append(
            {"loc": where, "type": "union", "msg": f"must be {' or '.join(sorted(kinds))}", "input": None}
        )
    return kept


def _without_union_tag(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """`loc` without the card kind pydantic inserts after `cards[i]` (`text` may also be a real key)."""
    if len(loc) > 2 and loc[0] == "cards" and isinstance(loc[1], int) and loc[2] in _UNION_TAGS:
        return (*loc[:2], *loc[3:])
    return loc


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The spec models an annotation can hold (through Optional, unions, lists, dicts, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        found += [m for m in _models_in(arg) if m not in found]
    return found


def _holds_mapping(annotation: Any) -> bool:
    """Whether a field is a `dict[...]` (its next `loc` part is a key the author chose, not a field)."""
    if get_origin(annotation) is dict:
        return True
    return any(_holds_mapping(arg) for arg in get_args(annotation))


_CARD_MODELS: dict[str, type[BaseModel]] = {
    "text": TextCard,
    "heading": HeadingCard,
    "link": LinkCard,
    "query": QueryCard,
}


def _model_at(loc: tuple[Any, ...], data: Any) -> type[BaseModel] | None:
    """The spec model that owns the mapping at `loc` (to list the keys allowed there)."""
    model: type[BaseModel] = document_kind(data)
    value: Any = data
    skip_key = cards = False
    for part in loc:
        if isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            value = value[part]
            if cards:
                kinds: dict[str, type[BaseModel]] = {
                    "text": TextCard,
                    "heading": HeadingCard,
                    "query": QueryCard,
                }
                model, cards = kinds[_card_kind(value)], False
            continue
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
        if skip_key:
            skip_key = False
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        if model is DashboardSpec and part == "cards":
            cards = True
            continue
        candidates = _models_in(field.annotation)
        if len(candidates) != 1:
            return None
        model = candidates[0]
        skip_key = _holds_mapping(field.annotation)
    return None if cards or skip_key else model


def load_file(path: Path, environ: Mapping[str, str] | None = None) -> LoadedFile:
    """One file on its own, parsed and checked; raises SpecErrors listing every problem found.

    Its questions may only be built on models and questions of the same file (`load_paths` reads several).
    """
    loaded = _load_one(path, environ)
    _compile([loaded])
    return loaded


def _compile(loaded: list[LoadedFile]) -> None:
    """Compile every query-builder question (names only, no database); raises SpecErrors."""
    compiled = compile_questions(loaded, schema=None)
    if compiled.errors:
        raise SpecErrors(sorted(compiled.errors, key=lambda e: (str(e.path), e.line, e.column)))


def _load_one(path: Path, environ: Mapping[str, str] | None) -> LoadedFile:
    environ = os.environ if environ is None else environ
    locator = Locator(path)
    text, unreadable = _read_text(path)
    if text is None:
        raise SpecErrors([SpecError(path, 1, "(file)", f"cannot read: {unreadable}")])
    try:
        node = _compose(text)
    except yaml.YAMLError as exc:
        line, column, problem, hint = yaml_problem(exc, text)
        raise SpecErrors([SpecError(path, line, "(file)", problem, column=column, hint=hint)]) from exc
    if node is None:
        raise SpecErrors(
            [SpecError(path, 1, "(file)", "the file is empty", hint="start from dashboards/*.yaml")]
        )
    composer = _Composer(locator, environ)
    data = composer.build(node, ())
    errors = composer.errors
    if not isinstance(data, dict):
        raise SpecErrors([locator.error((), "a dashboard file must be a mapping (key: value)")])
    if "cards" not in data and "questions" not in data:
        raise SpecErrors(
            [
                locator.error(
                    (),
                    "the file has neither `cards:` (a dashboard) nor `questions:` (models and questions)",
                    hint="add `cards:` to make it a dashboard, or `questions:` for a file of models",
                )
            ]
        )
    try:
        spec = document_kind(data).model_validate(data)
    except ValidationError as exc:
        # A value YAML could not read is reported once, not again as pydantic's "invalid string".
        found = [e for e in _pydantic_errors(exc, locator, data) if e.field not in composer.unreadable]
        raise SpecErrors(sorted(errors + found, key=lambda e: (e.line, e.column))) from exc
    loaded = LoadedFile(path, spec, locator)
    errors += _read_sql(loaded)
    errors += check_document(loaded)
    if errors:
        raise SpecErrors(sorted(errors, key=lambda e: (e.line, e.column)))
    return loaded


def yaml_problem(exc: yaml.YAMLError, text: str) -> tuple[int, int, str, str | None]:
    """(line, column, problem, hint) of a YAML syntax error, in words a person reads, with the line shown.

    PyYAML says what its parser expected ("expected <block end>, but found '<block mapping start>'");
    the usual cause, a line indented unlike its neighbours, is named instead.
    """
    if not isinstance(exc, yaml.MarkedYAMLError) or (exc.problem_mark or exc.context_mark) is None:
        return 1, 0, f"not valid YAML: {exc}", None
    mark = exc.problem_mark or exc.context_mark
    assert mark is not None
    lines = text.splitlines()
    number, column = mark.line + 1, mark.column + 1
    said, context = exc.problem or "", exc.context or ""
    start = exc.context_mark

    def shown(at: int) -> str:
        return f"`{lines[at - 1].strip()}`" if 0 < at <= len(lines) else "the end of the file"

    indent_hint = "indent each key like the keys beside it (spaces, the same number per level)"
    if said.startswith("expected <block end>"):
        return (
            number,
            column,
            f"not valid YAML: the indentation is off at line {number}: {shown(number)}",
            indent_hint,
        )
    if said.startswith("mapping values are not allowed"):
        before = next((i for i in range(number - 1, 0, -1) if lines[i - 1].strip()), 0)
        deeper = before > 0 and _indent(lines[number - 1]) > _indent(lines[before - 1])
        if deeper and not lines[before - 1].rstrip().endswith(":"):
            problem = f"not valid YAML: line {number} is indented deeper than line {before}: {shown(number)}"
            return number, column, problem, indent_hint
        problem = f"not valid YAML: a `: ` inside a value at line {number}: {shown(number)}"
        return number, column, problem, 'put the value in quotes, e.g. name: "Sales: EU"'
    if "'\\t'" in said:
        return (
            number,
            column,
            f"not valid YAML: a tab at line {number}: {shown(number)}",
            "indent with spaces",
        )
    if said.startswith("could not find expected ':'") and start is not None:
        at = start.line + 1
        return (
            at,
            1,
            f"not valid YAML: line {at} is not `key: value`: {shown(at)}",
            "add the `:` after the key",
        )
    if "quoted scalar" in context and start is not None:
        at = start.line + 1
        return at, start.column + 1, f"not valid YAML: the quote opened at line {at} is never closed", None
    return number, column, f"not valid YAML: {said or exc} at line {number}: {shown(number)}", None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _compose(text: str) -> yaml.Node | None:
    """The YAML's node tree; raises yaml.YAMLError, worded as PyYAML words it."""
    try:
        return yaml.compose(text, Loader=_PARSER)
    except yaml.YAMLError:
        if _PARSER is yaml.SafeLoader:
            raise
        # The same line and column, but libyaml's words are terser ("found undefined alias" without its
        # name, "found character that cannot start any token" without naming the tab): read it again.
        return yaml.compose(text, Loader=yaml.SafeLoader)


def dashboard_files(paths: Iterable[Path]) -> list[Path]:
    """The YAML files named, directories expanded to their `*.yaml`/`*.yml` (sorted)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        else:
            files.append(path)
    return files


def load_paths(paths: Iterable[Path], environ: Mapping[str, str] | None = None) -> list[LoadedFile]:
    """Every file under `paths`, and the files beside them that their questions are built on.

    A dashboard given on its own (`plan dashboards/2-risk.yaml`) is built on models kept in another file
    of its directory: that file is read too, marked as a dependency. Raises SpecErrors with the problems
    of all files at once.
    """
    paths = list(paths)
    files = dashboard_files(paths)
    if not files:
        raise SpecErrors([SpecError(Path("."), 0, "(paths)", "no dashboard files (*.yaml) found")])
    loaded: list[LoadedFile] = []
    errors: list[SpecError] = []
    for path in files:
        if not path.exists():
            errors.append(SpecError(path, 0, "(file)", "no such file"))
            continue
        try:
            loaded.append(_load_one(path, environ))
        except SpecErrors as exc:
            errors += exc.errors
    if not errors:
        loaded += _dependencies(loaded, files, environ)
    seen: dict[str, LoadedFile] = {}
    for item in loaded:
        first = seen.setdefault(item.spec.key, item)
        if first is not item:
            errors.append(
                item.locator.error(
                    ("key",),
                    f"file key `{item.spec.key}` is also used by {first.path}",
                    hint="each file needs its own key",
                )
            )
    if errors:
        raise SpecErrors(errors)
    _compile(loaded)
    return loaded


def _dependencies(
    loaded: list[LoadedFile], given: list[Path], environ: Mapping[str, str] | None
) -> list[LoadedFile]:
    """Files beside the given ones that define models or questions the given ones are built on."""
    known = {f.spec.key for f in loaded}
    card_keys = {q.key for f in loaded for q in f.spec.all_questions()}
    wanted = {k for f in loaded for k in f.source_keys()}
    missing = {k for k in wanted if (k.split("/", 1)[0] not in known) if "/" in k} | {
        k for k in wanted if "/" not in k and k not in card_keys
    }
    if not missing:
        return []
    found: list[LoadedFile] = []
    seen = {p.resolve() for p in given}
    for directory in dict.fromkeys(p.parent for p in given):
        for path in dashboard_files([directory]):
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            try:
                extra = _load_one(path, environ)
            except SpecErrors:
                continue  # not needed unless it defines a missing key; then compiling names the gap
            keys = {extra.spec.key} | {f"{extra.spec.key}/{q.key}" for q in extra.spec.all_questions()}
            bare = {q.key for q in extra.spec.all_questions()}
            if any(k in keys or k.split("/", 1)[0] == extra.spec.key or k in bare for k in missing):
                extra.dependency = True
                found.append(extra)
    if found:
        found += _dependencies([*loaded, *found], given, environ)
    return found


def _read_sql(loaded: LoadedFile) -> list[SpecError]:
    errors: list[SpecError] = []
    for where, question in loaded.spec.located_questions():
        if question.sql is not None:
            loaded.sql[question.key] = question.sql
            continue
        if question.sql_file is None:
            continue
        target = (loaded.path.parent / question.sql_file).resolve()
        text, unreadable = _read_text(target)
        if text is None:
            errors.append(
                loaded.locator.error(
                    (*where, "sql_file"),
                    f"{unreadable}: {target}",
                    hint="sql_file is relative to the YAML file",
                )
            )
        else:
            loaded.sql[question.key] = text
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
