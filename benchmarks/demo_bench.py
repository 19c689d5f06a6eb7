"""Benchmark of the tool itself (not a test: it reports figures and gates nothing), as one table.

The local runtime with the fake Metabase as a process: a cold `provision demo`, a no-op re-run, the no-op
`dashboards plan` at 5 and 100 dashboards with Metabase 0 and 100 ms away (plan_bench.py), `provision seed`,
`provision --help`, and the peak memory of the `provision` processes. The fake answers at once unless told
to wait, but `demo` still polls health and sync at Metabase's intervals, so its wall time includes those
waits; the CPU seconds are the tool's own work (start-up, YAML, planning, HTTP), never the fake's.

    .venv/bin/python benchmarks/demo_bench.py [--runs 3] [--json] [--readme]

`--readme` also writes the table into README.md between its `bench:start` and `bench:end` markers
(`make bench` does).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _measure import PROVISION, ROOT, Run, environment, median_run, run
from plan_bench import measure_plans

README = ROOT / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
# `provision seed --scale N`: N times the demo's data (benchmarks/seed_bench.py goes further: a plain
# COPY side by side, every card timed at N = 100, N = 1000).
SEED_SCALES = (10, 100)


def _compile_bytecode(env: dict[str, str]) -> None:
    """Bytecode for every module first, as `pip install` leaves it: no run pays for compiling."""
    subprocess.run([PROVISION[0], "-m", "compileall", "-q", str(ROOT / "provisioner")], env=env, check=True)


def bench(runs: int) -> dict[str, Any]:
    """Measure everything once (the plans, seed and `--help` `runs` times) and return the figures."""
    with tempfile.TemporaryDirectory(prefix="provision-bench-") as tmp:
        home = Path(tmp) / "home"
        env = environment(home)
        _compile_bytecode(env)
        try:
            cold = run(["demo", "--json"], env)
            noop = median_run(["demo", "--json"], env, runs)
            demo = json.loads(noop.stdout)
            if demo.get("changed"):
                raise SystemExit("the re-run of the demo changed something: not a no-op")
            plans = measure_plans(home, demo["metabase_url"], runs, Path(tmp))
            seed = median_run(["seed", "--reset", "--json"], env, runs)
            scaled = {n: run(["seed", "--scale", str(n), "--json"], env) for n in SEED_SCALES}
        finally:
            run(["down", "--volumes"], env)
        help_run = median_run(["--help"], env, max(runs, 5))
    rows: list[tuple[str, Run | None, str]] = [
        ("cold `provision demo`", cold, "most of the wall time is Metabase's start and sync polls"),
        ("no-op `provision demo`", noop, "0 writes"),
    ]
    for key, measured in plans.items():
        count, latency_ms, *one_at_a_time = key
        name = f"no-op `dashboards plan`, {count} dashboards, {latency_ms} ms away"
        if one_at_a_time:
            rows.append((f"{name}, `--concurrency 1`", measured, "one request at a time, as before (1 run)"))
        else:
            rows.append((name, measured, "target < 3 s" if (count, latency_ms) == (100, 100) else ""))
    rows.append(("`provision seed`, N = 1 (the demo's data)", seed, "`--reset`: dropped and rebuilt"))
    for scale, measured_seed in scaled.items():
        note = "1.1 M telemetry rows; `make bench-seed` for more" if scale == 100 else "(1 run)"
        rows.append((f"`provision seed --scale {scale}`", measured_seed, note))
    rows.append(("`provision --help`", help_run, ""))
    measured_runs = [r for _name, r, _note in rows if r is not None]
    return {
        "machine": f"{os.cpu_count()} CPUs, {platform.system()}, Python {platform.python_version()}",
        "runs": runs,
        "rows": [
            {
                "name": name,
                "note": note,
                **({} if r is None else {k: v for k, v in vars(r).items() if k != "stdout"}),
            }
            for name, r, note in rows
        ],
        "peak_rss_mib": max(r.peak_rss_mib for r in measured_runs),
    }


def _figures(measured: Run | None) -> dict[str, Any]:
    return {} if measured is None else {k: v for k, v in vars(measured).items() if k != "stdout"}


def _cell(row: dict[str, Any], key: str, fmt: str, unit: str = "") -> str:
    return format(row[key], fmt) + unit if key in row else "—"


def table(report: dict[str, Any]) -> str:
    """The figures as one markdown table, with how they were measured."""
    lines = [
        "| | wall | CPU of the tool | requests | peak memory | |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['name']} | {_cell(row, 'wall_s', '.2f', ' s')} | {_cell(row, 'cpu_s', '.2f', ' s')} "
            f"| {_cell(row, 'requests', 'd')} | {_cell(row, 'peak_rss_mib', '.0f', ' MiB')} | {row['note']} |"
        )
    peak = f"{report['peak_rss_mib']:.0f} MiB"
    lines.append(f"| peak memory, any `provision` process | | | | {peak} | target < 150 MB |")
    lines.append("")
    lines.append(
        f"Measured by `make bench` on {report['machine']}; the median of {report['runs']} runs "
        "(`--help`: of 5 or more), the default concurrency of 8."
    )
    return "\n".join(lines)


def write_readme(text: str) -> None:
    """Put `text` between the README's bench markers; raises SystemExit if they are missing."""
    readme = README.read_text()
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), flags=re.S)
    if not pattern.search(readme):
        raise SystemExit(f"README.md has no {START} ... {END} markers")
    README.write_text(pattern.sub(lambda _m: f"{START}\n{text}\n{END}", readme))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table (or JSON), and with --readme write it into README.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=3, help="runs of each measured no-op (the median is shown)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--readme", action="store_true", help="also write the table into README.md")
    args = parser.parse_args(argv)
    report = bench(args.runs)
    print(json.dumps(report, indent=2) if args.json else table(report))
    if args.readme:
        write_readme(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
