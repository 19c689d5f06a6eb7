"""Independent calls to Metabase made together on a bounded thread pool, their results in the order given.

Nearly all of a plan's time against a distant Metabase is spent waiting for answers; reads that do not
depend on each other (the dashboards, the items of each collection, the cards) can wait together. The
result is what running the calls one by one would give: values in the order of the items, and, when
several fail, the error of the first item in that order. Calls start in order, so when one fails, the
ones before it have all started; those not started yet never are, and every call started has ended
before the error is raised (no request is left running behind it). With a concurrency of 1 the calls
are made one by one in the calling thread, as if this module did not exist.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Done(Generic[R]):
    """One call that ran: its value, or the exception it raised."""

    value: R | None = None
    error: Exception | None = None


def run_each(fn: Callable[[T], R], items: Sequence[T], concurrency: int) -> list[Done[R] | None]:
    """`fn(item)` for every item, at most `concurrency` at once; what each call gave, in the items' order.

    After a call fails no further call starts: the items never called are None (a suffix of the list).
    """
    if concurrency <= 1 or len(items) <= 1:
        done: list[Done[R] | None] = []
        for item in items:
            try:
                done.append(Done(fn(item)))
            except Exception as exc:
                done.append(Done(error=exc))
                break
        return done + [None] * (len(items) - len(done))
    pool = ThreadPoolExecutor(max_workers=min(concurrency, len(items)), thread_name_prefix="provision")
    try:
        futures = [pool.submit(fn, item) for item in items]
        wait(futures, return_when=FIRST_EXCEPTION)
    finally:
        # Cancels what has not started (after a failure, or on Ctrl-C) and waits for what has.
        pool.shutdown(wait=True, cancel_futures=True)
    return [_done(f) for f in futures]


def _done(future: Future[R]) -> Done[R] | None:
    if future.cancelled():
        return None
    error = future.exception()
    if error is None:
        return Done(future.result())
    if not isinstance(error, Exception):  # KeyboardInterrupt, SystemExit: never swallowed
        raise error
    return Done(error=error)


def map_ordered(fn: Callable[[T], R], items: Sequence[T], concurrency: int) -> list[R]:
    """`fn(item)` for every item, at most `concurrency` at once, in the items' order; raises the error of
    the first item (in that order) whose call failed, once every call started has ended."""
    results: list[R] = []
    for done in run_each(fn, items, concurrency):
        if done is None:
            break  # only after a failure, which raised already
        if done.error is not None:
            raise done.error
        results.append(done.value)  # type: ignore[arg-type]
    return results
