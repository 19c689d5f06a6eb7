"""Cards (questions): not served yet; routes arrive in the next commit."""

from __future__ import annotations

ROUTES: list = []
