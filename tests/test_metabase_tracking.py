"""Anonymous tracking: off after the tool's setup, read back; the fake's /api/setting answers as Metabase."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
import responses

from provisioner.config import Settings
from provisioner.errors import MetabaseError
from provisioner.metabase.setup import TRACKING_SETTING, setup_metabase
from provisioner.progress import RecordingProgress
from tests.credentials import store_credentials
from tests.fake_metabase import handlers_auth
from tests.fake_metabase.handlers import FORBIDDEN
from tests.fake_metabase.handlers_setting import effective_value
from tests.fake_metabase.server import FakeMetabase

SETTING_PATH = f"/api/setting/{TRACKING_SETTING}"


def _properties(fake: FakeMetabase) -> dict[str, object]:
    answer: dict[str, object] = requests.get(f"{fake.url}/api/session/properties", timeout=10).json()
    return answer


def _setup(fake: FakeMetabase, home: Path, **env: str) -> bool:
    settings = Settings.load({"METABASE_URL": fake.url, **env}, home=home, http_timeout_s=10)
    return setup_metabase(settings, progress=RecordingProgress(), sleep=lambda _: None).turned_off_tracking


# --- the fake, as Metabase answers -------------------------------------------------------------


def test_a_fresh_metabase_tracks_by_default_and_says_so_publicly(fake_metabase: FakeMetabase) -> None:
    assert _properties(fake_metabase)[TRACKING_SETTING] is True


def test_an_admin_turns_tracking_off_with_a_204_and_reads_it_back(
    fake_metabase: FakeMetabase, fake_admin: requests.Session
) -> None:
    assert fake_admin.get(f"{fake_metabase.url}{SETTING_PATH}").json() is None  # a default reads as null
    answer = fake_admin.put(f"{fake_metabase.url}{SETTING_PATH}", json={"value": False})
    assert (answer.status_code, answer.content) == (204, b"")
    assert fake_admin.get(f"{fake_metabase.url}{SETTING_PATH}").json() is False
    assert _properties(fake_metabase)[TRACKING_SETTING] is False


@pytest.mark.parametrize(("value", "effective"), [("FALSE", False), ("true", True), (None, True)])
def test_a_boolean_setting_takes_true_false_or_null_which_restores_the_default(
    fake_metabase: FakeMetabase, fake_admin: requests.Session, value: object, effective: bool
) -> None:
    fake_admin.put(f"{fake_metabase.url}{SETTING_PATH}", json={"value": False})
    answer = fake_admin.put(f"{fake_metabase.url}{SETTING_PATH}", json={"value": value})
    assert answer.status_code == 204
    assert effective_value(fake_metabase.state, TRACKING_SETTING) is effective


def test_a_value_that_is_no_boolean_is_a_500_and_changes_nothing(
    fake_metabase: FakeMetabase, fake_admin: requests.Session
) -> None:
    answer = fake_admin.put(f"{fake_metabase.url}{SETTING_PATH}", json={"value": "maybe"})
    assert answer.status_code == 500
    assert effective_value(fake_metabase.state, TRACKING_SETTING) is True


def test_an_unknown_setting_is_a_500_for_an_admin(
    fake_metabase: FakeMetabase, fake_admin: requests.Session
) -> None:
    answer = fake_admin.put(f"{fake_metabase.url}/api/setting/no-such-setting", json={"value": False})
    assert answer.status_code == 500 and "Unknown setting" in answer.json()["message"]


@pytest.mark.parametrize("path", [SETTING_PATH, "/api/setting/no-such-setting"])
@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_anyone_but_a_superuser_gets_the_generic_403(
    fake_metabase: FakeMetabase, method: str, path: str
) -> None:
    fake_metabase.admin_session()  # set up, so people can log in
    handlers_auth.create_user(
        fake_metabase.state,
        email="rasta@x.io",
        first_name="R",
        last_name="T",
        password="Pa55-word-9",
        superuser=False,
    )
    login = requests.post(
        f"{fake_metabase.url}/api/session",
        json={"username": "rasta@x.io", "password": "Pa55-word-9"},
        timeout=10,
    )
    headers = {"X-Metabase-Session": login.json()["id"]}
    answer = requests.request(
        method, f"{fake_metabase.url}{path}", json={"value": False}, headers=headers, timeout=10
    )
    assert (answer.status_code, answer.text) == (403, FORBIDDEN)
    assert effective_value(fake_metabase.state, TRACKING_SETTING) is True


def test_without_a_session_the_setting_answers_401(fake_metabase: FakeMetabase) -> None:
    assert (
        requests.put(f"{fake_metabase.url}{SETTING_PATH}", json={"value": False}, timeout=10).status_code
        == 401
    )


# --- the flow ----------------------------------------------------------------------------------


def test_setup_turns_tracking_off_then_never_touches_it_again(
    fake_metabase: FakeMetabase, tmp_path: Path
) -> None:
    assert _setup(fake_metabase, tmp_path) is True
    assert _properties(fake_metabase)[TRACKING_SETTING] is False
    [put] = [r for r in fake_metabase.mutating_requests() if r.path == SETTING_PATH]
    assert (put.method, put.json) == ("PUT", {"value": False})
    [setup] = [r for r in fake_metabase.requests if r.path == "/api/setup"]
    assert "allow_tracking" not in setup.json["prefs"]

    fake_metabase.clear_requests()
    assert _setup(fake_metabase, tmp_path) is False
    assert fake_metabase.mutating_requests() == []


def test_a_metabase_someone_else_set_up_keeps_its_tracking_choice(
    fake_metabase: FakeMetabase, tmp_path: Path
) -> None:
    fake_metabase.admin_session(email="owner@x.io", password="Owner-Pa55-1")
    turned_off = _setup(
        fake_metabase, tmp_path, METABASE_ADMIN_EMAIL="owner@x.io", METABASE_ADMIN_PASSWORD="Owner-Pa55-1"
    )
    assert turned_off is False
    assert _properties(fake_metabase)[TRACKING_SETTING] is True
    assert SETTING_PATH not in [r.path for r in fake_metabase.mutating_requests()]


@responses.activate
def test_a_metabase_that_keeps_tracking_on_is_an_error_naming_the_setting(tmp_path: Path) -> None:
    url = "http://mb.test"
    responses.get(f"{url}/api/health", json={"status": "ok"})
    version = {"tag": "v0.65.4"}
    responses.get(
        f"{url}/api/session/properties",
        json={"has-user-setup": True, "version": version, "anon-tracking-enabled": True},
    )
    responses.get(
        f"{url}/api/user/current", json={"id": 1, "email": "admin@demo.local", "is_superuser": True}
    )
    responses.put(f"{url}{SETTING_PATH}", status=204)  # accepted, but MB_ANON_TRACKING_ENABLED=true wins
    store_credentials(
        tmp_path,
        admin={"metabase_url": url, "email": "admin@demo.local", "password": "Pa55-w0rd-x"},
        api_key={"metabase_url": url, "key": "mb_0123456789abcdef", "id": 1, "name": "k"},
    )
    settings = Settings.load({"METABASE_URL": url}, home=tmp_path, http_timeout_s=5)
    with pytest.raises(MetabaseError) as caught:
        setup_metabase(settings, progress=RecordingProgress(), sleep=lambda _: None)
    assert TRACKING_SETTING in caught.value.message and caught.value.exit_code == 4
    assert "MB_ANON_TRACKING_ENABLED" in (caught.value.hint or "")
