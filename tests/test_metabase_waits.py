"""How long the tool waits for Metabase: long after starting it, briefly when it should be running."""

from __future__ import annotations

import pytest
import responses

from provisioner.config import Settings
from provisioner.errors import MetabaseUnreachable
from provisioner.metabase.setup import RUNNING_HEALTH_TIMEOUT_S, open_client, prepare_metabase
from provisioner.progress import RecordingProgress

URL = "http://mb.test"


class FakeClock:
    """A clock that advances only when the code sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def starting_forever() -> responses.RequestsMock:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.get(f"{URL}/api/health", json={"status": "initializing", "progress": 0.3}, status=503)
        yield mocked


def _settings(tmp_path) -> Settings:
    return Settings.load({}, home=tmp_path, metabase_url=URL, health_timeout_s=600)


def test_commands_on_a_running_metabase_give_up_after_a_minute(starting_forever, tmp_path) -> None:
    clock = FakeClock()
    with pytest.raises(MetabaseUnreachable, match="did not become healthy within 60 s"):
        open_client(_settings(tmp_path), progress=RecordingProgress(), clock=clock, sleep=clock.sleep)
    assert RUNNING_HEALTH_TIMEOUT_S <= clock.now < RUNNING_HEALTH_TIMEOUT_S + 5


def test_setup_waits_as_long_as_a_first_start_needs(starting_forever, tmp_path) -> None:
    clock = FakeClock()
    with pytest.raises(MetabaseUnreachable, match="within 600 s"):
        prepare_metabase(_settings(tmp_path), progress=RecordingProgress(), clock=clock, sleep=clock.sleep)
    assert 600 <= clock.now < 605


def test_a_started_metabase_without_its_app_database_is_reported_as_such_not_as_starting(tmp_path) -> None:
    clock = FakeClock()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.get(f"{URL}/api/health", json={"status": "Unable to get app-db connection"}, status=503)
        with pytest.raises(MetabaseUnreachable) as caught:
            open_client(_settings(tmp_path), progress=RecordingProgress(), clock=clock, sleep=clock.sleep)
    assert "last: unhealthy (Unable to get app-db connection)" in caught.value.message
