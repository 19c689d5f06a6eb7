"""How long the tool waits for Metabase: long after starting it, briefly when it should be running."""

from __future__ import annotations

import pytest
import responses

from provisioner.config import Settings
from provisioner.errors import MetabaseRefused, MetabaseUnreachable
from provisioner.metabase.setup import (
    RUNNING_HEALTH_TIMEOUT_S,
    open_client,
    prepare_metabase,
    setup_metabase,
)
from provisioner.progress import RecordingProgress
from provisioner.runtime.postgres import free_port

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


def test_a_refused_connection_fails_at_once_for_commands_that_did_not_start_metabase(tmp_path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    settings = Settings.load({}, home=tmp_path, metabase_url=nobody, health_timeout_s=600)
    for opens in (open_client, setup_metabase):
        clock, progress = FakeClock(), RecordingProgress()
        with pytest.raises(MetabaseRefused) as caught:
            opens(settings, progress=progress, clock=clock, sleep=clock.sleep)
        assert clock.now == 0 and "Waiting for Metabase" not in progress.text
        message = caught.value.message
        assert message.startswith(f"nothing answers at {nobody}: the connection was refused")
        assert "HTTPConnectionPool" not in message and "Max retries" not in message
        assert "provision up" in (caught.value.hint or "") and "--metabase-url" in (caught.value.hint or "")


def test_a_metabase_the_demo_just_started_is_waited_for_while_it_refuses(tmp_path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    settings = Settings.load({}, home=tmp_path, metabase_url=nobody, health_timeout_s=30)
    clock, progress = FakeClock(), RecordingProgress()
    with pytest.raises(MetabaseUnreachable, match="did not become healthy within 30 s"):
        prepare_metabase(settings, progress=progress, clock=clock, sleep=clock.sleep, just_started=True)
    assert clock.now >= 30 and "not answering yet" in progress.text


def test_a_host_that_does_not_resolve_is_named_and_not_waited_for(tmp_path) -> None:
    settings = Settings.load({}, home=tmp_path, metabase_url="http://no-such-host.invalid:3000")
    clock = FakeClock()
    with pytest.raises(MetabaseRefused, match="its name does not resolve"):
        open_client(settings, progress=RecordingProgress(), clock=clock, sleep=clock.sleep)
    assert clock.now == 0
