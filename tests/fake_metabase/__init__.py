"""A fake Metabase for tests: an HTTP server faithful to the real (newest, v0.65-era) REST API.

Use the `fake_metabase` fixture (a fresh, not-set-up instance per test), or `FakeMetabase(...)` as a context
manager. It rejects what Metabase rejects (see ../shared/metabase-api.md §12) with Metabase's status codes,
bodies and content types; databases are tested, synced and queried on real PostgreSQL.

Test hooks on `FakeMetabase`:
- `.requests` / `.mutating_requests()` / `.clear_requests()`: every request as RecordedRequest(method, path,
  query, json, headers);
- `FakeMetabase(latency_ms=N)`: each request waits N ms before it is answered (outside the state lock, so
  requests overlap as over a network); `.max_in_flight` is the most requests it was answering at once;
- `.inject_fault(at_mutation=N, kind="500" | "drop" | "drop-after-commit")`: the N-th POST/PUT/DELETE from now
  fails unapplied, or (drop-after-commit) is applied, saved, and its answer lost;
- `.state` (users, api_keys, databases, collections, cards, dashboards as dicts) and `.cards()`,
  `.dashboards()`, `.collections()`, `.databases()` (API-shaped dicts);
- `.admin_session()` (completes setup directly, returns a session id), `.add_database(dsn)` (registered and
  synced), `.set_version(tag)`.
Fixtures in `tests.fake_metabase.fixtures`: `fake_metabase`, `fake_admin` (logged-in requests.Session),
`fake_warehouse_dsn` / `shared_fake_warehouse_dsn` (a small customers/orders warehouse).
Process mode: `python -m tests.fake_metabase --port P [--state-file F] [--version V] [--init-polls N]
[--latency-ms N]`.
"""

from tests.fake_metabase.server import FakeMetabase, RecordedRequest

__all__ = ["FakeMetabase", "RecordedRequest"]
