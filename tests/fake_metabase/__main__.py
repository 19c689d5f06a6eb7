"""Run the fake Metabase as a separate process: `python -m tests.fake_metabase --port P [--state-file F]`.

`--latency-ms N` makes every answer wait N ms, as a Metabase far away on the network would.

Serves until killed. With `--state-file`, state is loaded at start and saved atomically after every mutating
request, so a killed and restarted fake keeps its data like a real Metabase with its application DB.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from tests.fake_metabase.server import FakeMetabase


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m tests.fake_metabase", description=__doc__)
    parser.add_argument("--port", type=int, default=3000, help="TCP port on 127.0.0.1 (0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--state-file", type=Path, default=None, help="JSON file keeping the state across runs"
    )
    parser.add_argument("--version", default="v0.65.4", help="version tag to report, e.g. v0.61.9")
    parser.add_argument("--init-polls", type=int, default=0, help="health polls answered 503 before ready")
    parser.add_argument(
        "--sync-polls", type=int, default=1, help="GETs of a new database before sync completes"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0, help="wait this long before answering each request"
    )
    args = parser.parse_args(argv)
    fake = FakeMetabase(
        version=args.version,
        init_polls=args.init_polls,
        sync_polls=args.sync_polls,
        state_file=args.state_file,
        host=args.host,
        port=args.port,
        latency_ms=args.latency_ms,
    )
    fake.start()
    # The URL only: ids, tokens and passwords never go to the console.
    print(f"fake Metabase {args.version} listening on {fake.url}", flush=True)
    stop = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    while not stop:
        signal.pause()
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
