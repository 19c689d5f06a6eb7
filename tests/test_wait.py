"""wait_until: the one polling loop, driven by an injected clock and sleep."""

from __future__ import annotations

import pytest

from provisioner.wait import wait_until


class FakeClock:
    """Time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_returns_the_first_result_without_sleeping_when_ready_at_once() -> None:
    clock = FakeClock()
    assert wait_until(lambda: "ready", timeout_s=10, poll_s=1, clock=clock, sleep=clock.sleep) == "ready"
    assert clock.sleeps == []


def test_polls_every_poll_s_until_the_check_answers() -> None:
    clock = FakeClock()
    answers = iter([None, None, 42])
    assert wait_until(lambda: next(answers), timeout_s=10, poll_s=2, clock=clock, sleep=clock.sleep) == 42
    assert clock.sleeps == [2, 2]


def test_gives_up_with_none_after_a_last_check_at_the_deadline() -> None:
    clock = FakeClock()
    checked_at: list[float] = []

    def never() -> None:
        checked_at.append(clock.now)

    assert wait_until(never, timeout_s=5, poll_s=2, clock=clock, sleep=clock.sleep) is None
    assert checked_at == [0, 2, 4, 6]


def test_a_check_that_raises_ends_the_wait_at_once() -> None:
    clock = FakeClock()

    def broken() -> None:
        raise ValueError("cannot get better")

    with pytest.raises(ValueError, match="cannot get better"):
        wait_until(broken, timeout_s=60, poll_s=1, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == []


def test_false_is_an_answer_only_none_means_keep_waiting() -> None:
    clock = FakeClock()
    assert wait_until(lambda: False, timeout_s=5, poll_s=1, clock=clock, sleep=clock.sleep) is False
