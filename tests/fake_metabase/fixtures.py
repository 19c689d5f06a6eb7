"""pytest fixtures that start the fake Metabase, log in to it, and give it a small real warehouse."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import requests

from tests.fake_metabase.server import FakeMetabase

SMALL_WAREHOUSE_SQL = """
create table customers (id serial primary key, name text not null, email text,
                        latitude double precision, longitude double precision);
comment on table customers is 'People who buy';
create table orders (id serial primary key, customer_id int references customers(id),
                     status text, amount numeric(10, 2), created_at timestamptz default now(),
                     ordered_on date);
create view order_totals as select customer_id, sum(amount) as total from orders group by 1;
insert into customers (name, email, latitude, longitude)
    values ('Ann', 'ann@example.com', 52.5, 13.4), ('Bob', 'bob@example.com', 48.1, 11.6);
insert into orders (customer_id, status, amount, ordered_on) values
    (1, 'paid', 10.50, '2024-01-15'), (1, 'open', 5.00, '2024-02-20'),
    (2, 'paid', 7.25, '2024-03-05'), (2, 'void', 1.00, '2023-12-31');
"""


@pytest.fixture
def fake_metabase() -> Iterator[FakeMetabase]:
    """A started, brand-new fake Metabase (not set up yet) on 127.0.0.1; stopped after the test."""
    with FakeMetabase() as fake:
        yield fake


def admin_http(fake: FakeMetabase) -> requests.Session:
    """Return a requests session logged in as the fake's admin (setup completed if needed)."""
    session = requests.Session()
    session.headers["X-Metabase-Session"] = fake.admin_session()
    return session


@pytest.fixture
def fake_admin(fake_metabase: FakeMetabase) -> requests.Session:
    """A requests session logged in as admin on `fake_metabase`."""
    return admin_http(fake_metabase)


@pytest.fixture
def fake_warehouse_dsn(pg_dsn: str) -> str:
    """A fresh database holding customers, orders (with keys) and the view order_totals."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(SMALL_WAREHOUSE_SQL)
    return pg_dsn


@pytest.fixture(scope="module")
def shared_fake_warehouse_dsn(pg_server: Any) -> str:
    """The same small warehouse, shared by a module's tests: only for tests that never change it."""
    dsn = pg_server.create_database("fakewh")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SMALL_WAREHOUSE_SQL)
    return dsn
