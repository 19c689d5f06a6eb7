"""Test helpers for credentials.json: sections written and read as plain dicts, through the typed model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from provisioner.state import StateDir


def store_credentials(home: Path, **sections: dict[str, Any] | None) -> None:
    """Store each section (None removes it); the model validates each dict as the tool's own code would."""
    with StateDir(home).edit_credentials() as credentials:
        for name, value in sections.items():
            setattr(credentials, name, value)


def stored_credentials(home: Path) -> dict[str, Any]:
    """Every stored section as the JSON the file holds, secrets in clear."""
    return StateDir(home).credentials().model_dump(mode="json", exclude_none=True)


def stored_section(home: Path, name: str) -> dict[str, Any] | None:
    """One stored section as its JSON, or None."""
    section = stored_credentials(home).get(name)
    return section if isinstance(section, dict) else None
