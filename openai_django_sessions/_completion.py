"""Running a write in a worker thread to its end, whatever cancellation the caller gets."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, TypeVar

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
    The wait is on the thread's own result, not only on the task that
    ``sync_to_async`` runs in: shutdown code that cancels every task
    (``for t in asyncio.all_tasks(): t.cancel()``) cancels that task too, but
    not the thread. If the work was cancelled before it began, it never runs
    and ``CancelledError`` is raised at once.
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
        except BaseException as exc:  # the helper raises it; ``result`` keeps it too
            result.set_exception(exc)
            raise
        result.set_result(value)
        return value

    helper = asyncio.ensure_future(sync_to_async(work)())
    try:
        # The common case: nothing is cancelled, and the helper's result is the
        # thread's. Shielded, so that a cancellation of the caller leaves it running.
        return await asyncio.shield(helper)
    except asyncio.CancelledError:
        # The caller was cancelled, or the helper was (and not the thread).
        pass
    return await _wait_for_thread(helper, result, start)


async def _wait_for_thread(
    helper: asyncio.Future[T], result: concurrent.futures.Future[T], start: _Start
) -> T:
    """After a cancellation: wait until the work has finished, or is known never to run."""
    task = asyncio.current_task()
    cancelled = task is not None and task.cancelling() > 0
    finished = asyncio.wrap_future(result)
    while not result.done():
        waiting: set[asyncio.Future[Any]] = {finished}
        if helper.done():
            with start.lock:
                never_ran = not start.started
                start.abandoned = never_ran
            if never_ran:
                if not helper.cancelled() and helper.exception() is not None:
                    raise helper.exception()  # type: ignore[misc]
                raise asyncio.CancelledError
        else:
            waiting.add(helper)
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            cancelled = True
    # Retrieved, so that asyncio does not log them as lost.
    for future in (helper, finished):
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
    if cancelled:
        raise asyncio.CancelledError
    return result.result()
