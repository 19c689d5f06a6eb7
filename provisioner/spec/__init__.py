"""The dashboard YAML: models (names only, never ids), loading with file:line marks, checks across fields.

`load_paths` is the way in; the rest is imported from the submodules by what needs it.
"""

from provisioner.spec.document import LoadedFile, Locator, Mark, field_path
from provisioner.spec.loader import dashboard_files, load_file, load_paths
from provisioner.spec.models import DashboardSpec, json_schema

__all__ = [
    "DashboardSpec",
    "LoadedFile",
    "Locator",
    "Mark",
    "dashboard_files",
    "field_path",
    "json_schema",
    "load_file",
    "load_paths",
]
