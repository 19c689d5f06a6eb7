"""Copies of the curated demo for `provision seed --scale N`: N blocks of 15 accounts, each telling its story.

Block 1 is the curated demo of seeds/, exactly as at N = 1. Blocks 2..N each copy its 15 accounts and
assets with their customers, identifiers, schedules, payments, collection actions, metric and indicator
values, events, asset and customer POIs and visits, under new ids and identifiers. A copy keeps every date
and score that decides a risk band (due dates, payments, indicator scores, events), so each block splits
5 healthy / 5 at risk / 5 delinquent like the curated one, and varies what does not: amounts (each account
×0.80 to ×1.25, its schedule and payments alike), customer names and onboarding dates, serial numbers,
build years, and places (each block moved by up to about 20 km). Reference data (OEMs, models, metric,
indicator and event definitions, OEM service centres) is shared, not copied.

Each copied asset reports every day for two years: 716 days of its pattern's normal working week
(telemetry.yaml `history`, with seasonal and daily variation), then the curated asset's 14 days.

Every row is generated lazily from a random generator seeded per block (and per asset), so block b is the
same at any N and in every run, and memory does not grow with N.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from provisioner.db.seed_files import LOAD_ORDER, TableRows, TelemetrySeries, load_table, load_telemetry
from provisioner.db.seed_files import telemetry_series as read_telemetry_series

# The largest --scale accepted: 150,000 accounts and about 110 million telemetry rows.
MAX_SCALE = 10_000
TELEMETRY_DAYS = 730  # two years of daily readings per copied asset
_SEED = "metabase-provisioner --scale"
_READING_TIME = " 18:00:00+00"  # end-of-day reading, as the curated telemetry (seed_files.TELEMETRY_TIME)
_REFUEL_BELOW_TENTHS = 250  # a tank below 25% is filled to 92% at the end of the day
_REFUEL_TO_TENTHS = 920

# Customer names of the copies: a place, a trade of the customer's segment, and from the second round on a
# qualifier. None of the places starts a curated customer's name, so no copy takes a curated name.
_PLACES = (
    "Abbotsford", "Ainsdale", "Alnwick", "Ambleside", "Arncliffe", "Ashby", "Aylsham", "Bakewell", "Bampton",
    "Barnard", "Beckford", "Belford", "Bideford", "Blakeney", "Bourne", "Bramley", "Brandon", "Bridport",
    "Bromyard", "Buxton", "Carnforth", "Castleton", "Chalford", "Cheadle", "Clitheroe", "Corbridge",
    "Cromer", "Dalby", "Dedham", "Dorstone", "Dunford", "Easingwold", "Eskdale", "Evesham", "Falmouth",
    "Farndon", "Fordham", "Garstang", "Glossop", "Goathland", "Hawes", "Helmsley", "Hexham", "Holt",
    "Horsham", "Ilkley", "Keswick", "Kirkby", "Langport", "Ledbury", "Leyburn", "Lydford", "Malton",
    "Masham", "Melrose", "Minehead", "Morpeth", "Nantwich", "Newby", "Oakham", "Otley", "Padstow",
    "Penrith", "Pickering", "Ramsey", "Redmire", "Ripon", "Romsey", "Rothbury", "Saltash", "Sedbergh",
    "Settle", "Sherborne", "Skipton", "Stanhope", "Tadcaster", "Tenbury", "Thirsk", "Upton", "Wareham",
    "Wetherby", "Whitby", "Wigton", "Wooler", "Yarm",
)  # fmt: skip
_TRADES = {
    "construction": ("Civil Engineering", "Groundworks", "Construction", "Building Contractors"),
    "agriculture": ("Farms", "Growers", "Agriculture", "Estates"),
    "logistics": ("Haulage", "Freight", "Logistics", "Transport"),
    "mining": ("Quarries", "Aggregates", "Minerals", "Mining"),
    "utilities": ("Utilities", "Power Services", "Water Services", "Energy Networks"),
}
_QUALIFIERS = ("Group", "Ltd", "& Sons", "Partners", "Holdings", "Services", "Contracts", "Brothers")
_FIRST_NAMES = (
    "Amira", "Ben", "Chloe", "Dev", "Eilidh", "Femi", "Gareth", "Hana", "Isaac", "Jess", "Kofi", "Lucy",
    "Mohammed", "Niamh", "Oliver", "Poppy", "Rhys", "Sofia", "Tariq", "Una", "Vikram", "Willow", "Yusuf",
    "Zara",
)  # fmt: skip
_LAST_NAMES = (
    "Adams", "Bennett", "Chowdhury", "Davies", "Evans", "Fraser", "Gill", "Hughes", "Iqbal", "Jones",
    "Khan", "Lewis", "Murray", "Nolan", "O'Brien", "Patel", "Quinn", "Roberts", "Singh", "Taylor", "Walsh",
)  # fmt: skip


@dataclass(frozen=True)
class CuratedDemo:
    """The curated demo of seeds/ for one as-of date: what every block copies."""

    as_of: date
    tables: dict[str, TableRows]  # LOAD_ORDER's tables, in that order
    telemetry: TableRows
    series: list[TelemetrySeries]

    @classmethod
    def load(cls, as_of: date) -> CuratedDemo:
        """Read seeds/; raises SeedDataError."""
        series = read_telemetry_series()
        tables = {table: load_table(table, filename, as_of) for table, filename in LOAD_ORDER}
        return cls(as_of, tables, load_telemetry(as_of, series), series)


def copied_rows(demo: CuratedDemo, table: str, scale: int) -> Iterator[tuple[Any, ...]]:
    """The rows of blocks 2..`scale` for `table` (a LOAD_ORDER table), in its TableRows columns.

    Nothing for the shared tables (OEMs, models, definitions).
    """
    copy = _COPIERS.get(table)
    if copy is None:
        return
    template = _Template(demo)
    columns = demo.tables[table].columns
    for number in range(2, scale + 1):
        block = _Block(number, template)
        for record in copy(template, block):
            yield tuple(record[c] for c in columns)


def copied_telemetry(demo: CuratedDemo, scale: int) -> Iterator[str]:
    """raw_telemetry of blocks 2..`scale` as COPY text (columns seed_files.TELEMETRY_COLUMNS), one chunk
    per asset: two years of daily readings, the last 14 days the curated asset's."""
    template = _Template(demo)
    calendar = _Calendar(demo.as_of)
    for number in range(2, scale + 1):
        block = _Block(number, template)
        for position, series in enumerate(demo.series):
            yield _asset_telemetry(series, block, position, calendar)


# -- the template and the blocks --------------------------------------------------------------


class _Ids:
    """New ids for the copies of some rows of a table: after the curated ids, `len(copied)` per block."""

    def __init__(self, all_ids: list[int], copied: list[int]) -> None:
        self.base = max(all_ids, default=0)
        self.per_block = len(copied)
        self.position = {old: index for index, old in enumerate(copied)}

    def __call__(self, old: Any, block: _Block) -> int:
        return self.base + (block.number - 2) * self.per_block + self.position[int(old)] + 1


def _records(rows: TableRows) -> list[dict[str, Any]]:
    return [dict(zip(rows.columns, row, strict=True)) for row in rows.rows]


def _all_copied(records: list[dict[str, Any]]) -> _Ids:
    ids = [int(r["id"]) for r in records]
    return _Ids(ids, ids)


class _Template:
    """The curated rows as records, and the id maps of every copied table."""

    def __init__(self, demo: CuratedDemo) -> None:
        self.records = {table: _records(rows) for table, rows in demo.tables.items()}
        r = self.records
        self.customer_ids = _all_copied(r["customers"])
        self.account_ids = _all_copied(r["accounts"])
        self.asset_ids = _all_copied(r["assets"])
        # OEM service centres are shared; an asset's base and a customer's site are copied with their owner.
        own = [int(p["id"]) for p in r["pois"] if p["owner_type"] != "oem"]
        self.poi_ids = _Ids([int(p["id"]) for p in r["pois"]], own)
        ident = [int(e["id"]) for e in r["entity_identifiers"] if e["entity_type"] != "oem"]
        self.identifier_ids = _Ids([int(e["id"]) for e in r["entity_identifiers"]], ident)
        self.row_ids = {
            table: _all_copied(r[table])
            for table in (
                "repayment_schedule",
                "payments",
                "collection_actions",
                "metric_values",
                "indicator_values",
                "events",
                "poi_visits",
            )
        }
        self.customers = {int(c["id"]): c for c in r["customers"]}
        self.accounts = {int(a["id"]): a for a in r["accounts"]}
        self.assets = {int(s["id"]): s for s in r["assets"]}
        self.account_positions = {int(a["id"]): i for i, a in enumerate(r["accounts"])}
        self.customer_positions = {int(c["id"]): i for i, c in enumerate(r["customers"])}
        self.asset_positions = {int(s["id"]): i for i, s in enumerate(r["assets"])}


class _Block:
    """What varies in one copied block: drawn from a generator seeded with the block's number only."""

    def __init__(self, number: int, template: _Template) -> None:
        rng = random.Random(f"{_SEED} block {number}")
        self.number = number
        self.template = template
        self.delta_lat = round(rng.uniform(-0.15, 0.15), 6)
        self.delta_lon = round(rng.uniform(-0.2, 0.2), 6)
        accounts, customers, assets = (len(template.records[t]) for t in ("accounts", "customers", "assets"))
        self.amount_permille = [rng.randint(800, 1250) for _ in range(accounts)]
        self.onboarding_shift_days = [rng.randint(-30, 30) for _ in range(customers)]
        self.year_shift = [rng.choice((-1, 0, 0, 1)) for _ in range(assets)]
        self.meter_start_tenths = [rng.randint(5_000, 40_000) for _ in range(assets)]
        # Fuel used: 3.5 to 5.5% of the tank per operating hour.
        self.burn_hundredths_per_hour = [rng.randint(350, 550) for _ in range(assets)]
        self.telemetry_seed = rng.getrandbits(64)

    def customer(self, old: Any) -> int:
        return self.template.customer_ids(old, self)

    def account(self, old: Any) -> int:
        return self.template.account_ids(old, self)

    def asset(self, old: Any) -> int:
        return self.template.asset_ids(old, self)

    def poi(self, old: Any) -> int:
        """The copy of an asset's or customer's POI; an OEM service centre is the same for every block."""
        return self.template.poi_ids(old, self) if int(old) in self.template.poi_ids.position else int(old)

    def account_number(self, old_account: Any) -> str:
        return f"AF-{1000 + self.account(old_account)}"

    def scaled_cents(self, old_account: Any, cents: int) -> int:
        permille = self.amount_permille[self.template.account_positions[int(old_account)]]
        return (cents * permille + 500) // 1000

    def moved(self, latitude: Any, longitude: Any) -> tuple[float, float]:
        return round(float(latitude) + self.delta_lat, 6), round(float(longitude) + self.delta_lon, 6)


def _cents(amount: Any) -> int:
    return int(Decimal(str(amount)) * 100)


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def customer_name(customer_id: int, segment: str) -> str:
    """The name of copied customer `customer_id`: unique over all ids of a segment, and across segments."""
    places, trades = len(_PLACES), _TRADES[segment]
    place = _PLACES[customer_id % places]
    trade = trades[(customer_id // places) % len(trades)]
    rounds = customer_id // (places * len(trades))
    if rounds == 0:
        return f"{place} {trade}"
    qualifier = _QUALIFIERS[(rounds - 1) % len(_QUALIFIERS)]
    again = (rounds - 1) // len(_QUALIFIERS)
    return f"{place} {trade} {qualifier}" + (f" {again + 1}" if again else "")


# -- one function per copied table: the curated records of the table → the block's records ----


Records = Iterator[dict[str, Any]]


def _customers(t: _Template, b: _Block) -> Records:
    for c in t.records["customers"]:
        new = b.customer(c["id"])
        first = _FIRST_NAMES[new * 7 % len(_FIRST_NAMES)]
        last = _LAST_NAMES[new * 11 % len(_LAST_NAMES)]
        name = customer_name(new, c["segment"])
        shift = b.onboarding_shift_days[t.customer_positions[int(c["id"])]]
        yield {
            **c,
            "id": new,
            "name": name,
            "contact_name": f"{first} {last}",
            "contact_phone": f"+44 20 7946 {new % 1000:04d}",
            "contact_email": f"{first.lower()}@{name.split()[0].lower()}-{new}.example",
            "onboarded_on": c["onboarded_on"] + timedelta(days=shift),
        }


def _accounts(t: _Template, b: _Block) -> Records:
    for a in t.records["accounts"]:
        yield {
            **a,
            "id": b.account(a["id"]),
            "account_number": b.account_number(a["id"]),
            "customer_id": b.customer(a["customer_id"]),
            "financed_amount": _money(b.scaled_cents(a["id"], _cents(a["financed_amount"]))),
            "instalment_amount": _money(b.scaled_cents(a["id"], _cents(a["instalment_amount"]))),
        }


def _assets(t: _Template, b: _Block) -> Records:
    for s in t.records["assets"]:
        new = b.asset(s["id"])
        prefix = str(s["serial_number"]).split("-")[0]
        yield {
            **s,
            "id": new,
            "account_id": b.account(s["account_id"]),
            "serial_number": f"{prefix}-{100_000 + new}",
            "manufactured_year": int(s["manufactured_year"]) + b.year_shift[t.asset_positions[int(s["id"])]],
        }


def _entity_identifiers(t: _Template, b: _Block) -> Records:
    for e in t.records["entity_identifiers"]:
        kind = e["entity_type"]
        if kind == "oem":
            continue
        owner = {"customer": b.customer, "account": b.account, "asset": b.asset}[kind](e["entity_id"])
        value = _identifier(e["identifier_type"], owner, t, e["entity_id"], b)
        yield {**e, "id": t.identifier_ids(e["id"], b), "entity_id": owner, "identifier_value": value}


def _identifier(kind: str, owner: int, t: _Template, old_owner: Any, b: _Block) -> str:
    # Each format is longer than the curated one, so a copy never takes a curated value.
    if kind == "crm_id":
        return f"CRM-{50_000 + owner}"
    if kind == "company_number":
        return str(20_000_000 + owner)
    if kind == "ledger_id":
        return f"LED-AF-{1000 + owner}"
    if kind == "vin":
        prefix = str(t.assets[int(old_owner)]["serial_number"]).split("-")[0]
        return f"VIN{prefix}{100_000 + owner}{owner % 1000:03d}"
    if kind == "telematics_device":
        return f"TLM-{9_000_000 + owner}"
    return f"{kind.upper()}-{b.number}-{owner}"


def _repayment_schedule(t: _Template, b: _Block) -> Records:
    ids = t.row_ids["repayment_schedule"]
    for r in t.records["repayment_schedule"]:
        yield {
            **r,
            "id": ids(r["id"], b),
            "account_id": b.account(r["account_id"]),
            "amount_due": _money(b.scaled_cents(r["account_id"], _cents(r["amount_due"]))),
        }


def _payments(t: _Template, b: _Block) -> Records:
    ids = t.row_ids["payments"]
    due = {
        (int(r["account_id"]), int(r["instalment_number"])): _cents(r["amount_due"])
        for r in t.records["repayment_schedule"]
    }
    paid_before: dict[tuple[int, int], int] = {}
    for p in t.records["payments"]:
        key = (int(p["account_id"]), int(p["instalment_number"]))
        before = paid_before.get(key, 0)
        after = before + _cents(p["amount"])
        paid_before[key] = after
        # Scale what is paid so far, not each payment: an instalment paid in full stays paid in full to
        # the cent, one paid in part stays short of it, so every account keeps its days past due.
        amount = _paid_so_far(b, key, after, due[key]) - _paid_so_far(b, key, before, due[key])
        new = ids(p["id"], b)
        yield {
            **p,
            "id": new,
            "account_id": b.account(p["account_id"]),
            "amount": _money(amount),
            "reference": f"PAY-{b.account(p['account_id']):06d}{key[1]:02d}-{new:07d}",
        }


def _paid_so_far(b: _Block, key: tuple[int, int], cents: int, due_cents: int) -> int:
    scaled = b.scaled_cents(key[0], cents)
    return min(scaled, b.scaled_cents(key[0], due_cents) - 1) if cents < due_cents else scaled


def _by_account(table: str) -> Callable[[_Template, _Block], Records]:
    def copy(t: _Template, b: _Block) -> Records:
        ids = t.row_ids[table]
        for r in t.records[table]:
            yield {**r, "id": ids(r["id"], b), "account_id": b.account(r["account_id"])}

    return copy


def _by_asset(table: str) -> Callable[[_Template, _Block], Records]:
    def copy(t: _Template, b: _Block) -> Records:
        ids = t.row_ids[table]
        for r in t.records[table]:
            yield {**r, "id": ids(r["id"], b), "asset_id": b.asset(r["asset_id"])}

    return copy


def _events(t: _Template, b: _Block) -> Records:
    from psycopg.types.json import Jsonb

    ids = t.row_ids["events"]
    for e in t.records["events"]:
        old_number = str(t.accounts[int(e["account_id"])]["account_number"])
        context = _replace_text(e["context"].obj, old_number, b.account_number(e["account_id"]))
        yield {
            **e,
            "id": ids(e["id"], b),
            "asset_id": b.asset(e["asset_id"]),
            "account_id": b.account(e["account_id"]),
            "context": Jsonb(context),
        }


def _replace_text(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict):
        return {k: _replace_text(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_text(v, old, new) for v in value]
    return value


def _pois(t: _Template, b: _Block) -> Records:
    for p in t.records["pois"]:
        if p["owner_type"] == "oem":
            continue
        if p["owner_type"] == "asset":
            customer = t.accounts[int(t.assets[int(p["asset_id"])]["account_id"])]["customer_id"]
        else:
            customer = p["customer_id"]
        latitude, longitude = b.moved(p["latitude"], p["longitude"])
        yield {
            **p,
            "id": b.poi(p["id"]),
            "name": _poi_name(str(p["name"]), t.customers[int(customer)], b),
            "asset_id": None if p["asset_id"] is None else b.asset(p["asset_id"]),
            "customer_id": None if p["customer_id"] is None else b.customer(p["customer_id"]),
            "latitude": latitude,
            "longitude": longitude,
        }


def _poi_name(name: str, customer: dict[str, Any], b: _Block) -> str:
    """A copied POI's name: "Ashdown yard, Maidstone" of Ashdown Civil Engineering → "Ripon yard, ..."."""
    place = customer_name(b.customer(customer["id"]), customer["segment"]).split()[0]
    first = str(customer["name"]).split()[0]
    return place + name[len(first) :] if name.startswith(first + " ") else f"{name} ({place})"


def _poi_visits(t: _Template, b: _Block) -> Records:
    ids = t.row_ids["poi_visits"]
    for v in t.records["poi_visits"]:
        yield {**v, "id": ids(v["id"], b), "poi_id": b.poi(v["poi_id"]), "asset_id": b.asset(v["asset_id"])}


_COPIERS: dict[str, Callable[[_Template, _Block], Records]] = {
    "customers": _customers,
    "accounts": _accounts,
    "assets": _assets,
    "entity_identifiers": _entity_identifiers,
    "repayment_schedule": _repayment_schedule,
    "payments": _payments,
    "collection_actions": _by_account("collection_actions"),
    "metric_values": _by_asset("metric_values"),
    "indicator_values": _by_asset("indicator_values"),
    "events": _events,
    "pois": _pois,
    "poi_visits": _poi_visits,
}


# -- telemetry --------------------------------------------------------------------------------


class _Calendar:
    """The two years of reading days up to the as-of date, as COPY text, shared by every asset."""

    def __init__(self, as_of: date) -> None:
        first = as_of - timedelta(days=TELEMETRY_DAYS - 1)
        days = [first + timedelta(days=i) for i in range(TELEMETRY_DAYS)]
        # "0729\t" after an asset id makes the reading's id (asset id × 10000 + day).
        self.id_suffix = [f"{i:04d}\t" for i in range(TELEMETRY_DAYS)]
        # "\t2026-03-31 18:00:00+00\t" between asset_id and the hour meter.
        self.reading_at = [f"\t{day.isoformat()}{_READING_TIME}\t" for day in days]
        self.weekday = [day.weekday() for day in days]
        # Busiest at midsummer (day 172), quietest at midwinter.
        self.season = [math.cos(2 * math.pi * (day.timetuple().tm_yday - 172) / 365.25) for day in days]
        self._expected: dict[int, list[float]] = {}

    def expected_tenths(self, series: TelemetrySeries) -> list[float]:
        """The hours (in tenths) `series` works each day of its normal week, before daily variation;
        0 on a day off. With fewer than 5 days a week the days are drawn at random: every day gets hours."""
        found = self._expected.get(series.asset_id)
        if found is None:
            profile = series.history
            weekly = profile.days_per_week >= 5
            found = [
                profile.hours_per_day * 10 * (1 + profile.seasonal_swing * season)
                if not weekly or weekday < profile.days_per_week
                else 0.0
                for weekday, season in zip(self.weekday, self.season, strict=True)
            ]
            self._expected[series.asset_id] = found
        return found


# Operating hours, fuel and meters in tenths → their text: a lookup, not a float format per reading.
_TENTHS = [f"{t // 10}.{t % 10}" for t in range(1001)]


def _asset_telemetry(series: TelemetrySeries, b: _Block, position: int, calendar: _Calendar) -> str:
    """One copied asset's two years of readings as COPY text (ids: asset id × 10000 + day).

    The hot loop of a large seed (about a million readings at N = 100): integers in tenths, text from
    lookups, one f-string per reading.
    """
    rand = random.Random(b.telemetry_seed + position).random
    asset = str(b.asset(series.asset_id))
    latitude, longitude = b.moved(series.base.latitude, series.base.longitude)
    base_position = f"\t{latitude:.6f}\t{longitude:.6f}\n"
    meter = b.meter_start_tenths[position]
    fuel = 500 + int(400 * rand())  # tenths of a percent
    burn = b.burn_hundredths_per_hour[position]  # tenths of a percent per tenth of an hour, × 100
    expected = calendar.expected_tenths(series)
    random_days = series.history.days_per_week < 5
    works_share = series.history.days_per_week / 7
    reading_at, suffix, tenths = calendar.reading_at, calendar.id_suffix, _TENTHS
    first_curated = series.first_day_offset_days + TELEMETRY_DAYS - 1
    lines: list[str] = []
    append = lines.append
    for day in range(max(0, min(first_curated, TELEMETRY_DAYS))):
        hours = 0
        base = expected[day]
        if base and (not random_days or rand() < works_share):
            hours = min(int(base * (0.85 + 0.3 * rand()) + 0.5), 240)
            meter += hours
            fuel -= hours * burn // 100
            if fuel < _REFUEL_BELOW_TENTHS:
                fuel = _REFUEL_TO_TENTHS
        append(
            f"{asset}{suffix[day]}{asset}{reading_at[day]}{meter // 10}.{meter % 10}\t"
            f"{tenths[hours]}\t{tenths[fuel]}{base_position}"
        )
    # The curated fortnight as the curated asset reported it: its metric values describe these days.
    moves = sorted(series.moves, key=lambda m: -m.from_offset_days)
    for index, (hours_value, fuel_value) in enumerate(
        zip(series.operating_hours, series.fuel_level_pct, strict=True)
    ):
        day = first_curated + index
        if hours_value is None or fuel_value is None or not 0 <= day < TELEMETRY_DAYS:
            continue  # no report that day
        hours = round(hours_value * 10)
        meter += hours
        offset = series.first_day_offset_days + index
        move = next((m for m in moves if m.from_offset_days <= offset), None)
        where = base_position
        if move is not None:
            where = "\t{:.6f}\t{:.6f}\n".format(*b.moved(move.latitude, move.longitude))
        append(
            f"{asset}{suffix[day]}{asset}{reading_at[day]}{meter // 10}.{meter % 10}\t"
            f"{tenths[hours]}\t{tenths[round(fuel_value * 10)]}{where}"
        )
    return "".join(lines)
