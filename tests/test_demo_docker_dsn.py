"""Inside Docker, Metabase reaches the warehouse by its service name: the demo hands connect that DSN."""

from __future__ import annotations

from pathlib import Path

from psycopg.conninfo import conninfo_to_dict
from pydantic import SecretStr

from provisioner.config import Settings
from provisioner.demo import _metabase_dsn
from provisioner.runtime.base import Endpoints
from tests.credentials import store_credentials


def _settings(home: Path, **more: object) -> Settings:
    return Settings.load(
        {}, home=home, database_url="postgresql://owner:own-pw@127.0.0.1:15432/asset_finance", **more
    )


def _endpoints(host: str | None) -> Endpoints:
    return Endpoints(
        metabase_url="http://127.0.0.1:3000",
        warehouse_dsn=SecretStr("postgresql://owner:own-pw@127.0.0.1:15432/asset_finance"),
        metabase_warehouse_host=host,
        metabase_warehouse_port=5432 if host else None,
    )


def test_the_reader_dsn_points_at_the_compose_service(tmp_path: Path) -> None:
    store_credentials(
        tmp_path,
        reader={
            "user": "metabase_reader",
            "password": "r-pw",
            "host": "127.0.0.1",
            "port": 15432,
            "dbname": "asset_finance",
        },
    )
    dsn = _metabase_dsn(_settings(tmp_path), _endpoints("warehouse"))
    assert dsn is not None
    assert conninfo_to_dict(dsn) == {
        "user": "metabase_reader",
        "password": "r-pw",
        "host": "warehouse",
        "port": "5432",
        "dbname": "asset_finance",
    }


def test_outside_docker_connect_derives_the_dsn_itself(tmp_path: Path) -> None:
    assert _metabase_dsn(_settings(tmp_path), _endpoints(None)) is None


def test_an_explicit_metabase_database_url_wins(tmp_path: Path) -> None:
    given = "postgresql://ro:pw@db.internal:5432/asset_finance"
    assert _metabase_dsn(_settings(tmp_path, metabase_database_url=given), _endpoints("warehouse")) == given
