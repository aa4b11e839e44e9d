"""Running a write in a worker thread to its end, whatever cancellation the caller gets."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import TypeVar

from asgiref.sync import sync_to_async

T = TypeVar("T")


class _Start:
    """Whether the work began in its thread, or was given up before it could."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = False
        self.abandoned = False


async def run_to_completion(func: Callable[[], T]) -> T:
    """Run ``func`` through ``sync_to_async`` and wait for it to finish, even if cancelled.

    Once ``CancelledError`` reaches the caller, ``func`` has returned or
    raised (its transaction committed or rolled back), never still running.
    While nothing is cancelled this is one ``await`` of ``sync_to_async``,
    nothing more; a cancellation (of the caller, or of every task, as
    shutdown code does) makes it wait on the thread's own result instead.
    If the work was cancelled before it began, it never runs and
    ``CancelledError`` is raised at once.
    """
    result: concurrent.futures.Future[T] = concurrent.futures.Future()
    start = _Start()

    def work() -> T:
        with start.lock:
            if start.abandoned:
                raise asyncio.CancelledError
            start.started = True
        try:
            value = func()
        except BaseException as exc:  # sync_to_async raises it; ``result`` keeps it too
            result.set_exception(exc)
            raise
        result.set_result(value)
        return value

    try:
        # The common case costs no task, shield or callback of ours: a
        # cancellation leaves the thread running, and is handled below.
        return await sync_to_async(work)()
    except asyncio.CancelledError:
        pass
    return await _wait_for_thread(result, start)


async def _wait_for_thread(result: concurrent.futures.Future[T], start: _Start) -> T:
    """After a cancellation: wait until the work has finished, or is known never to run."""
    task = asyncio.current_task()
    cancelled = task is not None and task.cancelling() > 0
    with start.lock:
        # sync_to_async gave up its call: if the thread has not begun the
        # work by now, it never will (``work`` sees ``abandoned``).
        never_ran = not start.started
        start.abandoned = never_ran
    if never_ran:
        raise asyncio.CancelledError
    finished = asyncio.wrap_future(result)
    while not result.done():
        try:
            await asyncio.wait({finished})
        except asyncio.CancelledError:
            cancelled = True
    # Retrieved, so that asyncio does not log it as lost.
    finished.add_done_callback(lambda f: f.cancelled() or f.exception())
    if cancelled:
        raise asyncio.CancelledError
    return result.result()
