"""A fake Metabase for tests: an HTTP server faithful to the real API."""
