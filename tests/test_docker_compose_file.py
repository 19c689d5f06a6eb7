"""docker-compose.yml: the services, health checks, loopback-only ports, pinned images, no inline secret."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from provisioner.runtime.compose import ComposeEnv, compose_file

SERVICES = {"warehouse", "metabase-db", "metabase"}
_SECRET_KEY = re.compile(r"PASS|SECRET|KEY|TOKEN", re.I)
_REFERENCE = re.compile(r"^\$\{[A-Z_]+(:[?-][^}]*)?\}$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(compose_file().read_text())


def test_has_warehouse_metabase_and_its_postgres_app_db(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == SERVICES
    mb_env = services["metabase"]["environment"]
    assert mb_env["MB_DB_TYPE"] == "postgres"
    assert mb_env["MB_DB_HOST"] == "metabase-db"
    assert services["metabase-db"]["image"].startswith("postgres:")


def test_every_service_has_a_health_check_and_restart_policy(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        test = " ".join(service["healthcheck"]["test"])
        expected = "/api/health" if name == "metabase" else "pg_isready"
        assert expected in test, name
        assert service["restart"] == "unless-stopped", name


def test_postgres_health_checks_go_over_tcp(compose: dict[str, Any]) -> None:
    # The image's first-start temporary server listens on the Unix socket only; a socket check
    # would report it ready moments before it restarts and refuses the seed's connection.
    for name in ("warehouse", "metabase-db"):
        command = compose["services"][name]["healthcheck"]["test"][1]
        assert command.startswith("pg_isready -h 127.0.0.1 "), name


def test_metabase_waits_for_healthy_databases(compose: dict[str, Any]) -> None:
    depends = compose["services"]["metabase"]["depends_on"]
    assert depends == {
        "metabase-db": {"condition": "service_healthy"},
        "warehouse": {"condition": "service_healthy"},
    }


def test_ports_are_bound_to_loopback_only(compose: dict[str, Any]) -> None:
    published = [p for s in compose["services"].values() for p in s.get("ports", [])]
    assert published, "warehouse and metabase must be reachable from this machine"
    assert all(str(p).startswith("127.0.0.1:") for p in published)
    assert "ports" not in compose["services"]["metabase-db"]


def test_ports_come_from_the_env_file(compose: dict[str, Any]) -> None:
    ports = {name: s.get("ports", []) for name, s in compose["services"].items()}
    assert ports["metabase"] == ["127.0.0.1:${METABASE_PORT:-3000}:3000"]
    assert ports["warehouse"] == ["127.0.0.1:${WAREHOUSE_PORT:-5432}:5432"]


def test_images_are_pinned_to_exact_versions(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        # Metabase's tag is overridable for the e2e matrix but defaults to a pinned version.
        resolved = re.sub(r"\$\{[A-Z_]+:-([^}]+)\}", r"\1", image)
        _repo, _, tag = resolved.partition(":")
        assert tag and tag != "latest" and re.search(r"\d+\.\d+", tag), f"{name}: {image}"
    assert compose["services"]["metabase"]["image"] == "metabase/metabase:${METABASE_VERSION:-v0.65.x}"


def test_no_secret_is_written_inline(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key, value in service.get("environment", {}).items():
            if _SECRET_KEY.search(key):
                assert _REFERENCE.match(str(value)), f"{name}.{key} must come from the env file"
    assert compose["services"]["metabase"]["environment"]["MB_ENCRYPTION_SECRET_KEY"].startswith(
        "${MB_ENCRYPTION_SECRET_KEY:?"
    )


def test_every_variable_the_file_needs_is_generated(compose: dict[str, Any]) -> None:
    text = compose_file().read_text()
    required = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    generated = {field.upper() for field in ComposeEnv.model_fields}
    assert required and required <= generated


def test_named_volumes_and_jvm_memory_cap(compose: dict[str, Any]) -> None:
    assert set(compose["volumes"]) == {"warehouse-data", "metabase-app-db"}
    for name in ("warehouse", "metabase-db"):
        volume = compose["services"][name]["volumes"][0]
        assert volume.split(":")[0] in compose["volumes"]
    metabase = compose["services"]["metabase"]
    assert metabase["environment"]["JAVA_OPTS"].startswith("-Xmx")
    assert metabase["mem_limit"]
