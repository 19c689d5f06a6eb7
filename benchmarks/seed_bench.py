"""Benchmark of `provision seed --scale N` (not a test): figures, never a pass or fail on wall time.

On an embedded PostgreSQL of its own, in fresh databases:

- `provision seed --scale N --json` as a process for each N (default 1, 10, 100): wall time, rows,
  rows a second, the load (generate + COPY) from its progress lines, its peak memory (the process's
  own, from wait4), and the 5/5/5 split per 15 accounts;
- the tool's telemetry load (generation streamed into COPY) against a plain `COPY FROM STDIN` of the
  same rows read from a file, side by side in one transaction on a table in the state the seed loads
  it (keys built afterwards), best of three each;
- every demo card at the largest N: compiled to SQL as `dashboards validate` does (`mbql/sql.py`),
  with the row limit Metabase's UI applies, median of three after a warm-up; the slowest with its
  EXPLAIN (ANALYZE, BUFFERS).

    .venv/bin/python benchmarks/seed_bench.py [--scales 1 10 100] [--json]

`table_rows(measure())` gives the summary rows (measure, figure, target) for another report.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # this checkout's provisioner, whichever one the venv installed
PYTHON = sys.executable
AS_OF = date(2026, 3, 31)  # fixed: every run seeds the same rows
TRIALS = 3


@dataclass
class SeedRun:
    """One `provision seed --scale N` process."""

    scale: int
    wall_s: float
    rows: int
    telemetry_rows: int
    load_s: float  # generating and COPYing every table, keys not yet built
    keys_s: float  # building keys and indexes after the load (N > 1)
    peak_rss_mib: float
    risk_split: dict[str, int]

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.wall_s


@dataclass
class CopyComparison:
    """The tool's telemetry load against a plain COPY FROM STDIN of the same rows."""

    scale: int
    rows: int
    megabytes: float
    generate_only_s: float  # rendering the rows to text, without a database
    tool_s: float  # generation streamed into COPY, as the seed does it
    plain_s: float  # COPY FROM STDIN of the same text, from a file

    @property
    def throughput_pct(self) -> float:
        return 100 * self.plain_s / self.tool_s


@dataclass
class CardTiming:
    key: str
    name: str
    ms: float
    rows: int


@dataclass
class SeedBench:
    seeds: list[SeedRun]
    copy: CopyComparison | None
    cards_scale: int | None
    cards: list[CardTiming] = field(default_factory=list)
    models: list[CardTiming] = field(default_factory=list)
    slowest_sql: str = ""
    slowest_explain: str = ""


# -- the embedded server ----------------------------------------------------------------------


@contextmanager
def _server() -> Iterator[tuple[str, Path]]:
    """(a superuser DSN without the database name, a scratch directory) for the benchmark's life."""
    from provisioner.runtime.postgres import EmbeddedPostgres

    scratch = Path(tempfile.mkdtemp(prefix="seed-bench-"))
    server = EmbeddedPostgres(scratch / "postgres")
    password = secrets.token_urlsafe(16)
    info = server.start(password)
    try:
        yield info.dsn(password).rsplit("/", 1)[0], scratch
    finally:
        server.stop()
        subprocess.run(["rm", "-rf", str(scratch)], check=False)


def _create_database(base: str, name: str) -> str:
    import psycopg

    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base}/{name}"


# -- seeding as a process ---------------------------------------------------------------------


def _seed_process(dsn: str, scale: int, home: Path) -> SeedRun:
    import psycopg

    env = {k: v for k, v in os.environ.items() if not k.startswith(("METABASE_", "DATABASE_", "PROVISION_"))}
    env.update(PROVISION_HOME=str(home), PYTHONPATH=str(ROOT))
    args = [PYTHON, "-m", "provisioner", "seed", "--database-url", dsn, "--as-of", AS_OF.isoformat()]
    args += ["--scale", str(scale), "--json"]
    started = time.perf_counter()
    process = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: list[tuple[float, str]] = []

    def read_progress() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append((time.perf_counter() - started, line.rstrip()))

    reader = threading.Thread(target=read_progress)
    reader.start()
    assert process.stdout is not None
    stdout = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall_s = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    if process.returncode != 0:
        sys.stderr.write("\n".join(line for _, line in lines) + "\n")
        raise SystemExit(f"provision seed --scale {scale} failed with exit {process.returncode}")
    result = json.loads(stdout)

    def at(needle: str) -> float | None:
        return next((t for t, line in lines if needle in line), None)

    begun = at("Seeding the demo warehouse") or 0.0
    loaded = at("building keys and indexes") or at("loaded ") or wall_s
    keyed = at(" copies") or loaded
    with psycopg.connect(dsn) as conn:
        split = dict(
            conn.execute("SELECT risk_band, count(*) FROM account_current_state GROUP BY 1").fetchall()
        )
    return SeedRun(
        scale=scale,
        wall_s=wall_s,
        rows=sum(result["counts"].values()),
        telemetry_rows=result["counts"]["raw_telemetry"],
        load_s=loaded - (at("generating and loading") or begun),
        keys_s=keyed - loaded,
        peak_rss_mib=usage.ru_maxrss / 1024,  # KiB on Linux
        risk_split=split,
    )


# -- the telemetry load against a plain COPY ----------------------------------------------------


def _compare_copy(base: str, scale: int, scratch: Path) -> CopyComparison:
    import psycopg

    from provisioner.db.bulk_load import copy_text, keys_built_after
    from provisioner.db.schema import apply_schema
    from provisioner.db.seed_files import TELEMETRY_COLUMNS
    from provisioner.db.seed_scale import CuratedDemo, copied_telemetry

    demo = CuratedDemo.load(AS_OF)
    rendered = scratch / "telemetry.copy"
    started = time.perf_counter()
    with rendered.open("w") as out:
        for chunk in copied_telemetry(demo, scale):
            out.write(chunk)
    generate_only_s = time.perf_counter() - started
    columns = ", ".join(TELEMETRY_COLUMNS)
    tool: list[float] = []
    plain: list[float] = []
    rows = 0
    with psycopg.connect(_create_database(base, "copy_comparison")) as conn:
        conn.execute("SET LOCAL TimeZone = 'UTC'")
        apply_schema(conn)
        # Both load into raw_telemetry as the seed does: keys and indexes dropped until the end.
        with keys_built_after(conn, ["raw_telemetry"]):
            for _ in range(TRIALS):
                started = time.perf_counter()
                statement = f"COPY raw_telemetry ({columns}) FROM STDIN"
                with rendered.open("rb") as source, conn.cursor() as cur, cur.copy(statement) as copy:
                    while block := source.read(1 << 20):
                        copy.write(block)
                plain.append(time.perf_counter() - started)
                conn.execute("TRUNCATE raw_telemetry")
                started = time.perf_counter()
                rows = copy_text(conn, "raw_telemetry", TELEMETRY_COLUMNS, copied_telemetry(demo, scale))
                tool.append(time.perf_counter() - started)
                conn.execute("TRUNCATE raw_telemetry")
        conn.rollback()
    size_mb = rendered.stat().st_size / 1e6
    rendered.unlink()
    return CopyComparison(scale, rows, size_mb, generate_only_s, min(tool), min(plain))


# -- the demo cards ---------------------------------------------------------------------------


def _time_cards(dsn: str, bench: SeedBench) -> None:
    import psycopg

    from provisioner.spec import load_paths
    from provisioner.sqlcheck import questions_sql

    loaded = load_paths([ROOT / "dashboards"], environ={})
    with psycopg.connect(dsn, autocommit=True) as conn:
        cards = questions_sql(loaded, conn)
        by_key = {}
        for card in cards:
            sql = f"SELECT * FROM (\n{card.sql}\n) AS card LIMIT {card.row_limit}"
            by_key[card.key] = sql
            conn.execute(sql).fetchall()  # warm-up: the first run reads from disk
            times, rows = [], 0
            for _ in range(TRIALS):
                started = time.perf_counter()
                rows = len(conn.execute(sql).fetchall())
                times.append(time.perf_counter() - started)
            timing = CardTiming(card.key, card.name, 1000 * statistics.median(times), rows)
            (bench.models if card.type == "model" else bench.cards).append(timing)
        bench.cards.sort(key=lambda c: -c.ms)
        bench.models.sort(key=lambda c: -c.ms)
        if bench.cards:
            bench.slowest_sql = by_key[bench.cards[0].key]
            plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + bench.slowest_sql).fetchall()
            bench.slowest_explain = "\n".join(line for (line,) in plan)


# -- the report ---------------------------------------------------------------------------------


def measure(scales: tuple[int, ...] = (1, 10, 100), progress: bool = True) -> SeedBench:
    """Seed each scale, compare the telemetry load with a plain COPY and time the cards at the largest."""

    def say(message: str) -> None:
        if progress:
            print(message, file=sys.stderr, flush=True)

    largest = max(scales)
    bench = SeedBench(seeds=[], copy=None, cards_scale=largest)
    with _server() as (base, scratch):
        dsns: dict[int, str] = {}
        for scale in scales:
            say(f"seeding --scale {scale} ...")
            dsns[scale] = _create_database(base, f"seed_{scale}")
            bench.seeds.append(_seed_process(dsns[scale], scale, scratch / f"home-{scale}"))
        if largest > 1:
            say(f"telemetry load at --scale {largest} against a plain COPY FROM STDIN, best of {TRIALS} ...")
            bench.copy = _compare_copy(base, largest, scratch)
        say(f"timing every demo card at --scale {largest} ...")
        _time_cards(dsns[largest], bench)
    return bench


def _split(run: SeedRun) -> str:
    return "/".join(str(run.risk_split.get(band, 0)) for band in ("healthy", "at_risk", "delinquent"))


def table_rows(bench: SeedBench) -> list[tuple[str, str, str]]:
    """The summary as (measure, figure, target) rows, like the README's Performance table."""
    rows: list[tuple[str, str, str]] = []
    for run in bench.seeds:
        target = "1 M telemetry rows ≤ 20 s; memory flat in N (≤ 200 MB at N = 1000)" if run.scale > 1 else ""
        rows.append(
            (
                f"`seed --scale {run.scale}`",
                f"{run.wall_s:.1f} s wall, {run.rows:,} rows ({run.telemetry_rows:,} telemetry), "
                f"{run.rows_per_s / 1000:,.0f} k rows/s, peak {run.peak_rss_mib:.0f} MiB, "
                f"split {_split(run)}",
                target,
            )
        )
    if bench.copy is not None:
        c = bench.copy
        rows.append(
            (
                f"telemetry load vs plain `COPY FROM STDIN` (N = {c.scale})",
                f"{c.throughput_pct:.0f} % ({c.rows:,} rows: tool {c.tool_s:.2f} s, plain {c.plain_s:.2f} s)",
                "≥ 70 %",
            )
        )
    if bench.cards:
        slowest = bench.cards[0]
        rows.append(
            (
                f"slowest demo card (N = {bench.cards_scale})",
                f"{slowest.ms:.0f} ms `{slowest.key}` ({len(bench.cards)} cards)",
                "< 1 s",
            )
        )
    return rows


def markdown(bench: SeedBench) -> str:
    """The whole report: the summary, the seeds, the cards, and the slowest card's plan."""
    out = ["| | figure | target |", "|---|---|---|"]
    out += [f"| {m} | {f} | {t} |" for m, f, t in table_rows(bench)]
    out += [
        "",
        "| scale | wall | rows | telemetry rows | load (generate + COPY) | keys after load | rows/s "
        "| peak memory | healthy/at risk/delinquent |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in bench.seeds:
        out.append(
            f"| {r.scale} | {r.wall_s:.2f} s | {r.rows:,} | {r.telemetry_rows:,} | {r.load_s:.2f} s | "
            f"{r.keys_s:.2f} s | {r.rows_per_s:,.0f} | {r.peak_rss_mib:.0f} MiB | {_split(r)} |"
        )
    if bench.copy is not None:
        c = bench.copy
        out += [
            "",
            f"Telemetry at N = {c.scale}: {c.rows:,} rows, {c.megabytes:.0f} MB of COPY text. Generating "
            f"it alone takes {c.generate_only_s:.2f} s; streamed into COPY {c.tool_s:.2f} s; a plain COPY "
            f"FROM STDIN of the same text {c.plain_s:.2f} s: {c.throughput_pct:.0f} % of its throughput.",
        ]
    if bench.cards:
        out += ["", f"Demo cards at N = {bench.cards_scale} (median of {TRIALS}, Metabase's row limits):", ""]
        out += ["| card | ms | rows |", "|---|---:|---:|"]
        out += [f"| `{c.key}` {c.name} | {c.ms:.1f} | {c.rows:,} |" for c in bench.cards]
        out += ["", "Models, as the data browser opens them (first 2,000 rows):", ""]
        out += ["| model | ms | rows |", "|---|---:|---:|"]
        out += [f"| `{c.key}` | {c.ms:.1f} | {c.rows:,} |" for c in bench.models]
        out += ["", f"The slowest card, `{bench.cards[0].key}`:", "", "```sql", bench.slowest_sql, "```", ""]
        out += ["```", bench.slowest_explain, "```"]
    return "\n".join(out)


def to_json(bench: SeedBench) -> dict[str, Any]:
    data = asdict(bench)
    for run, raw in zip(bench.seeds, data["seeds"], strict=True):
        raw["rows_per_s"] = round(run.rows_per_s)
    if bench.copy is not None:
        data["copy"]["throughput_pct"] = round(bench.copy.throughput_pct, 1)
    data["summary"] = [
        dict(zip(("measure", "figure", "target"), row, strict=True)) for row in table_rows(bench)
    ]
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10, 100], help="the N to seed")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    args = parser.parse_args(argv)
    bench = measure(tuple(args.scales))
    print(json.dumps(to_json(bench), indent=2) if args.json else markdown(bench))
    return 0


if __name__ == "__main__":
    sys.exit(main())
