"""The files the tool ships: the SQL, the seed data, the demo dashboards and the compose file.

They live at the top of the repository, where a reader finds them, and reach the package through
`provisioner/data/`, whose entries are links to them: an editable install reads the checkout's files
through the links, and a wheel carries copies of the same files (setuptools follows the links), read
here with `importlib.resources` from wherever the package is installed.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from provisioner.errors import EnvironmentProblem

# Each name is a link in provisioner/data/ and an entry of package-data in pyproject.toml.
SHIPPED = ("database", "seeds", "dashboards", "docker-compose.yml")


def shipped_path(name: str) -> Path:
    """The file-system path of the shipped file or folder `name` (one of SHIPPED); it may be missing."""
    return Path(str(files("provisioner").joinpath("data", name)))


def require_shipped(name: str) -> Path:
    """The path of the shipped file or folder `name`; EnvironmentProblem when the install lacks it."""
    path = shipped_path(name)
    if not path.exists():
        raise EnvironmentProblem(
            f"{name} is missing from the installed package ({path.parent})",
            hint="reinstall the tool: `pipx install --force .` from a checkout, or `make install`",
        )
    return path


def demo_dashboards_dir() -> Path:
    """The folder with the demo dashboards (YAML); EnvironmentProblem when the install lacks it."""
    return require_shipped("dashboards")
