"""Check a provisioned demo through Metabase's API: every YAML dashboard exists, every card's query completes.

Used by scripts/e2e-docker.sh after `provision demo` against a real Metabase; unit-tested against the
fake Metabase. Reads the API key `provision` stored in <home>/credentials.json unless --api-key is given.

    python scripts/e2e_check.py --home .provision [--metabase-url URL] [--expect-version v0.65.x]
    python scripts/e2e_check.py --home .provision --print-version    # the exact version, e.g. v0.65.4
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 120  # a card's first query on a cold Metabase can take a while


@dataclass
class CardOutcome:
    """One dashboard card's query: its status and, when it failed, the error."""

    dashboard: str
    card_id: int
    card: str
    status: str
    row_count: int | None = None
    error: str | None = None


@dataclass
class E2EReport:
    """What the API showed: the version, dashboards found and missing, and every card's query outcome."""

    version: str | None
    dashboards_found: list[str] = field(default_factory=list)
    dashboards_missing: list[str] = field(default_factory=list)
    cards: list[CardOutcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            not self.problems
            and not self.dashboards_missing
            and all(c.status == "completed" for c in self.cards)
        )


class Api:
    """The few Metabase endpoints the check needs, authenticated with an API key."""

    def __init__(self, url: str, api_key: str) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update({"X-API-Key": api_key, "Accept": "application/json"})

    def get(self, path: str, **params: Any) -> Any:
        response = self.session.get(f"{self.url}{path}", params=params or None, timeout=TIMEOUT_S)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict[str, Any] | None = None) -> requests.Response:
        return self.session.post(f"{self.url}{path}", json=body or {}, timeout=TIMEOUT_S)


def expected_dashboards(dashboards_dir: Path) -> list[str]:
    """The names of the dashboards the YAML files define."""
    sys.path.insert(0, str(ROOT))
    from provisioner.spec import load_paths
    from provisioner.spec.models import DashboardSpec

    return [f.spec.name for f in load_paths([dashboards_dir]) if isinstance(f.spec, DashboardSpec)]


def _all_dashboards(api: Api) -> dict[str, int]:
    """Every non-archived dashboard's name → id, across all collections."""
    found: dict[str, int] = {}
    collections = ["root"] + [
        c["id"] for c in api.get("/api/collection") if isinstance(c.get("id"), int) and not c.get("archived")
    ]
    for collection_id in collections:
        items = api.get(f"/api/collection/{collection_id}/items", models="dashboard")
        rows = items["data"] if isinstance(items, dict) else items
        for item in rows:
            if item.get("model") == "dashboard" and not item.get("archived"):
                found.setdefault(item["name"], item["id"])
    return found


def running_version(api: Api) -> str | None:
    """The exact version tag Metabase reports in /api/session/properties (e.g. v0.65.4), or None."""
    tag = (api.get("/api/session/properties").get("version") or {}).get("tag")
    return str(tag) if tag else None


def version_matches(version: str | None, expected: str) -> bool:
    """Whether `version` (v0.65.4) is what an image tag asks for: v0.65.x any 0.65, v0.65.4.x only that."""
    wanted = expected.removesuffix(".x")
    return version is not None and (version == wanted or version.startswith(wanted + "."))


def check_demo(url: str, api_key: str, expected: list[str], expect_version: str | None = None) -> E2EReport:
    """The report of checking every expected dashboard and its cards' queries at `url`."""
    api = Api(url, api_key)
    version = running_version(api)
    report = E2EReport(version=version)
    if expect_version and not version_matches(version, expect_version):
        report.problems.append(f"Metabase reports version {version}, expected {expect_version}")
    present = _all_dashboards(api)
    for name in expected:
        if name not in present:
            report.dashboards_missing.append(name)
            continue
        report.dashboards_found.append(name)
        dashboard = api.get(f"/api/dashboard/{present[name]}")
        if not dashboard.get("dashcards"):
            report.problems.append(f"dashboard {name!r} has no cards")
        for dashcard in dashboard.get("dashcards") or []:
            card_id = dashcard.get("card_id")
            if card_id is None:  # text and heading cards run no query
                continue
            report.cards.append(_run_card(api, name, card_id, (dashcard.get("card") or {}).get("name", "?")))
    return report


def _run_card(api: Api, dashboard: str, card_id: int, card_name: str) -> CardOutcome:
    response = api.post(f"/api/card/{card_id}/query")
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code not in (200, 202):
        status, error = "failed", f"HTTP {response.status_code}: {response.text[:200]}"
    else:
        status, error = str(body.get("status", "unknown")), body.get("error")
    return CardOutcome(
        dashboard=dashboard,
        card_id=card_id,
        card=card_name,
        status=status,
        row_count=body.get("row_count"),
        error=str(error)[:300] if error else None,
    )


def api_key_from(home: Path, url: str | None) -> tuple[str, str]:
    """(metabase_url, api_key) stored by `provision` in <home>/credentials.json; SystemExit if absent."""
    try:
        section = json.loads((home / "credentials.json").read_text()).get("api_key") or {}
    except FileNotFoundError:
        section = {}
    if not section.get("key"):
        raise SystemExit(f"no API key in {home / 'credentials.json'}: run `provision demo` first")
    return (url or section["metabase_url"]), section["key"]


def render(report: E2EReport) -> str:
    """The report for people: one line per dashboard and failing card."""
    lines = [f"Metabase {report.version}"]
    lines += [f"  dashboard ok: {name}" for name in report.dashboards_found]
    lines += [f"  dashboard MISSING: {name}" for name in report.dashboards_missing]
    completed = sum(c.status == "completed" for c in report.cards)
    lines.append(f"  cards: {completed}/{len(report.cards)} queries completed")
    for card in report.cards:
        if card.status != "completed":
            lines.append(f"  card FAILED: {card.dashboard} / {card.card} (id {card.card_id}): {card.error}")
    lines += [f"  problem: {p}" for p in report.problems]
    lines.append("E2E CHECK PASSED" if report.ok else "E2E CHECK FAILED")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the check; exit status 0 when everything passed, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path(".provision"), help="the tool's state directory")
    parser.add_argument("--metabase-url", help="default: the URL stored with the API key")
    parser.add_argument("--api-key", help="default: the key stored in <home>/credentials.json")
    parser.add_argument("--dashboards", type=Path, default=ROOT / "dashboards", help="the YAML folder")
    parser.add_argument(
        "--expect-version", help="the image tag that ran, e.g. v0.65.x (any patch of 0.65) or v0.65.4.x"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--print-version", action="store_true", help="only print the exact version Metabase reports"
    )
    args = parser.parse_args(argv)
    if args.api_key:
        url, key = args.metabase_url, args.api_key
        if not url:
            parser.error("--api-key needs --metabase-url")
    else:
        url, key = api_key_from(args.home, args.metabase_url)
    if args.print_version:
        version = running_version(Api(url, key))
        print(version or "unknown")
        return 0 if version else 1
    report = check_demo(url, key, expected_dashboards(args.dashboards), args.expect_version)
    if args.json:
        print(json.dumps({"ok": report.ok, **asdict(report)}, indent=2))
    else:
        print(render(report))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
