"""Benchmark of the tool itself (not a test): the local runtime with the fake Metabase as a process.

Reports the wall time of a cold `provision demo` and of a no-op re-run, the HTTP requests a
no-op re-run sends (counted in-process, as the fake process logs nothing), `provision --help`
start-up time, and the peak memory of the `provision` process. The fake answers at once, but the
tool still polls health and sync at Metabase's intervals, so wall times include those waits; the
CPU seconds are the tool's own work: seeding, planning, HTTP round trips, Python start-up.

    .venv/bin/python benchmarks/demo_bench.py [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
PROVISION = [sys.executable, "-m", "provisioner"]
PYTHON = shlex.quote(sys.executable)
FAKE_COMMAND = f"{PYTHON} -m tests.fake_metabase --port {{port}} --state-file {{state_dir}}/fake-state.json"


def _environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METABASE_", "DATABASE_", "PROVISION_"))}
    env.update(PROVISION_HOME=str(home), PYTHONPATH=str(ROOT), PROVISION_RUNTIME="local")
    env["METABASE_COMMAND"] = FAKE_COMMAND
    return env


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(args: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    """(wall seconds, result); the CPU seconds of the run are kept in `_run.cpu_s`."""
    started, cpu_before = time.perf_counter(), _cpu_s()
    done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    _run.cpu_s = _cpu_s() - cpu_before  # type: ignore[attr-defined]
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"{shlex.join(args)} failed with exit {done.returncode}")
    return elapsed, done


# What the target "at most 2 + dashboards + models requests beyond health and login" leaves out: the health
# poll, and the login: setup state and version (session properties), the key or session check.
_HEALTH_AND_LOGIN = ("/api/health", "/api/session/properties", "/api/session", "/api/user/current")


def _count_noop_requests(env: dict[str, str]) -> tuple[list[str], bool]:
    """(the paths requested, changed) of one more `demo` run in this process, against the running fake."""
    import requests

    sys.path.insert(0, str(ROOT))
    from provisioner.config import Settings
    from provisioner.demo import run_demo
    from provisioner.stack import select_runtime

    settings = Settings.load(env, cwd=ROOT)
    original = requests.Session.request
    sent: list[str] = []

    def counting(self: requests.Session, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(f"{method} {urlsplit(url).path}")
        return original(self, method, url, *args, **kwargs)

    requests.Session.request = counting  # type: ignore[method-assign]
    try:
        result = run_demo(settings, runtime=select_runtime(settings))
    finally:
        requests.Session.request = original  # type: ignore[method-assign]
    return sent, result.changed


def bench(runs: int) -> dict[str, Any]:
    """Measure everything once (the --help start-up `runs` times) and return the numbers."""
    with tempfile.TemporaryDirectory(prefix="provision-bench-") as tmp:
        home = Path(tmp) / "home"
        env = _environment(home)
        try:
            cold_s, cold = _run([*PROVISION, "demo", "--json"], env)
            cold_cpu_s = _run.cpu_s  # type: ignore[attr-defined]
            rerun_s, rerun = _run([*PROVISION, "demo", "--json"], env)
            rerun_cpu_s = _run.cpu_s  # type: ignore[attr-defined]
            rerun_paths, counted_changed = _count_noop_requests(env)
        finally:
            subprocess.run(
                [*PROVISION, "down", "--volumes"], env=env, cwd=ROOT, capture_output=True, check=False
            )
        # ru_maxrss of waited-for children: the largest `provision` process (KiB on Linux).
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        help_s = [_run([*PROVISION, "--help"], env)[0] for _ in range(runs)]
    cold_result = json.loads(cold.stdout)
    rerun_result = json.loads(rerun.stdout)
    dashboards = len(rerun_result.get("dashboards", []))
    models = sum(p.read_text().count("    type: model\n") for p in (ROOT / "dashboards").glob("*.yaml"))
    beyond = [p for p in rerun_paths if p.split(" ", 1)[1] not in _HEALTH_AND_LOGIN]
    return {
        "cold_demo_s": round(cold_s, 2),
        # CPU of the provision process (and pg_ctl/initdb it waits for): the tool's own work, without
        # the time it spends waiting for Metabase to start and sync.
        "cold_demo_cpu_s": round(cold_cpu_s, 2),
        "noop_rerun_cpu_s": round(rerun_cpu_s, 2),
        "cold_demo_steps_s": {s["name"]: s["seconds"] for s in cold_result.get("steps", [])},
        "noop_rerun_s": round(rerun_s, 2),
        "noop_rerun_changed": bool(rerun_result.get("changed")) or counted_changed,
        "noop_rerun_requests": len(rerun_paths),
        "noop_rerun_requests_beyond_health_and_login": len(beyond),
        # Each dashboard comes with its questions; each model is kept on no dashboard and read by id.
        "noop_rerun_request_target": 2 + dashboards + models,
        "noop_rerun_paths": rerun_paths,
        "help_startup_s_median": round(statistics.median(help_s), 3),
        "help_startup_s_min": round(min(help_s), 3),
        "peak_rss_mib": round(peak_kib / 1024, 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the report; exit 1 if the re-run changed anything."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="how often to time `provision --help`")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args(argv)
    report = bench(args.runs)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print("provision demo, local runtime, fake Metabase as a process")
        print(
            f"  cold demo             {report['cold_demo_s']:8.2f} s  "
            f"(tool's own CPU {report['cold_demo_cpu_s']:.2f} s; the rest is waiting for Metabase)"
        )
        for step, seconds in report["cold_demo_steps_s"].items():
            print(f"    {step:<19} {seconds:8.2f} s")
        print(
            f"  no-op re-run          {report['noop_rerun_s']:8.2f} s  "
            f"(CPU {report['noop_rerun_cpu_s']:.2f} s, {report['noop_rerun_requests']} requests, "
            f"{report['noop_rerun_requests_beyond_health_and_login']} beyond health and login; "
            f"target at most {report['noop_rerun_request_target']})"
        )
        print(f"  provision --help      {report['help_startup_s_median']:8.3f} s  (median of {args.runs})")
        print(f"  peak memory           {report['peak_rss_mib']:8.1f} MiB")
    return 0 if report["noop_rerun_changed"] is False else 1


if __name__ == "__main__":
    sys.exit(main())
