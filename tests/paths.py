"""Paths of the test data kept in the repository."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent
# Real responses of a real Metabase, recorded by dbt-metabase (MIT, see the LICENSE beside them).
RECORDED = TESTS / "fixtures" / "metabase" / "recorded"
