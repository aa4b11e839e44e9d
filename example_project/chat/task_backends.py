"""A ``django.tasks`` backend that runs each task in a thread of this process.

Django 6 ships ``ImmediateBackend`` (runs the task inside ``enqueue``, so the
response waits for it) and ``DummyBackend`` (never runs it). The example needs
a turn that really runs after the response has gone out, without a separate
worker process to start; this backend is that: ``enqueue`` returns at once and
a thread pool runs the task. Results live in memory, so ``get_result`` works
within this process only. A queue with separate workers (a database-backed
backend, for instance) can replace it in ``TASKS`` without code changes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from django.db import close_old_connections, connections
from django.tasks.backends.immediate import ImmediateBackend
from django.tasks.base import Task, TaskResult, TaskResultStatus
from django.tasks.exceptions import TaskResultDoesNotExist
from django.utils.crypto import get_random_string

# Finished results are kept for polling, up to this many per backend.
KEPT_RESULTS = 1000


class ThreadBackend(ImmediateBackend):
    """``OPTIONS``: ``MAX_WORKERS`` (default 4), the number of tasks run at once."""

    supports_get_result = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self._executor = ThreadPoolExecutor(
            max_workers=int(self.options.get("MAX_WORKERS", 4)),
            thread_name_prefix=f"django-tasks-{alias}",
        )
        self._results: OrderedDict[str, TaskResult] = OrderedDict()
        self._running: set[Future[None]] = set()
        self._lock = threading.Lock()

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Queue ``task`` and return its result, status ``READY``, without waiting."""
        self.validate_task(task)
        result = TaskResult(
            task=task,
            id=get_random_string(32),
            status=TaskResultStatus.READY,
            enqueued_at=None,
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=list(args),
            kwargs=dict(kwargs),
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        with self._lock:
            self._results[result.id] = result
            while len(self._results) > KEPT_RESULTS:
                self._results.popitem(last=False)
        future = self._executor.submit(self._run, result)
        with self._lock:
            self._running.add(future)
        future.add_done_callback(self._forget)
        return result

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._running.discard(future)

    def _run(self, result: TaskResult) -> None:
        # ImmediateBackend's execution records status, errors and the return
        # value on the result and sends the task signals; only the thread is new.
        try:
            self._execute_task(result)
        finally:
            # This thread's connections would otherwise stay open for good, as
            # they would in a request without the request_finished signal.
            close_old_connections()
            connections.close_all()

    def get_result(self, result_id: str) -> TaskResult:
        with self._lock:
            try:
                return self._results[result_id]
            except KeyError:
                raise TaskResultDoesNotExist(result_id) from None

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until every queued task has finished; ``TimeoutError`` after ``timeout`` s."""
        with self._lock:
            running = list(self._running)
        _, not_done = wait(running, timeout=timeout)
        if not_done:
            raise TimeoutError(f"{len(not_done)} task(s) still running after {timeout} s")
