"""Where the project's own files live: SQL, seed data, the demo dashboards, the compose file.

They sit at the top of the source tree (mandated layout), next to the `provisioner` package;
`make install` installs the package in editable mode, so they are found from any working
directory.
"""

from __future__ import annotations

from pathlib import Path

from provisioner.errors import EnvironmentProblem

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def project_path(name: str) -> Path:
    """The project's top-level file or folder `name`; EnvironmentProblem if it is missing."""
    path = PROJECT_ROOT / name
    if not path.exists():
        raise EnvironmentProblem(
            f"{name} is missing from {PROJECT_ROOT}",
            hint="install the tool from a checkout of the repository with `make install`",
        )
    return path


def demo_dashboards_dir() -> Path:
    """The folder with the suggested demo dashboards (YAML)."""
    return project_path("dashboards")
