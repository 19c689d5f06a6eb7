"""A fault at every write position of `provision demo`, of both kinds, and then a re-run converges.

The demo is the real one with its dashboards cut to the eight models and the Locations dashboard: every
step and every kind of write of a full demo (setup, API key, tracking setting, database,
collections, models, query-builder questions, a text card, the dashboard and its filters, the apply lock),
in about a third of the positions; the full demo repeats the same writes for four more dashboards.
`SWEEP_FULL_DEMO=1 pytest -n 3 tests/test_fault_sweep.py` sweeps the whole demo: 57 writes, about two
minutes on two cores, which every `make test` cannot afford.

The reference is a clean demo against a brand-new fake Metabase, one request at a time
(`--concurrency 1`), so that "the n-th write" names the same request in every run; faults inside a wave
of parallel writes are swept in tests/test_parallel.py, and every position of `dashboards apply` in
tests/test_apply_flow.py. Two kinds of fault, at every position that writes (the card runs are POSTs that
read, and are left out):

- "500": Metabase answers a 500 and applies nothing;
- "drop-after-commit": Metabase applies the write, then the connection is lost before its answer, as when
  a proxy or the network drops it. The tool must not send a lost POST again blindly.

After the faulty run (which may fail with the tool's error, never with anything else), a second run must
succeed, leave exactly the reference content (no duplicate database, key, collection, question or
dashboard), and a third run must write nothing.

The positions are split into chunks so that pytest-xdist spreads them over its workers.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioner.config import Settings
from provisioner.demo import DemoResult, run_demo
from provisioner.errors import ProvisionError
from provisioner.progress import RecordingProgress
from provisioner.runtime.external import ExternalRuntime
from provisioner.seeding import seed
from tests.conftest import PgServer
from tests.fake_metabase.server import MUTATING_METHODS, FakeMetabase, RecordedRequest, new_state

pytestmark = pytest.mark.slow

KINDS = ("500", "drop-after-commit")
CHUNKS = 6
REPO = Path(__file__).resolve().parent.parent
DASHBOARDS = ("0-models.yaml", "5-locations.yaml")
if os.environ.get("SWEEP_FULL_DEMO") == "1":
    DASHBOARDS = tuple(sorted(p.name for p in (REPO / "dashboards").glob("*.yaml")))
_QUERY = re.compile(r"POST /api/card/:id/query|POST /api/dataset")  # on labels
_ID = re.compile(r"/\d+")
_PER_RUN = re.compile(r"[0-9a-f]{8}(-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})?")  # key and user ids


def _short_sleep(seconds: float) -> None:
    time.sleep(min(seconds, 0.01))


def _label(request: RecordedRequest) -> str:
    return f"{request.method} {_ID.sub('/:id', request.path)}"


@dataclass(frozen=True)
class Reference:
    """What a clean demo writes, in order, and what it leaves in Metabase."""

    dsn: str
    dashboards: Path
    mutations: list[str]  # every POST/PUT/DELETE the fake counted, in order (card runs included)
    content: Counter[str]

    def write_positions(self) -> list[int]:
        """The 1-based positions (in the fake's count) of the requests that write."""
        return [n for n, label in enumerate(self.mutations, 1) if not _QUERY.fullmatch(label)]


def _content(fake: FakeMetabase) -> Counter[str]:
    """What is live in Metabase, by names: collections, questions and models, dashboards and their cards,
    databases, users, API keys. A duplicate shows as a count of 2."""
    state = fake.state
    collections = {c["id"]: c["name"] for c in fake.collections()}
    found: Counter[str] = Counter()
    for c in fake.collections():
        if not c.get("archived") and c.get("personal_owner_id") is None and c.get("type") != "trash":
            found[f"collection {c['name']}"] += 1
    cards = {c["id"]: c for c in fake.cards()}
    for card in cards.values():
        if not card.get("archived"):
            where = collections.get(card.get("collection_id"), "root")
            inside = "inside a dashboard" if card.get("dashboard_id") is not None else "in the collection"
            found[f"{card['type']} {card['name']} in {where}, {inside}"] += 1
    for dashboard in fake.dashboards():
        if dashboard.get("archived"):
            continue
        dashcards = sorted(
            f"{cards[d['card_id']]['name'] if d.get('card_id') else 'text'}@{d['row']},{d['col']}"
            for d in dashboard["dashcards"]
        )
        found[f"dashboard {dashboard['name']}: {', '.join(dashcards)}"] += 1
    for database in fake.databases():
        if not database.get("is_sample"):
            found[f"database {database['name']}"] += 1
    for user in state.users.values():
        found[_PER_RUN.sub("…", f"user {user['email']}")] += 1
    for key in state.api_keys.values():
        found[_PER_RUN.sub("…", f"api key {key['name']}")] += 1
    return found


def _settings(fake: FakeMetabase, dsn: str, home: Path) -> Settings:
    return Settings.load({}, home=home, metabase_url=fake.url, database_url=dsn, concurrency=1)


def _demo(settings: Settings, dashboards: Path) -> DemoResult:
    return run_demo(
        settings,
        runtime=ExternalRuntime(settings),
        dashboards_dir=dashboards,
        progress=RecordingProgress(),
        sleep=_short_sleep,
    )


@pytest.fixture(scope="module")
def sweep_fake() -> Iterator[FakeMetabase]:
    with FakeMetabase(sync_polls=0) as fake:
        yield fake


@pytest.fixture(scope="module")
def reference(
    pg_server: PgServer, sweep_fake: FakeMetabase, tmp_path_factory: pytest.TempPathFactory
) -> Reference:
    """The module's database, seeded once, and what a clean demo on it writes."""
    dsn = pg_server.create_database("sweep")
    dashboards = tmp_path_factory.mktemp("sweep-dashboards")
    for name in DASHBOARDS:
        shutil.copy(REPO / "dashboards" / name, dashboards / name)
    home = tmp_path_factory.mktemp("sweep-reference")
    seed(_settings(sweep_fake, dsn, home), as_of=None, reset=False, force=False, port=None)
    sweep_fake.state = new_state()
    sweep_fake.clear_requests()
    first = _demo(_settings(sweep_fake, dsn, home), dashboards)
    assert first.failed_cards == []
    assert [s.name for s in first.steps if s.changed] == ["setup", "connect", "dashboards"]  # seeded
    mutations = [_label(r) for r in sweep_fake.requests if r.method in MUTATING_METHODS]
    return Reference(dsn, dashboards, mutations, _content(sweep_fake))


def test_the_reference_demo_writes_every_kind_of_object(reference: Reference) -> None:
    labels = {reference.mutations[n - 1] for n in reference.write_positions()}
    assert {
        "POST /api/setup",
        "POST /api/database",
        "POST /api/collection",
        "POST /api/card",
        "POST /api/dashboard",
        "PUT /api/dashboard/:id",
    } <= labels
    assert len(reference.write_positions()) >= 20
    assert sum(1 for line, n in reference.content.items() if n > 1) == 0


@pytest.mark.parametrize("chunk", range(CHUNKS))
@pytest.mark.parametrize("kind", KINDS)
def test_a_fault_at_every_write_of_a_demo_then_a_rerun_converges(
    reference: Reference,
    sweep_fake: FakeMetabase,
    tmp_path: Path,
    kind: str,
    chunk: int,
) -> None:
    fake = sweep_fake
    for position in reference.write_positions()[chunk::CHUNKS]:
        where = f"{kind} at write {position} ({reference.mutations[position - 1]})"
        fake.state = new_state()
        fake.clear_requests()
        settings = _settings(fake, reference.dsn, tmp_path / f"home-{position}")
        fake.inject_fault(at_mutation=position, kind=kind)  # type: ignore[arg-type]
        with contextlib.suppress(ProvisionError):  # the tool's own error, one line; the next run resumes
            _demo(settings, reference.dashboards)
        faulted = [_label(r) for r in fake.requests if r.method in MUTATING_METHODS]
        assert len(faulted) >= position and faulted[position - 1] == reference.mutations[position - 1], where

        second = _demo(settings, reference.dashboards)
        assert second.failed_cards == [], where
        assert _content(fake) == reference.content, where

        fake.clear_requests()
        third = _demo(settings, reference.dashboards)
        assert third.changed is False, where
        assert [_label(r) for r in fake.mutating_requests()] == [], where
