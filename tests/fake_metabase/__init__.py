"""A fake Metabase for tests: an HTTP server faithful to the real API."""

from tests.fake_metabase.server import FakeMetabase, RecordedRequest

__all__ = ["FakeMetabase", "RecordedRequest"]
