"""Output: progress on stderr, results on stdout as text or one JSON document."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
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

    def result(
        self,
        data: Mapping[str, Any],
        text: str | Callable[[], str] | None = None,
        *,
        ok: bool = True,
        exit_code: int = 0,
    ) -> None:
        """Print a command's result: `data` as JSON, or `text` for people.

        Every JSON result has one shape: `ok` (the command did what was asked), `exit_code` (the one the
        command exits with), then the command's own fields. An error has the same two keys (see `error`).
        """
        if self.json_mode:
            payload = {"ok": ok, "exit_code": exit_code}
            payload.update((key, value) for key, value in data.items() if key not in payload)
            sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
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
            payload = {"ok": False, "exit_code": error.exit_code, **error.to_dict()}
            sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
            sys.stdout.flush()
