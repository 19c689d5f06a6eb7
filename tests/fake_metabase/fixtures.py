"""pytest fixtures that start the fake Metabase."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fake_metabase.server import FakeMetabase


@pytest.fixture
def fake_metabase() -> Iterator[FakeMetabase]:
    """A started, brand-new fake Metabase (not set up yet) on 127.0.0.1; stopped after the test."""
    with FakeMetabase() as fake:
        yield fake
