"""The example GitHub Actions workflow: it runs commands that exist, reads exit 2 as changes pending,
and finds its earlier comment by the marker the Markdown plan starts with."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from provisioner.cli.plan_markdown import MARKER

WORKFLOW = Path(__file__).resolve().parent.parent / "docs" / "examples" / "dashboards-ci.yml"


def _steps(job: str) -> list[dict]:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"][job]["steps"]


def test_pull_requests_are_validated_then_planned_as_a_comment() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert set(workflow[True]) == {"pull_request", "push"}  # YAML 1.1 reads the key `on` as True
    runs = [step.get("run", "") for step in _steps("plan")]
    assert any(run.strip() == "provision dashboards validate" for run in runs)
    plan = next(run for run in runs if "provision dashboards plan" in run)
    assert "--format markdown" in plan and "-ne 2" in plan  # exit 2 is changes pending, not a failure
    script = next(
        step["with"]["script"] for step in _steps("plan") if "with" in step and "script" in step["with"]
    )
    assert f"'{MARKER}'" in script and "updateComment" in script
    # Validation needs no secret (pull requests from forks have none); the plan does.
    validate = next(
        step for step in _steps("plan") if step.get("run", "").strip() == "provision dashboards validate"
    )
    assert "if" not in validate


def test_a_merge_to_main_applies() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow[True]["push"] == {"branches": ["main"]}
    assert workflow["jobs"]["apply"]["if"] == "github.event_name == 'push'"
    assert [step.get("run") for step in _steps("apply")][-1] == "provision dashboards apply"


def test_the_workflow_names_the_target_and_its_secret_like_the_starter_project_file() -> None:
    from provisioner.workspace import STARTER

    text = WORKFLOW.read_text()
    assert re.search(r"PROVISION_TARGET: prod\b", text)
    assert 'api_key_env = "METABASE_PROD_API_KEY"' in STARTER
    assert "METABASE_PROD_API_KEY: ${{ secrets.METABASE_PROD_API_KEY }}" in text
