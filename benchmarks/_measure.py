"""What the benchmarks share: the environment of a benchmark demo, and one measured run of `provision`.

Each run is a process of its own, reaped with `os.wait4` for its own CPU seconds and peak memory (those of
the `provision` process and what it waits for, e.g. `pg_ctl`; never the fake Metabase's, which runs apart),
and made with `-v`, whose one line per HTTP request on stderr counts the requests sent.
"""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROVISION = [sys.executable, "-m", "provisioner"]
FAKE_COMMAND = (
    f"{shlex.quote(sys.executable)} -m tests.fake_metabase --port {{port}} "
    "--state-file {state_dir}/fake-state.json"
)


def environment(home: Path, latency_ms: int = 0) -> dict[str, str]:
    """The environment of a benchmark run: the local runtime on `home`, the fake Metabase as a process
    answering after `latency_ms`; the developer's own settings left out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METABASE_", "DATABASE_", "PROVISION_"))}
    # Bytecode caches as after `pip install`: the tool is measured, not Python compiling it.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(PROVISION_HOME=str(home), PYTHONPATH=str(ROOT), PROVISION_RUNTIME="local")
    env["METABASE_COMMAND"] = FAKE_COMMAND + (f" --latency-ms {latency_ms}" if latency_ms else "")
    return env


@dataclass(frozen=True)
class Run:
    """One `provision` process: wall and CPU seconds, peak memory, requests sent, what it printed."""

    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    requests: int
    stdout: str


def run(args: list[str], env: dict[str, str]) -> Run:
    """Run `provision -v ARGS` once; raises SystemExit when it fails."""
    argv = [*PROVISION, "-v", *args]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=err, text=True)
        _pid, status, usage = os.wait4(process.pid, 0)
        wall_s = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode not in (0, 2):  # 2: a plan with changes, reported by the caller
        sys.stderr.write(stderr)
        raise SystemExit(f"{shlex.join(argv)} failed with exit {process.returncode}")
    return Run(
        wall_s=wall_s,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mib=usage.ru_maxrss / 1024,  # KiB on Linux
        requests=sum(1 for line in stderr.splitlines() if line.startswith("  http: ")),
        stdout=stdout,
    )


def median_run(args: list[str], env: dict[str, str], runs: int) -> Run:
    """`runs` runs of `provision -v ARGS`, summed up by the median of each figure."""
    done = [run(args, env) for _ in range(runs)]
    return Run(
        wall_s=statistics.median(r.wall_s for r in done),
        cpu_s=statistics.median(r.cpu_s for r in done),
        peak_rss_mib=max(r.peak_rss_mib for r in done),
        requests=done[-1].requests,
        stdout=done[-1].stdout,
    )
