"""How the core reports progress: a protocol, so the core never prints.

The CLI passes an implementation that writes to stderr; tests pass `RecordingProgress`.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Receives human-readable progress lines from the core."""

    def step(self, message: str) -> None:
        """A new step starts (e.g. "Seeding database")."""

    def info(self, message: str) -> None:
        """Detail within the current step (from several threads at once: apply's parallel writes)."""

    def warn(self, message: str) -> None:
        """Something the user should know but that does not stop the run."""


class NullProgress:
    """Discards progress."""

    def step(self, message: str) -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass


class RecordingProgress:
    """Keeps every line, for tests: `lines` holds (kind, message) pairs."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def step(self, message: str) -> None:
        self.lines.append(("step", message))

    def info(self, message: str) -> None:
        self.lines.append(("info", message))

    def warn(self, message: str) -> None:
        self.lines.append(("warn", message))

    @property
    def text(self) -> str:
        return "\n".join(m for _, m in self.lines)
