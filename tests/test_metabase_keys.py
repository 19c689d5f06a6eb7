"""The tool's API key: one per checkout, never created by read-only commands."""

from __future__ import annotations

from provisioner.config import Settings
from provisioner.metabase.setup import open_client, setup_metabase
from provisioner.progress import RecordingProgress
from tests.credentials import stored_section

ADMIN = {"METABASE_ADMIN_EMAIL": "admin@example.com", "METABASE_ADMIN_PASSWORD": "Fake-Admin-Pass-1"}


def test_read_only_commands_log_in_without_creating_an_api_key(fake_metabase, tmp_path) -> None:
    settings = Settings.load(ADMIN, home=tmp_path, metabase_url=fake_metabase.url)
    fake_metabase.admin_session()  # set up by someone else; this home has no API key
    fake_metabase.clear_requests()

    authed = open_client(settings, progress=RecordingProgress(), read_only=True)
    authed.client.close()

    writes = [(r.method, r.path) for r in fake_metabase.mutating_requests()]
    assert writes == [("POST", "/api/session")]
    assert stored_section(tmp_path, "api_key") is None

    authed = open_client(settings, progress=RecordingProgress())
    authed.client.close()
    assert ("POST", "/api/api-key") in [(r.method, r.path) for r in fake_metabase.mutating_requests()]


def test_a_second_checkout_gets_its_own_key_and_leaves_the_first_one_working(fake_metabase, tmp_path) -> None:
    first = Settings.load(ADMIN, home=tmp_path / "ann", metabase_url=fake_metabase.url)
    second = Settings.load(ADMIN, home=tmp_path / "ci", metabase_url=fake_metabase.url)
    setup_metabase(first, progress=RecordingProgress())
    setup_metabase(second, progress=RecordingProgress())

    names = {k["name"] for k in fake_metabase.state.api_keys.values()}
    assert len(names) == 2 and all(n.startswith("metabase-provisioner (") for n in names)
    fake_metabase.clear_requests()
    authed = open_client(first, progress=RecordingProgress())  # the first key still works: no login
    authed.client.close()
    assert authed.auth == "api_key"
    assert [r.path for r in fake_metabase.mutating_requests()] == []
