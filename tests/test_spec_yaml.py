"""Dashboard files are parsed by libyaml (fast) yet read and reported exactly as PyYAML's own parser would:
the same values, the same line:column of every key and value, the same words for a syntax error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.errors import SpecErrors
from provisioner.spec import loader
from provisioner.spec.loader import load_file, load_paths

DEMO = Path(__file__).resolve().parent.parent / "dashboards"

TRICKY = """\
key: tricky  # a comment
name: "Ünïcödé — quoted"
collection: 'single ''quoted'''
database: Warehouse
description: |
  a literal
    block
filters:
  - {key: size, name: "yes", type: number, default: 0x1F}
cards:
  - &first
    key: a
    name: plain:no, still#plain
    sql: >-
      SELECT 1
      AS n WHERE 1 < {{size}}
    tags: {size: {type: number}}
    filters: {size: size}
  - text: "**bold** ${HOME_TOWN:-nowhere}"
  - key: b
    name: ~ text
    sql: SELECT 2 AS n
"""


def _marks(node: yaml.Node) -> list[tuple[str, int, int]]:
    out = [(type(node).__name__, node.start_mark.line, node.start_mark.column)]
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            out += _marks(key) + _marks(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            out += _marks(item)
    return out


def test_pyyaml_is_built_with_libyaml_so_the_fast_parser_is_used() -> None:
    assert loader._PARSER is yaml.CSafeLoader


@pytest.mark.parametrize("text", [TRICKY, *(p.read_text() for p in sorted(DEMO.glob("*.yaml")))])
def test_libyaml_composes_the_same_nodes_and_marks_as_pyyaml(text: str) -> None:
    fast, reference = yaml.compose(text, Loader=yaml.CSafeLoader), yaml.compose(text, Loader=yaml.SafeLoader)
    assert fast is not None and reference is not None
    assert _marks(fast) == _marks(reference)
    assert yaml.load(text, Loader=yaml.CSafeLoader) == yaml.safe_load(text)


def test_every_value_reads_as_the_safe_loader_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(TRICKY.replace("${HOME_TOWN:-nowhere}", "x"))
    data: Any = yaml.safe_load(path.read_text())
    spec = load_file(path, environ={}).spec
    assert spec.name == data["name"] and spec.collection == data["collection"]
    assert spec.description == data["description"]
    assert [c.name for c in spec.query_cards()] == ["plain:no, still#plain", "~ text"]
    assert spec.filters[0].default == data["filters"][0]["default"] == 31  # `0x1F`: YAML 1.1's int 31


@pytest.mark.parametrize(
    ("broken", "line", "column", "words"),
    [
        # PyYAML's words name the alias (libyaml's do not), and name the tab, which the message turns into
        # "a tab"; the line is shown.
        ("key: *nope\ncards: []\n", 1, 6, "found undefined alias 'nope' at line 1: `key: *nope`"),
        ("key: a\ncards:\n\t- x\n", 3, 1, "a tab at line 3: `- x`"),
        (
            "key: a\ncards: [1, 2\n",
            3,
            1,
            "expected ',' or ']', but got '<stream end>' at line 3: the end of the file",
        ),
    ],
)
def test_a_syntax_error_names_its_line_and_column_in_pyyamls_words(
    tmp_path: Path, broken: str, line: int, column: int, words: str
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(broken)
    with pytest.raises(SpecErrors) as caught:
        load_paths([path], environ={})
    [error] = caught.value.errors
    assert (error.line, error.column) == (line, column)
    assert error.problem == f"not valid YAML: {words}"
