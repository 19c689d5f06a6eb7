"""The JSON Schema for editors: generated from the models and kept in sync with the committed file."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from provisioner.cli.app import app
from provisioner.dashboards import schema

COMMITTED = Path(__file__).resolve().parent.parent / "dashboards" / "schema.json"


def test_committed_schema_matches_the_models() -> None:
    assert json.loads(COMMITTED.read_text()) == schema(), (
        "dashboards/schema.json is stale: run `provision dashboards schema > dashboards/schema.json`"
    )


def test_schema_command_prints_the_schema_and_with_json_the_one_result_shape() -> None:
    plain = CliRunner().invoke(app, ["dashboards", "schema"])
    assert plain.exit_code == 0 and json.loads(plain.stdout) == schema()
    wrapped = CliRunner().invoke(app, ["dashboards", "schema", "--json"])
    assert wrapped.exit_code == 0
    assert json.loads(wrapped.stdout) == {"ok": True, "exit_code": 0, "schema": schema()}


def test_schema_forbids_unknown_keys_and_requires_the_identity() -> None:
    generated = schema()
    kinds = {ref["$ref"].rsplit("/", 1)[-1] for ref in generated["anyOf"]}
    assert kinds == {"DashboardSpec", "QuestionsSpec"}
    defs = generated["$defs"]
    assert {"key", "name", "collection", "cards"} <= set(defs["DashboardSpec"]["required"])
    assert {"key", "collection", "questions"} <= set(defs["QuestionsSpec"]["required"])
    for model in ("DashboardSpec", "QuestionsSpec", "QueryCard", "Question", "Stage", "Join", "ColumnMeta"):
        assert defs[model]["additionalProperties"] is False, model
