"""The mock data in seeds/: read YAML and CSV files into rows, dates resolved against the as-of date.

Data files hold dates as offsets in days from the as-of date, so the demo always looks current and
is deterministic for a given as-of date. A key `<column>_offset_days` fills `<column>`: a date, or a
UTC timestamp when `<column>_time` ("HH:MM") is also given.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from provisioner.errors import ProvisionError
from provisioner.resources import shipped_path

SEEDS_DIR = shipped_path("seeds")
TELEMETRY_FILE = "telemetry.yaml"
# End-of-day reading time of the daily telemetry.
TELEMETRY_TIME = time(18, 0)

# Table ← file, in foreign-key order. raw_telemetry comes from TELEMETRY_FILE; the snapshot,
# history and aggregate tables are computed by database/derived.sql.
LOAD_ORDER: tuple[tuple[str, str], ...] = (
    ("oems", "oems.yaml"),
    ("asset_models", "asset_models.yaml"),
    ("customers", "customers.yaml"),
    ("accounts", "accounts.yaml"),
    ("assets", "assets.yaml"),
    ("entity_identifiers", "entity_identifiers.csv"),
    ("repayment_schedule", "repayment_schedule.csv"),
    ("payments", "payments.csv"),
    ("collection_actions", "collection_actions.yaml"),
    ("metric_definitions", "metric_definitions.yaml"),
    ("metric_values", "metric_values.yaml"),
    ("indicator_definitions", "indicator_definitions.yaml"),
    ("indicator_values", "indicator_values.yaml"),
    ("event_definitions", "event_definitions.yaml"),
    ("events", "events.yaml"),
    ("pois", "pois.yaml"),
    ("poi_visits", "poi_visits.csv"),
)

_OFFSET_SUFFIX = "_offset_days"
_TIME_SUFFIX = "_time"


class SeedDataError(ProvisionError):
    """A file in seeds/ cannot be read; the project checkout is damaged."""

    exit_code = 1
    kind = "seed_data"


@dataclass(frozen=True)
class TableRows:
    """Rows for one table: column names and one tuple per row."""

    table: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


class _Position(BaseModel):
    model_config = ConfigDict(extra="forbid")
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class _Move(_Position):
    from_offset_days: int


class TelemetryHistory(BaseModel):
    """An asset's normal working week before its curated days: what `--scale` copies report for two years."""

    model_config = ConfigDict(extra="forbid")
    hours_per_day: float = Field(ge=0, le=24)
    # 5: Monday to Friday, 6: to Saturday, 7: every day; fewer: that many days a week at random.
    days_per_week: int = Field(ge=0, le=7)
    # The share the hours rise in high season and fall in low season (a sine over the year).
    seasonal_swing: float = Field(default=0.1, ge=0, le=0.9)


class TelemetrySeries(BaseModel):
    """One asset's daily telemetry in telemetry.yaml."""

    model_config = ConfigDict(extra="forbid")

    asset_id: int
    pattern: str
    engine_hours_start: float = Field(ge=0)
    base: _Position
    first_day_offset_days: int
    operating_hours: list[float | None]
    fuel_level_pct: list[float | None]
    moves: list[_Move] = []
    history: TelemetryHistory


def seed_files() -> list[Path]:
    """Every data file in seeds/, sorted (for the input fingerprint)."""
    return sorted(p for p in SEEDS_DIR.iterdir() if p.suffix in (".yaml", ".csv"))


def files_fingerprint(paths: list[Path]) -> str:
    """A sha256 over the names and contents of `paths`."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def load_table(table: str, filename: str, as_of: date) -> TableRows:
    """The rows of `filename` for `table`, offsets resolved, missing keys NULL; raises SeedDataError."""
    records = _read_records(SEEDS_DIR / filename)
    converted = [_resolve_offsets(record, as_of, filename) for record in records]
    # A key a record leaves out is NULL there (e.g. a POI names only its one owner).
    columns = tuple(dict.fromkeys(key for record in converted for key in record))
    return TableRows(table, columns, [tuple(r.get(c) for c in columns) for r in converted])


TELEMETRY_COLUMNS = (
    "id",
    "asset_id",
    "recorded_at",
    "engine_hours_total",
    "operating_hours",
    "fuel_level_pct",
    "latitude",
    "longitude",
)


def telemetry_series() -> list[TelemetrySeries]:
    """The series of telemetry.yaml, one per asset; raises SeedDataError."""
    path = SEEDS_DIR / TELEMETRY_FILE
    try:
        series = [TelemetrySeries.model_validate(item) for item in _read_records(path)]
    except ValidationError as exc:
        raise SeedDataError(f"{TELEMETRY_FILE}: {exc.errors()[0]['msg']}", hint=_DAMAGED) from exc
    for s in series:
        if len(s.operating_hours) != len(s.fuel_level_pct):
            raise SeedDataError(
                f"{TELEMETRY_FILE}: asset {s.asset_id}: operating_hours and fuel_level_pct differ in length",
                hint=_DAMAGED,
            )
    return series


def load_telemetry(as_of: date, series: list[TelemetrySeries] | None = None) -> TableRows:
    """raw_telemetry rows expanded from telemetry.yaml (one reading a day); raises SeedDataError."""
    rows: list[tuple[Any, ...]] = []
    for s in telemetry_series() if series is None else series:
        meter = s.engine_hours_start
        for day, (hours, fuel) in enumerate(zip(s.operating_hours, s.fuel_level_pct, strict=True)):
            if hours is None or fuel is None:
                continue  # no report that day
            offset = s.first_day_offset_days + day
            meter += hours
            latest_first = sorted(s.moves, key=lambda m: -m.from_offset_days)
            position = next((m for m in latest_first if m.from_offset_days <= offset), s.base)
            recorded_at = datetime.combine(as_of + timedelta(days=offset), TELEMETRY_TIME, tzinfo=UTC)
            rows.append(
                (
                    s.asset_id * 10_000 + day,
                    s.asset_id,
                    recorded_at,
                    round(meter, 1),
                    hours,
                    fuel,
                    position.latitude,
                    position.longitude,
                )
            )
    return TableRows("raw_telemetry", TELEMETRY_COLUMNS, rows)


_DAMAGED = "the seeds/ folder of this checkout is damaged: restore it with git"


def _read_records(path: Path) -> list[dict[str, Any]]:
    try:
        if path.suffix == ".csv":
            with path.open(newline="") as handle:
                # Empty CSV cells are NULL, like COPY ... CSV.
                rows = csv.DictReader(handle)
                return [{k: (v if v != "" else None) for k, v in row.items()} for row in rows]
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError, csv.Error) as exc:
        raise SeedDataError(f"cannot read seed file {path.name}: {exc}", hint=_DAMAGED) from exc
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise SeedDataError(f"{path.name}: expected a list of records", hint=_DAMAGED)
    return data


def _resolve_offsets(record: dict[str, Any], as_of: date, filename: str) -> dict[str, Any]:
    from psycopg.types.json import Jsonb

    out: dict[str, Any] = {}
    for key, value in record.items():
        if key.endswith(_TIME_SUFFIX) and key[: -len(_TIME_SUFFIX)] + _OFFSET_SUFFIX in record:
            continue  # consumed with its offset
        if key.endswith(_OFFSET_SUFFIX):
            column = key[: -len(_OFFSET_SUFFIX)]
            out[column] = _resolve_date(column, value, record.get(column + _TIME_SUFFIX), as_of, filename)
        elif isinstance(value, dict | list):
            out[key] = Jsonb(value)
        else:
            out[key] = value
    return out


def _resolve_date(column: str, offset: Any, at: Any, as_of: date, filename: str) -> date | datetime | None:
    if offset is None:
        return None
    try:
        day = as_of + timedelta(days=int(offset))
    except (TypeError, ValueError, OverflowError) as exc:
        raise SeedDataError(
            f"{filename}: {column}_offset_days must be whole days, got {offset!r}", hint=_DAMAGED
        ) from exc
    if at is None:
        return day
    return datetime.combine(day, _parse_time(at, filename), tzinfo=UTC)


def _parse_time(value: Any, filename: str) -> time:
    # YAML 1.1 reads an unquoted 18:30 as the base-60 integer 1110.
    if isinstance(value, int):
        return time(value // 60, value % 60)
    try:
        return time.fromisoformat(str(value))
    except ValueError as exc:
        raise SeedDataError(f"{filename}: time {value!r} is not HH:MM", hint=_DAMAGED) from exc
