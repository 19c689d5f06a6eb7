"""`dashboards plan --format markdown`: the plan as a pull-request comment."""

from __future__ import annotations

from provisioner.cli.plan_markdown import MARKER, plan_markdown
from provisioner.plan import Action, Plan


def test_a_plan_without_changes_says_so_in_one_line() -> None:
    plan = Plan([Action("dashboard", "unchanged", "sales", "Sales", id=3)])
    assert plan_markdown(plan, metabase_url="https://mb.example.com", target="prod") == (
        f"{MARKER}\n### Metabase plan for `prod` (https://mb.example.com)\n\n"
        "No changes: Metabase matches the YAML (1 objects)."
    )


def test_created_updated_and_archived_objects_are_rows_with_the_fields_that_differ() -> None:
    plan = Plan(
        [
            Action("collection", "unchanged", "Demo", "Demo", id=1),
            Action("card", "create", "sales/new", "New card"),
            Action("card", "update", "sales/total", "Total", id=5, changes=["query.filter", "viz"]),
            Action("dashboard", "archive", "old", "Old <b>board</b>", id=9),
        ]
    )
    lines = plan_markdown(plan, metabase_url="http://localhost:3000").splitlines()
    assert lines[1] == "### Metabase plan for http://localhost:3000"
    assert lines[3] == "**1 to create, 1 to update, 1 to archive**, 1 unchanged."
    assert lines[5:7] == ["| action | kind | name | key | what changes |", "|---|---|---|---|---|"]
    assert lines[7:10] == [
        "| create | card | New card | `sales/new` | new |",
        "| update | card | Total | `sales/total` | `query.filter`, `viz` |",
        "| archive | dashboard | Old &lt;b>board&lt;/b> | `old` | gone from the YAML (archived, not deleted) "
        "|",
    ]
    assert lines[-4:] == ["", "- collection Demo (`Demo`)", "", "</details>"]
