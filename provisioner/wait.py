"""Waiting with a deadline: the one polling loop (Metabase health and sync, a process, a server starting).

The clock and the sleep are passed in by the caller, so tests run every wait instantly and exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], None]


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout_s: float,
    poll_s: float,
    clock: Clock,
    sleep: Sleep,
) -> T | None:
    """The first result of `check` that is not None, polling every `poll_s`; None once `timeout_s` has passed.

    `check` runs at once, then after each sleep; the wait gives up after the first check made at or past
    the deadline. An exception from `check` ends the wait at once (raise when waiting cannot help).
    """
    deadline = clock() + timeout_s
    while True:
        result = check()
        if result is not None:
            return result
        if clock() >= deadline:
            return None
        sleep(poll_s)
