"""The shipped files (SQL, seeds, demo dashboards, compose file) are read through the package, never by a
path relative to the checkout, so a wheel installed anywhere reads its own copies (see test_install.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner import resources
from provisioner.errors import EnvironmentProblem

REPO = Path(__file__).resolve().parent.parent
PROVISIONER = REPO / "provisioner"


def test_the_package_reaches_the_top_level_files_through_its_data_links() -> None:
    for name in resources.SHIPPED:
        linked = PROVISIONER / "data" / name
        assert linked.is_symlink() and linked.resolve() == (REPO / name).resolve()
        assert resources.shipped_path(name).resolve() == (REPO / name).resolve()
    for module in ("db/schema.py", "db/seed_files.py", "runtime/compose.py", "resources.py"):
        assert "parents[" not in (PROVISIONER / module).read_text(), module


def test_a_shipped_file_missing_from_the_install_says_how_to_reinstall(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(resources, "shipped_path", lambda name: REPO / "no-such-folder" / name)
    with pytest.raises(EnvironmentProblem, match="missing from the installed package") as caught:
        resources.demo_dashboards_dir()
    assert "pipx install" in (caught.value.hint or "")
