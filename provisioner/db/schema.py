"""The demo warehouse's schema: the object names, and applying database/*.sql in order."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.db.connection import first_line
from provisioner.errors import DatabaseError
from provisioner.resources import shipped_path

if TYPE_CHECKING:
    import psycopg

# The SQL lives at the repository root so a DBA can read it without opening Python; the package ships it.
DATABASE_DIR = shipped_path("database")
# Run after the seed files are loaded: computes snapshots and aggregates from the transactions.
DERIVED_SQL = DATABASE_DIR / "derived.sql"

META_TABLE = "provision_meta"

TABLES: tuple[str, ...] = (
    "oems",
    "asset_models",
    "customers",
    "accounts",
    "assets",
    "entity_identifiers",
    "payments",
    "repayment_schedule",
    "delinquency_history",
    "raw_telemetry",
    "metric_definitions",
    "metric_values",
    "indicator_definitions",
    "indicator_values",
    "event_definitions",
    "events",
    "asset_current_state",
    "account_current_state",
    "customer_current_state",
    "pois",
    "poi_visit_patterns",
    "metric_aggregates",
    "poi_visits",
    "collection_actions",
)

# Computed by DERIVED_SQL from the others, in its order.
DERIVED_TABLES: tuple[str, ...] = (
    "delinquency_history",
    "metric_aggregates",
    "poi_visit_patterns",
    "asset_current_state",
    "account_current_state",
    "customer_current_state",
)

VIEWS: tuple[str, ...] = (
    "v_portfolio_overview",
    "v_account_risk_dashboard",
    "v_asset_telemetry_dashboard",
    "v_open_events",
    "v_event_timeline",
    "v_indicator_trends",
    "v_poi_summary",
    "v_collection_priority",
)


def schema_files() -> list[Path]:
    """The numbered schema files (001_schema.sql, 002_views.sql, ...) in the order they run."""
    return sorted(DATABASE_DIR.glob("[0-9][0-9][0-9]_*.sql"))


def run_sql_file(conn: psycopg.Connection, path: Path) -> None:
    """Execute one SQL file in the caller's transaction; raises DatabaseError naming the file."""
    import psycopg

    try:
        # No parameters: psycopg sends the file as one simple query, so it may hold many statements.
        conn.execute(path.read_text())
    except psycopg.errors.InsufficientPrivilege as exc:
        raise DatabaseError(
            f"not allowed to create the demo objects ({path.name}): {first_line(exc)}",
            hint="connect as a user with CREATE on the schema (e.g. the database owner)",
        ) from exc
    except psycopg.Error as exc:
        raise DatabaseError(
            f"{path.name} failed: {first_line(exc)}",
            hint="nothing was changed (the seed runs in one transaction); check the server log for details",
        ) from exc


def apply_schema(conn: psycopg.Connection) -> None:
    """Create every table and view (database/NNN_*.sql) in the caller's transaction; raises DatabaseError."""
    for path in schema_files():
        run_sql_file(conn, path)
