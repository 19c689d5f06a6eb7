"""Reads and writes in parallel: the same plan and the same outcome at any concurrency, requests that
really overlap (counted by the fake, never timed), writes that wait for what they are built on, and an
apply that fails part way through a wave of parallel writes still converging on re-run."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from provisioner import dashboards
from provisioner.cli.app import app
from provisioner.config import Settings
from provisioner.errors import MetabaseError
from provisioner.metabase.client import MetabaseClient
from provisioner.parallel import map_ordered, run_each
from tests.fake_metabase.fixtures import SMALL_WAREHOUSE_SQL
from tests.fake_metabase.server import FakeMetabase, new_state

# Two models, the second built on the first, and two dashboards of questions on the second: the writes
# of a first apply come in waves (orders, then paid, then the four questions together).
MODELS = """\
key: models
collection: Shop
database: Warehouse
questions:
  - key: orders
    type: model
    name: Orders
    query: {source: orders}
  - key: paid
    type: model
    name: Paid orders
    query: {source: {model: models/orders}, filter: 'status = "paid"'}
"""
BOARD = """\
key: {key}
name: {name}
collection: Shop/{name}
database: Warehouse
filters:
  - {{key: status, name: Status, type: category}}
cards:
  - key: count
    name: {name} paid orders
    display: scalar
    query: {{source: {{model: models/paid}}, summarize: [count]}}
    filters: {{status: status}}
    viz: {{y: count}}
  - key: total
    name: {name} paid total
    display: scalar
    query: {{source: {{model: models/paid}}, summarize: ["sum(amount)"]}}
    filters: {{status: status}}
    viz: {{y: sum}}
"""


# --- parallel.py -------------------------------------------------------------------------------


def test_results_come_in_the_order_given_whatever_order_the_calls_end_in() -> None:
    def slow_first(n: int) -> int:
        time.sleep(0.02 * (5 - n))
        return n * 10

    assert map_ordered(slow_first, [0, 1, 2, 3, 4], concurrency=5) == [0, 10, 20, 30, 40]


def test_the_error_raised_is_the_first_in_order_not_the_first_in_time() -> None:
    def fails(n: int) -> int:
        if n == 1:
            time.sleep(0.1)  # fails last in time, first in order
            raise ValueError("item 1")
        if n == 3:
            raise ValueError("item 3")
        return n

    with pytest.raises(ValueError, match="item 1"):
        map_ordered(fails, [0, 1, 2, 3], concurrency=4)


def test_after_a_failure_no_further_call_starts_and_every_started_call_has_ended() -> None:
    started: list[int] = []
    ended: list[int] = []
    lock = threading.Lock()

    def call(n: int) -> int:
        with lock:
            started.append(n)
        if n == 0:
            raise ValueError("first")
        time.sleep(0.05)
        with lock:
            ended.append(n)
        return n

    done = run_each(call, list(range(20)), concurrency=2)
    assert done[0] is not None and isinstance(done[0].error, ValueError)
    assert len(started) < 20 and sorted(ended) == sorted(set(started) - {0})
    assert all(d is None for d in done[len(started) :])


def test_one_at_a_time_runs_in_the_calling_thread_and_stops_at_the_first_failure() -> None:
    threads: list[str] = []

    def call(n: int) -> int:
        threads.append(threading.current_thread().name)
        if n == 2:
            raise ValueError("two")
        return n

    done = run_each(call, [0, 1, 2, 3], concurrency=1)
    assert [d.value if d else None for d in done] == [0, 1, None, None]
    assert done[2] is not None and str(done[2].error) == "two"
    assert set(threads) == {threading.current_thread().name} and len(threads) == 3


# --- against the fake --------------------------------------------------------------------------


class Shop:
    """A fake Metabase with the small warehouse registered, the YAML of two dashboards, and settings."""

    def __init__(self, fake: FakeMetabase, dsn: str, root: Path) -> None:
        self.fake, self.root = fake, root
        self.session = fake.admin_session()
        fake.add_database(dsn, name="Warehouse")
        self.directory = root / "dashboards"
        self.directory.mkdir(parents=True)
        (self.directory / "0-models.yaml").write_text(MODELS)
        for key, name in (("north", "North"), ("south", "South")):
            (self.directory / f"{key}.yaml").write_text(BOARD.format(key=key, name=name))
        self.settings = Settings.load({}, cwd=root, metabase_url=fake.url)

    def client(self, concurrency: int) -> MetabaseClient:
        client = MetabaseClient(self.fake.url, sleep=lambda _s: None, concurrency=concurrency)
        client.use_session(self.session)
        return client

    def apply(self, concurrency: int = 8) -> dashboards.ApplyResult:
        with self.client(concurrency) as client:
            return dashboards.apply(self.settings, [self.directory], client=client, environ={})

    def plan(self, concurrency: int, settings: Settings | None = None) -> dashboards.Plan:
        with self.client(concurrency) as client:
            return dashboards.plan(settings or self.settings, [self.directory], client=client, environ={})

    def live(self) -> tuple[int, int, int]:
        cards = [c for c in self.fake.cards() if not c.get("archived")]
        boards = [d for d in self.fake.dashboards() if not d.get("archived")]
        collections = [c for c in self.fake.collections() if c["name"] in ("Shop", "North", "South")]
        return len(cards), len(boards), len([c for c in collections if not c.get("archived")])


@pytest.fixture
def warehouse(pg_dsn: str) -> str:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(SMALL_WAREHOUSE_SQL)
    return pg_dsn


@pytest.fixture
def shop(warehouse: str, tmp_path: Path) -> Iterator[Shop]:
    with FakeMetabase() as fake:
        yield Shop(fake, warehouse, tmp_path)


def test_every_concurrency_plans_the_same_and_one_at_a_time_never_overlaps(
    shop: Shop, tmp_path: Path
) -> None:
    first = shop.plan(concurrency=1)
    assert first.to_dict() == shop.plan(concurrency=8).to_dict() and first.has_changes
    assert shop.apply().ok
    fresh_clone = Settings.load({}, cwd=tmp_path / "clone", metabase_url=shop.fake.url)
    for settings in (shop.settings, fresh_clone):  # remembered ids, then the full read
        shop.fake.latency_s = 0.05
        shop.fake.clear_requests()
        one = shop.plan(concurrency=1, settings=settings)
        assert shop.fake.max_in_flight == 1
        shop.fake.clear_requests()
        eight = shop.plan(concurrency=8, settings=settings)
        # The two dashboards (and the two models) are read together: their requests were answered at once.
        assert shop.fake.max_in_flight >= 2
        assert one.to_dict() == eight.to_dict() and one.requests == eight.requests
        assert not eight.has_changes


def test_the_collections_and_remembered_dashboards_are_read_while_the_metadata_is(shop: Shop) -> None:
    assert shop.apply().ok
    shop.fake.latency_s = 0.1
    for concurrency in (1, 8):
        shop.fake.clear_requests()
        assert not shop.plan(concurrency=concurrency).has_changes
        paths = [r.path for r in shop.fake.requests]
        metadata = next(i for i, p in enumerate(paths) if p.endswith("/metadata"))
        early = [i for i, p in enumerate(paths) if p == "/api/collection" or p.startswith("/api/dashboard/")]
        assert len(early) == 3
        # one at a time: metadata, then collections, then each dashboard; at 8: all four went out at once
        assert (max(early) < metadata) == (concurrency == 8), paths


def test_a_client_shared_by_many_threads_keeps_to_its_concurrency(fake_metabase: FakeMetabase) -> None:
    fake_metabase.latency_s = 0.05
    with MetabaseClient(fake_metabase.url, concurrency=3) as client:
        map_ordered(lambda _n: client.session_properties(), list(range(12)), concurrency=12)
    assert fake_metabase.max_in_flight == 3


def test_parallel_writes_wait_for_what_they_are_built_on(shop: Shop) -> None:
    shop.fake.latency_s = 0.05
    result = shop.apply(concurrency=8)
    assert result.ok, result.describe()
    posted = [r.json["name"] for r in shop.fake.requests if r.method == "POST" and r.path == "/api/card"]
    assert (
        posted.index("Orders")
        < posted.index("Paid orders")
        < min(posted.index(name) for name in posted if name not in ("Orders", "Paid orders"))
    )
    assert shop.fake.max_in_flight >= 2  # the questions of both dashboards were written together
    # outcomes in plan order, whatever order the writes ended in
    assert [o.key for o in result.outcomes] == [a.key for a in shop.plan(concurrency=1).actions]


# A clean apply writes: the lock, 3 collections (Shop, then North and South together), 2 dashboards
# together, Orders, Paid orders, the 4 questions together, 2 dashboard PUTs together, 6 card runs, the
# lock's DELETE. The positions below fall inside the waves of parallel writes.
@pytest.mark.parametrize(("kind", "positions"), [("500", (3, 5, 9, 11, 13, 16)), ("drop", (4, 10, 14))])
def test_a_fault_inside_a_wave_of_parallel_writes_then_a_rerun_converges_without_duplicates(
    warehouse: str, tmp_path: Path, kind: str, positions: tuple[int, ...]
) -> None:
    with FakeMetabase() as fake:
        for position in positions:
            fake.state = new_state()
            shop = Shop(fake, warehouse, tmp_path / f"{kind}-{position}")
            fake.inject_fault(at_mutation=position, kind=kind)  # type: ignore[arg-type]
            try:
                shop.apply()
            except MetabaseError:
                pass
            else:
                assert kind == "drop", position  # a dropped PUT is retried; a 500 always fails the apply
            again = shop.apply()
            assert again.ok, (position, again.describe())
            assert shop.live() == (6, 2, 3), position
            assert not shop.plan(concurrency=8).has_changes, position


@pytest.mark.parametrize("given", [["--concurrency", "0"], ["--concurrency", "-2"]])
def test_a_concurrency_below_one_is_refused_in_one_line(given: list[str]) -> None:
    result = CliRunner().invoke(app, ["dashboards", "plan", *given])
    assert result.exit_code == 3
    assert result.stderr.startswith("error: --concurrency (or PROVISION_CONCURRENCY): ")
    assert len(result.stderr.strip().splitlines()) == 2  # the error and its hint


def test_provision_concurrency_sets_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert Settings.load({}, cwd=tmp_path).concurrency == 8
    assert Settings.load({"PROVISION_CONCURRENCY": "3"}, cwd=tmp_path).concurrency == 3
    assert Settings.load({"PROVISION_CONCURRENCY": "3"}, cwd=tmp_path, concurrency=1).concurrency == 1
    monkeypatch.setenv("PROVISION_CONCURRENCY", "0")
    refused = CliRunner().invoke(app, ["dashboards", "apply"])
    assert refused.exit_code == 3 and "PROVISION_CONCURRENCY" in refused.stderr
