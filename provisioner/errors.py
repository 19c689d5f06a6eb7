"""The one error hierarchy: every failure a user can act on, with a hint and an exit code.

Adapters translate foreign errors where they occur (`raise ... from exc`); only the root CLI
group renders them, once. This module imports nothing from the package.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar


class ProvisionError(Exception):
    """A failure we can explain; the CLI renders it once."""

    exit_code: ClassVar[int] = 1
    kind: ClassVar[str] = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict[str, object]:
        """The error as JSON for `--json` output."""
        out: dict[str, object] = {"error": self.kind, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        return out


class UsageProblem(ProvisionError):
    """The command line itself is wrong: an unknown option, a flag's value of the wrong type."""

    # EX_USAGE of sysexits.h; not click's 2, which `dashboards plan` uses for "changes pending": a CI
    # script must never read a typo as pending changes.
    exit_code = 64
    kind = "usage"


class ConfigError(ProvisionError):
    """A setting or flag is invalid; fix the value named."""

    exit_code = 3
    kind = "config"


class SpecError(ProvisionError):
    """A dashboard file is invalid; fix the file and line named."""

    exit_code = 3
    kind = "spec"

    def __init__(
        self,
        path: Path | str,
        line: int,
        field: str,
        problem: str,
        *,
        column: int = 0,
        hint: str | None = None,
    ) -> None:
        where = f"{path}:{line}" + (f":{column}" if column else "")
        super().__init__(f"{where}: {field}: {problem}", hint=hint)
        self.path, self.line, self.column, self.field, self.problem = (
            Path(path),
            line,
            column,
            field,
            problem,
        )

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        out.update(
            path=str(self.path),
            line=self.line,
            column=self.column,
            field=self.field,
            problem=self.problem,
        )
        return out


class SpecErrors(ProvisionError):
    """Several spec problems found in one run; all of them are reported."""

    exit_code = 3
    kind = "spec"

    def __init__(self, errors: list[SpecError]) -> None:
        if len(errors) == 1:  # one problem is one line: `error: file:line:col: field: problem`
            message, hint = errors[0].message, "fix it, then run `provision dashboards validate` again"
        else:
            lines = "\n".join(e.message for e in errors)
            message = f"{len(errors)} problems in dashboard files:\n{lines}"
            hint = "fix each file:line above, then run `provision dashboards validate` again"
        super().__init__(message, hint=hint)
        self.errors = errors

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        out["errors"] = [e.to_dict() for e in self.errors]
        return out


class MetabaseError(ProvisionError):
    """Metabase rejected a call or answered something we cannot use."""

    exit_code = 4
    kind = "metabase"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        status: int | None = None,
        method: str | None = None,
        path: str | None = None,
        errors: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status, self.method, self.path = status, method, path
        self.errors = errors or {}

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        out.update(status=self.status, method=self.method, path=self.path)
        if self.errors:
            out["errors"] = self.errors
        return out


class MetabaseUnreachable(MetabaseError):
    """Nothing answered at the Metabase URL, or it is not a Metabase."""


class MetabaseRefused(MetabaseUnreachable):
    """Nothing listens at the Metabase URL (connection refused), or its host name does not resolve."""


class MetabaseAuthError(MetabaseError):
    """Metabase refused our credentials (wrong password, revoked key, throttled)."""


class MetabaseNotFound(MetabaseError):
    """Metabase answered 404 for an object or endpoint."""


class MetabaseVersionError(MetabaseError):
    """The Metabase version is outside the supported range."""


class StalePlan(ProvisionError):
    """A saved plan no longer matches Metabase or its inputs; review a new one, or apply with --force."""

    exit_code = 7
    kind = "stale-plan"


class ApplyBusy(ProvisionError):
    """Another apply holds this Metabase's apply lock; wait for it, then run again."""

    exit_code = 6
    kind = "busy"


class ProbeFailed(MetabaseError):
    """`provision metabase check` saw this Metabase change, refuse or fail to run what the tool writes."""

    kind = "probe"

    def __init__(self, message: str, *, hint: str | None = None, report: dict[str, object]) -> None:
        super().__init__(message, hint=hint)
        self.report = report  # every check with what was expected and what came back (no secrets)

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        out.update({k: v for k, v in self.report.items() if k not in out})
        return out


class DatabaseError(ProvisionError):
    """PostgreSQL refused a connection or a statement."""

    exit_code = 5
    kind = "database"


class OwnershipError(DatabaseError):
    """Objects with our names exist but the tool did not create them."""


class EnvironmentProblem(ProvisionError):
    """The machine lacks something: Docker, Java, a free port, disk space."""

    exit_code = 6
    kind = "environment"


class Interrupted(ProvisionError):
    """The user pressed Ctrl-C; the next run resumes."""

    exit_code = 130
    kind = "interrupted"
