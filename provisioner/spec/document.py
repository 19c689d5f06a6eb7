"""A loaded dashboard file: its model, where each part is written, and each card's SQL."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner.errors import SpecError
from provisioner.spec.models import DashboardSpec, QuestionsSpec


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


@dataclass
class LoadedFile:
    """A validated file: its model (a dashboard, or questions), where each part is written, each SQL."""

    path: Path
    spec: DashboardSpec | QuestionsSpec
    locator: Locator
    sql: dict[str, str] = field(default_factory=dict)
    # Read only because a file given is built on its models or questions (not named by the command).
    dependency: bool = False

    def source_keys(self) -> set[str]:
        """The keys of the models and questions this file's questions are built on, as written."""
        keys: set[str] = set()
        for _, question in self.spec.located_questions():
            for step in question.stages:
                for source in [step.source, *(j.source for j in step.joins)]:
                    if source is not None and not isinstance(source, str) and source.card_key:
                        keys.add(source.card_key)
            raw = question.mbql or {}
            for stage in raw.get("stages") or [] if isinstance(raw, dict) else []:
                if isinstance(stage, dict) and isinstance(stage.get("source-card"), str):
                    keys.add(stage["source-card"])
        return keys
