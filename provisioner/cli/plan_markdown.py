"""`dashboards plan --format markdown`: the plan as a pull-request comment (GitHub-flavoured Markdown)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from provisioner.plan import Action, Plan

# The first line of every comment: a workflow finds its earlier comment by it and edits that one.
MARKER = "<!-- metabase-provisioner plan -->"
_VERBS = {"create": "create", "update": "update", "archive": "archive"}


def plan_markdown(plan: Plan, *, metabase_url: str, target: str | None = None) -> str:
    """The plan as Markdown: a summary line, a table of what is created, updated (with the fields that
    differ) and archived, and the unchanged objects folded away."""
    counts = plan.summary()
    where = f"`{target}` ({metabase_url})" if target else metabase_url
    lines = [MARKER, f"### Metabase plan for {where}", ""]
    if not plan.has_changes:
        lines.append(f"No changes: Metabase matches the YAML ({counts['unchanged']} objects).")
        return "\n".join(lines)
    lines += [
        f"**{counts['create']} to create, {counts['update']} to update, {counts['archive']} to archive**, "
        f"{counts['unchanged']} unchanged.",
        "",
        "| action | kind | name | key | what changes |",
        "|---|---|---|---|---|",
    ]
    for action in plan.actions:
        if action.action != "unchanged":
            lines.append(_row(action))
    unchanged = [a for a in plan.actions if a.action == "unchanged"]
    if unchanged:
        lines += ["", f"<details><summary>{len(unchanged)} unchanged</summary>", ""]
        lines += [f"- {a.kind} {_cell(a.name)} (`{_code(a.key)}`)" for a in unchanged]
        lines += ["", "</details>"]
    return "\n".join(lines)


def _row(action: Action) -> str:
    changes = ", ".join(f"`{_code(change)}`" for change in action.changes)
    if action.action == "create":
        changes = "new"
    elif action.action == "archive":
        changes = "gone from the YAML (archived, not deleted)"
    cells = [_VERBS[action.action], action.kind, _cell(action.name), f"`{_code(action.key)}`", changes]
    return "| " + " | ".join(cells) + " |"


def _cell(text: str) -> str:
    """Text safe inside a table cell: no column break, no HTML, one line."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace("\n", " ")


def _code(text: str) -> str:
    """Text safe inside a code span of a table cell."""
    return text.replace("`", "'").replace("|", "\\|").replace("\n", " ")
