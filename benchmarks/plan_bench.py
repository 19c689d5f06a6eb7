"""Benchmark of a no-op `provision dashboards plan` at 5 and 100 dashboards, 0 and 100 ms from Metabase.

The 100 dashboards are the demo's five twenty times over, each copy with its own keys and names, on the
demo's eight models. They are applied once (not measured, the cards not run), then each plan is run
`--runs` times against the fake Metabase as a process, restarted with `--latency-ms` for the second
latency: every request then waits that long, as over a network. Reads are sent 8 at a time (the default
`--concurrency`); one by one, the ~114 reads of the 100 dashboards alone would take 11.4 s at 100 ms, which
the last plan, at `--concurrency 1`, shows (run once).

    .venv/bin/python benchmarks/plan_bench.py [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _measure import ROOT, Run, environment, median_run, run

DEMO_DASHBOARDS = ROOT / "dashboards"
COUNTS = (5, 100)
LATENCIES_MS = (0, 100)


def scaled_dashboards(source: Path, dest: Path, count: int) -> Path:
    """`count` dashboards in `dest`: those of `source` over and over, keys and names numbered, beside the
    files of models and questions they are built on."""
    dest.mkdir(parents=True, exist_ok=True)
    boards = []
    for path in sorted(source.glob("*.yaml")):
        text = path.read_text()
        if re.search(r"^cards:", text, flags=re.M):
            boards.append((path.stem.split("-", 1)[-1], text))
        else:
            (dest / path.name).write_text(text)
    for n in range(count):
        stem, text = boards[n % len(boards)]
        copy = n // len(boards) + 1
        text = re.sub(r"^key: (.+)$", rf"key: \1-{copy}", text, count=1, flags=re.M)
        text = re.sub(r"^name: (.+)$", rf"name: \1 {copy}", text, count=1, flags=re.M)
        (dest / f"{n + 1:03d}-{stem}-{copy}.yaml").write_text(text)
    return dest


def apply_once(env: dict[str, str], directory: Path) -> None:
    """Create the dashboards of `directory` in the running demo's Metabase (setup, not measured), without
    running each new card as `provision dashboards apply` does. In a process of its own: a process started
    later would inherit this one's peak memory (Linux keeps it across fork and exec)."""
    subprocess.run([sys.executable, __file__, "--apply-once", str(directory)], env=env, cwd=ROOT, check=True)


def _apply_here(directory: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from provisioner import dashboards
    from provisioner.config import Settings

    result = dashboards.apply(Settings.load(), [directory], run_cards=False, environ={})
    if not result.ok:
        raise SystemExit(f"applying {directory} failed:\n{result.describe()}")


def restart_metabase(env: dict[str, str]) -> None:
    """Stop the demo (its data kept) and start it again with `env`'s Metabase command."""
    run(["down"], env)
    run(["up"], env)


def _noop_plan(directory: Path, env: dict[str, str], runs: int) -> Run:
    measured = median_run(["dashboards", "plan", str(directory), "--json"], env, runs)
    if json.loads(measured.stdout)["has_changes"]:
        raise SystemExit(f"the plan of {directory} is not a no-op")
    return measured


def measure_plans(home: Path, metabase_url: str, runs: int, workdir: Path) -> dict[tuple[int, ...], Run]:
    """The no-op plan of each count of dashboards at each latency, against the running demo on `home`
    (keys: dashboards, latency in ms[, concurrency when not the default])."""
    directories = {
        5: DEMO_DASHBOARDS,
        100: scaled_dashboards(DEMO_DASHBOARDS, workdir / "dashboards-100", 100),
    }
    apply_once({**environment(home), "METABASE_URL": metabase_url}, directories[100])
    out: dict[tuple[int, ...], Run] = {}
    for latency_ms in LATENCIES_MS:
        env = {**environment(home, latency_ms), "METABASE_URL": metabase_url}
        if latency_ms:
            restart_metabase(env)
        for count in COUNTS:
            out[(count, latency_ms)] = _noop_plan(directories[count], env, runs)
    # The same reads one at a time, as before they were made in parallel (once: it takes a while).
    out[(100, LATENCIES_MS[-1], 1)] = _noop_plan(directories[100], {**env, "PROVISION_CONCURRENCY": "1"}, 1)
    restart_metabase({**environment(home), "METABASE_URL": metabase_url})  # as it was
    return out


def main(argv: list[str] | None = None) -> int:
    """Start a demo, measure the plans, print them; the demo is removed at the end."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each plan (the median is shown)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--apply-once", type=Path, help=argparse.SUPPRESS)  # apply_once's own process
    args = parser.parse_args(argv)
    if args.apply_once:
        _apply_here(args.apply_once)
        return 0
    with tempfile.TemporaryDirectory(prefix="provision-bench-") as tmp:
        home = Path(tmp) / "home"
        try:
            cold = run(["demo", "--json"], environment(home))
            plans = measure_plans(home, json.loads(cold.stdout)["metabase_url"], args.runs, Path(tmp))
        finally:
            run(["down", "--volumes"], environment(home))
    rows: list[dict[str, Any]] = [
        {"dashboards": key[0], "latency_ms": key[1], "concurrency": (*key[2:], 8)[0], **vars(measured)}
        | {"stdout": None}
        for key, measured in plans.items()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(
                f"no-op plan, {row['dashboards']:>3} dashboards, {row['latency_ms']:>3} ms, concurrency "
                f"{row['concurrency']}: {row['wall_s']:6.2f} s wall, {row['cpu_s']:.2f} s CPU, "
                f"{row['requests']} requests"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
