"""Output: progress on stderr, results on stdout as text or one JSON document."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from provisioner.errors import ProvisionError


class StderrProgress:
    """Progress lines on stderr; the core reports through `provisioner.progress.Progress`."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream

    @property
    def stream(self) -> IO[str]:
        return self._stream or sys.stderr

    def _write(self, prefix: str, message: str) -> None:
        self.stream.write(f"{prefix}{message}\n")
        self.stream.flush()

    def step(self, message: str) -> None:
        self._write("→ ", message)

    def info(self, message: str) -> None:
        self._write("  ", message)

    def warn(self, message: str) -> None:
        self._write("! warning: ", message)


@dataclass
class Output:
    """Renders results and errors; `json_mode` makes stdout one JSON document."""

    json_mode: bool = False
    progress: StderrProgress = field(default_factory=StderrProgress)

    def result(self, data: Any, text: str | Callable[[], str] | None = None) -> None:
        """Print a command's result: `data` as JSON, or `text` for people."""
        if self.json_mode:
            sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        else:
            rendered = text() if callable(text) else text
            if rendered:
                sys.stdout.write(rendered.rstrip("\n") + "\n")
        sys.stdout.flush()

    def error(self, error: ProvisionError) -> None:
        """The one place an error becomes text: `error:` and `hint:` on stderr."""
        sys.stderr.write(f"error: {error.message}\n")
        if error.hint:
            sys.stderr.write(f"hint: {error.hint}\n")
        sys.stderr.flush()
        if self.json_mode:
            payload = {"ok": False, **error.to_dict(), "exit_code": error.exit_code}
            sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
            sys.stdout.flush()
